"""Calendar periods in a site's time zone: days, ISO weeks, months, quarters and years.

A *day* is a local calendar date, numbered as days since 1970-01-01 (so day arithmetic is
integer arithmetic, whatever the length of the day: a daylight-saving day is 23 or 25 hours
long, and its events still fall on one day). A *period* of a kind is numbered too:

==========  ===============================  ===============
kind        number                           label
==========  ===============================  ===============
day         the day                          ``2026-03-29``
week        the day of its Monday (ISO)      ``2026-W13``
month       year * 12 + month - 1            ``2026-03``
quarter     year * 4 + quarter - 1           ``2026-Q1``
year        the year                         ``2026``
==========  ===============================  ===============

Time zones come from the IANA database of the ``tzdata`` package (``zoneinfo``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

Kind = Literal["day", "week", "month", "quarter", "year"]
KINDS: tuple[Kind, ...] = ("day", "week", "month", "quarter", "year")

_EPOCH = date(1970, 1, 1).toordinal()
DAY_MS = 86_400_000


class UnknownZone(ValueError):
    """Not an IANA time zone name."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Berlin``, ...)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        close = sorted(z for z in available_timezones() if z.lower() == name.lower())
        hint = f"; did you mean {close[0]!r}?" if close else " (e.g. 'Europe/Berlin', 'UTC')"
        raise UnknownZone(f"{name!r} is not an IANA time zone name{hint}") from exc


def as_date(day: int) -> date:
    return date.fromordinal(day + _EPOCH)


def day_number(d: date) -> int:
    return d.toordinal() - _EPOCH


def local_day(ts_ms: int, tz: ZoneInfo) -> int:
    """The local calendar day of an instant."""
    if tz.key == "UTC":
        return ts_ms // DAY_MS
    return day_number(datetime.fromtimestamp(ts_ms / 1000, tz).date())


def day_start_ms(day: int, tz: ZoneInfo) -> int:
    """The first instant of a local day (midnight, or the first time after a gap)."""
    local = datetime.combine(as_date(day), datetime.min.time(), tz)
    return int(local.astimezone(UTC).timestamp() * 1000)


def period_of(kind: Kind, day: int) -> int:
    """The number of the period of ``kind`` that holds ``day``."""
    if kind == "day":
        return day
    if kind == "week":
        return day - as_date(day).weekday()
    d = as_date(day)
    if kind == "month":
        return d.year * 12 + d.month - 1
    if kind == "quarter":
        return d.year * 4 + (d.month - 1) // 3
    return d.year


def bounds(kind: Kind, period: int) -> tuple[int, int]:
    """The first and last day of a period, inclusive."""
    if kind == "day":
        return period, period
    if kind == "week":
        return period, period + 6
    if kind == "month":
        first = date(period // 12, period % 12 + 1, 1)
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    elif kind == "quarter":
        first = date(period // 4, (period % 4) * 3 + 1, 1)
        nxt = date(first.year + (first.month + 2) // 12, (first.month + 2) % 12 + 1, 1)
    else:
        first, nxt = date(period, 1, 1), date(period + 1, 1, 1)
    return day_number(first), day_number(nxt) - 1


def previous(kind: Kind, period: int) -> int:
    return period - 7 if kind == "week" else period - 1


def following(kind: Kind, period: int) -> int:
    return period + 7 if kind == "week" else period + 1


def label(kind: Kind, period: int) -> str:
    if kind == "day":
        return as_date(period).isoformat()
    if kind == "week":
        year, week, _ = as_date(period).isocalendar()
        return f"{year}-W{week:02d}"
    if kind == "month":
        return f"{period // 12}-{period % 12 + 1:02d}"
    if kind == "quarter":
        return f"{period // 4}-Q{period % 4 + 1}"
    return str(period)


_PATTERNS: dict[Kind, re.Pattern[str]] = {
    "day": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
    "week": re.compile(r"^(\d{4})-W(\d{2})$"),
    "month": re.compile(r"^(\d{4})-(\d{2})$"),
    "quarter": re.compile(r"^(\d{4})-Q([1-4])$"),
    "year": re.compile(r"^(\d{4})$"),
}
_EXAMPLES: dict[Kind, str] = {
    "day": "2026-03-29",
    "week": "2026-W13",
    "month": "2026-03",
    "quarter": "2026-Q1",
    "year": "2026",
}


def parse(kind: Kind, text: str) -> int:
    """A period's number from its label (:func:`label`); ValueError with the expected form."""
    m = _PATTERNS[kind].match(text.strip())
    try:
        if m is None:
            raise ValueError
        n = [int(g) for g in m.groups()]
        if kind == "day":
            return day_number(date(n[0], n[1], n[2]))
        if kind == "week":
            return day_number(date.fromisocalendar(n[0], n[1], 1))
        if kind == "month":
            if not 1 <= n[1] <= 12:
                raise ValueError
            return n[0] * 12 + n[1] - 1
        if kind == "quarter":
            return n[0] * 4 + n[1] - 1
        return n[0]
    except ValueError:
        raise ValueError(f"{text!r} is not a {kind}: write it as {_EXAMPLES[kind]!r}") from None
