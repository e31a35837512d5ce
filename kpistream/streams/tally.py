"""What a batch's KPI rules count, gathered before it goes into the batch's delta.

A count sits in a *bucket* (the minute of its event, or a day for the visitor counts) and in
the *totals* since the start. Totals only ever grow; a bucket can lose a contribution to
another bucket when a late event moves what a session or a visitor counts for (an earlier
start, an earlier lead): :meth:`Tally.move` is that one move, whatever the family.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from kpistream.contract.delta import BatchDelta

#: (bucket, field name): a minute for the minute counters, a day for the day counters
Slot = tuple[int, str]


class Tally:
    """The counters of one batch: minute and day buckets and totals (those of a
    :class:`BatchDelta`)."""

    __slots__ = ("buckets", "days", "ones", "totals")

    def __init__(self, delta: BatchDelta) -> None:
        self.buckets: Counter[Slot] = delta.buckets
        self.days: Counter[Slot] = delta.days
        self.totals: Counter[str] = delta.totals
        #: the +1s of an event's own minute (page views, items, new visitors): most events
        #: add one, so they meet once here and reach buckets and totals at :meth:`close`
        self.ones: dict[Slot, int] = {}

    def one(self, minute: int, name: str) -> None:
        """One more in a minute's bucket and in the totals."""
        key = (minute, name)
        ones = self.ones
        ones[key] = ones.get(key, 0) + 1

    def close(self) -> None:
        """Add the gathered ones to the delta."""
        buckets, totals = self.buckets, self.totals
        for slot, n in self.ones.items():
            buckets[slot] += n
            totals[slot[1]] += n
        self.ones.clear()

    def add(self, minute: int, name: str, n: int = 1) -> None:
        """``n`` in a minute's bucket and in the totals."""
        key = (minute, name)
        buckets = self.buckets
        buckets[key] = buckets.get(key, 0) + n
        totals = self.totals
        totals[name] = totals.get(name, 0) + n

    def add_all(self, minute: int, counts: Iterable[tuple[str, int]]) -> None:
        for name, n in counts:
            self.add(minute, name, n)

    def count(self, name: str) -> None:
        """One more in the totals alone (a count whose bucket is written elsewhere)."""
        totals = self.totals
        totals[name] = totals.get(name, 0) + 1

    def move(self, name: str, was: int | None, now: int, *, days: bool = False) -> None:
        """One contribution of ``name`` is now in bucket ``now``: it leaves bucket ``was``
        where it was counted, or, for ``was`` None, it is counted for the first time (and in
        the totals)."""
        buckets = self.days if days else self.buckets
        if was is None:
            self.count(name)
        else:
            buckets[was, name] -= 1
        buckets[now, name] += 1

    def move_all(self, was: tuple[int, list[str]] | None, now: tuple[int, list[str]]) -> None:
        """Contributions of one to each of a set of fields move from one bucket to another
        (``was`` None: none were counted yet); a field in both at the same bucket stays."""
        buckets = self.buckets
        minute, fields = now
        old_minute, old = (minute, []) if was is None else was
        same = old_minute == minute
        for name in old:
            if not same or name not in fields:
                key = (old_minute, name)
                buckets[key] = buckets.get(key, 0) - 1
        for name in fields:
            if not same or name not in old:
                key = (minute, name)
                buckets[key] = buckets.get(key, 0) + 1
