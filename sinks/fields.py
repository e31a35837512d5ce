"""Names of the counter fields inside bucket and totals hashes (see :mod:`sinks.window_store`).

A field is a kind followed by its label values, joined by the ASCII unit separator; label
values never contain it because :func:`streams.labels.sanitize` strips control characters.
"""

from __future__ import annotations

SEP = "\x1f"

# KPI counters, in minute/hour buckets (window gauges) and in totals (monotonic counters).
SESSIONS = "s"  # site: sessions by their start time
BOUNCES = "b"  # site: sessions that are currently a bounce (buckets only: it can go down)
NON_BOUNCED = "nb"  # site: sessions that stopped (or never were) a bounce (totals only)
IMPRESSIONS = "i"  # site, item_kind, campaign
CLICKS = "c"  # site, item_kind, campaign

# Service health counters, in totals only.
PROCESSED = "_processed"
LATE = "_late"
DUPLICATE = "_dup"
REJECTED = "_rej"  # reason
BATCH_BUCKET = "_bh"  # le (seconds, as text)
BATCH_SUM_US = "_bsum_us"
BATCH_COUNT = "_bcount"

#: Upper bounds of the batch-processing-time histogram, seconds.
BATCH_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


def field(kind: str, *labels: str) -> str:
    return SEP.join((kind, *labels))


def split(name: str) -> list[str]:
    return name.split(SEP)
