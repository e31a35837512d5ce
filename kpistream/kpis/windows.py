"""Event-time bucket arithmetic, pure functions shared by the stream and the exporter.

Counters are kept in one-minute buckets and, redundantly, in one-hour buckets. A rolling
window of W minutes ending at watermark ``wm`` is the W minute buckets up to and including
the watermark's minute; :func:`window_cover` splits that range into whole hours plus the
minutes at its two ragged ends, so a 24 h window costs at most 24 + 2*59 reads, not 1440.
"""

from __future__ import annotations

import re

MINUTE_MS = 60_000
HOUR_MINUTES = 60
DAY_MS = 86_400_000

_WINDOW = re.compile(r"^(\d+)([mhd])$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}


def minute_of(ts_ms: int) -> int:
    """The minute bucket (minutes since the epoch) holding ``ts_ms``."""
    return ts_ms // MINUTE_MS


def day_of(ts_ms: int) -> int:
    """The day bucket (UTC days since the epoch) holding ``ts_ms``."""
    return ts_ms // DAY_MS


def parse_window(text: str) -> int:
    """``"5m"`` / ``"1h"`` / ``"1d"`` to minutes; raises ValueError with the accepted form."""
    match = _WINDOW.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"window {text!r} must look like 5m, 1h or 1d (a positive whole number)")
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2)]


def window_minutes(window_min: int, watermark_ms: int) -> tuple[int, int]:
    """Inclusive minute range ``(first, last)`` of the window ending at the watermark."""
    last = minute_of(watermark_ms)
    return last - window_min + 1, last


def window_cover(first_min: int, last_min: int) -> tuple[list[int], list[int]]:
    """Split the inclusive minute range into ``(minutes, hours)`` that cover it exactly once."""
    if last_min < first_min:
        return [], []
    first_full_hour = -(-first_min // HOUR_MINUTES)  # ceil
    end_full_hour = (last_min + 1) // HOUR_MINUTES  # exclusive
    if first_full_hour >= end_full_hour:
        return list(range(first_min, last_min + 1)), []
    minutes = list(range(first_min, first_full_hour * HOUR_MINUTES))
    minutes += list(range(end_full_hour * HOUR_MINUTES, last_min + 1))
    return minutes, list(range(first_full_hour, end_full_hour))
