"""The customer KPIs (docs/kpis.md, "Customers"), as pure functions of one customer's orders.

A customer's record is what their orders add to the site's counters: its *contributions*.
They are a function of the customer's order days alone, so a late order, an order sent
twice or a file imported out of order changes a customer's contributions from what they
were to what they are now, and the site's counters move by the difference
(:func:`changes`): the counters equal the sum over customers of their contributions
whatever the order in which the orders came, and the read side needs no clock and no scan.

Spells. With churn horizon H (days), a customer is *active* on day d when they ordered on a
day in [d - H + 1, d]. Each order day o makes the spell [o, o + H - 1]; spells that touch
(o' <= o + H) merge. A spell contributes a *start* on its first day (``new`` for the
customer's first spell, else ``reactivated``) and an *end* on its last active day. Then, on
any day x, the customers active are the starts up to x minus the ends before x, and for a
period [p0, p1]: S = active(p0 - 1), E = active(p1), N and R the starts in the period and L
the ends in [p0 - 1, p1 - 1]: E = S + N + R - L.

Upselling: the day a customer had bought two distinct products (category, else item id;
an order without items is one unknown product) cuts their spells; the *upsold* starts and
ends count the active days from then on.

Per period (each kind of :mod:`kpistream.kpis.calendar`), a customer who ordered in it is
one *ordering* customer, a *repeat* one with two orders or more, and exactly one of *new*
(first order ever), *returning* (ordered in the period before too) and *resurrecting*
(not in the period before, but earlier); one who ordered in the period before and not in
it is *dormant* in it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kpistream.kpis.calendar import KINDS, Kind, bounds, following, period_of, previous

#: What a customer contributes to: ("start_new" | "start_re" | "end" | "up_start" |
#: "up_end", day) or (counter, kind, period) for the per-period counters.
Key = tuple[str, int] | tuple[str, Kind, int]

DAY_COUNTERS = ("start_new", "start_re", "end", "up_start", "up_end")
PERIOD_COUNTERS = ("ordering", "repeat", "new", "returning", "resurrecting", "dormant")


def spells(order_days: Iterable[int], horizon: int) -> list[tuple[int, int]]:
    """The customer's active spells as (first day, last day), in order."""
    out: list[tuple[int, int]] = []
    for day in sorted(set(order_days)):
        if out and day <= out[-1][1] + 1:  # touches the current spell: extends it
            out[-1] = (out[-1][0], day + horizon - 1)
        else:
            out.append((day, day + horizon - 1))
    return out


def upsold_day(products: Iterable[tuple[str, int]]) -> int | None:
    """The day a customer had bought two distinct products: the second earliest of the
    products' first days (None with fewer than two products)."""
    first: dict[str, int] = {}
    for product, day in products:
        if product not in first or day < first[product]:
            first[product] = day
    if len(first) < 2:
        return None
    return sorted(first.values())[1]


def earliest_two(products: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The two products a customer bought first, with their first days: all that
    :func:`upsold_day` needs to stay exact whatever comes later (a product's first day only
    moves earlier, with an order that names it)."""
    first: dict[str, int] = {}
    for product, day in products:
        if product not in first or day < first[product]:
            first[product] = day
    return sorted(first.items(), key=lambda pd: (pd[1], pd[0]))[:2]


def contributions(
    orders_by_day: Mapping[int, int],
    horizon: int,
    upsold: int | None,
    kinds: Iterable[Kind] = KINDS,
) -> Counter[Key]:
    """Everything one customer adds to the site's counters, from the number of orders on
    each of their order days, the churn horizon and their :func:`upsold_day`."""
    out: Counter[Key] = Counter()
    if not orders_by_day:
        return out
    for i, (first, last) in enumerate(spells(orders_by_day, horizon)):
        out["start_new" if i == 0 else "start_re", first] += 1
        out["end", last] += 1
        if upsold is not None and last >= upsold:
            out["up_start", max(first, upsold)] += 1
            out["up_end", last] += 1
    first_day = min(orders_by_day)
    for kind in kinds:
        per_period: Counter[int] = Counter()
        for day, n in orders_by_day.items():
            per_period[period_of(kind, day)] += n
        first_period = period_of(kind, first_day)
        for period, n in per_period.items():
            out["ordering", kind, period] += 1
            if n >= 2:
                out["repeat", kind, period] += 1
            if period == first_period:
                out["new", kind, period] += 1
            elif previous(kind, period) in per_period:
                out["returning", kind, period] += 1
            else:
                out["resurrecting", kind, period] += 1
            after = following(kind, period)
            if after not in per_period:
                out["dormant", kind, after] += 1
    return out


def changes(before: Counter[Key], after: Counter[Key]) -> dict[Key, int]:
    """What moving a customer's contributions from ``before`` to ``after`` adds to the
    site's counters (no zero)."""
    out = {key: n - before.get(key, 0) for key, n in after.items()}
    for key, n in before.items():
        if key not in after:
            out[key] = -n
    return {key: n for key, n in out.items() if n}


@dataclass(frozen=True, slots=True)
class PeriodCounts:
    """The customer counts of one period (docs/kpis.md)."""

    start: int  # S: active on the day before the period
    end: int  # E: active on its last day
    new: int  # N: first order ever in the period
    reactivated: int  # R: spells starting in it that are not a first
    lost: int  # L: spells whose last day is in [first day - 1, last day - 1]
    upsold_end: int  # active on the last day, with two distinct products by then
    ordering: int  # customers with an order in the period
    repeat: int  # ... with two orders or more in it
    returning: int  # ... who ordered in the period before too
    resurrecting: int  # ... not in the period before, but earlier
    dormant: int  # ordered in the period before, not in it


class DayCounters:
    """The day counters of a site (start_new, start_re, end, up_start, up_end), with prefix
    sums for the counts on any day."""

    def __init__(self, counters: Mapping[Key, int]) -> None:
        self._by_name: dict[str, list[tuple[int, int]]] = {name: [] for name in DAY_COUNTERS}
        for key, n in counters.items():
            if len(key) == 2 and n:
                self._by_name[key[0]].append((key[1], n))
        for series in self._by_name.values():
            series.sort()

    def upto(self, name: str, day: int) -> int:
        """The sum of counter ``name`` on days up to ``day``, inclusive."""
        return sum(n for d, n in self._by_name[name] if d <= day)

    def within(self, name: str, first: int, last: int) -> int:
        return sum(n for d, n in self._by_name[name] if first <= d <= last)

    def active(self, day: int) -> int:
        """Customers active on ``day``: spells started by then and not ended before."""
        return self.upto("start_new", day) + self.upto("start_re", day) - self.upto("end", day - 1)

    def upsold_active(self, day: int) -> int:
        return self.upto("up_start", day) - self.upto("up_end", day - 1)


def period_counts(
    days: DayCounters, periods: Mapping[Key, int], kind: Kind, period: int
) -> PeriodCounts:
    """One period's counts from a site's day counters and per-period counters."""
    first, last = bounds(kind, period)

    def of(name: str) -> int:
        return periods.get((name, kind, period), 0)

    return PeriodCounts(
        start=days.active(first - 1),
        end=days.active(last),
        new=days.within("start_new", first, last),
        reactivated=days.within("start_re", first, last),
        lost=days.within("end", first - 1, last - 1),
        upsold_end=days.upsold_active(last),
        ordering=of("ordering"),
        repeat=of("repeat"),
        returning=of("returning"),
        resurrecting=of("resurrecting"),
        dormant=of("dormant"),
    )
