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
from kpistream.kpis.catalogue import MICROS
from kpistream.kpis.fields import field, split

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


def _first_days(products: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Each product's first day, from (product, day) purchases."""
    first: dict[str, int] = {}
    for product, day in products:
        if product not in first or day < first[product]:
            first[product] = day
    return first


def upsold_day(products: Iterable[tuple[str, int]]) -> int | None:
    """The day a customer had bought two distinct products: the second earliest of the
    products' first days (None with fewer than two products)."""
    first = _first_days(products)
    if len(first) < 2:
        return None
    return sorted(first.values())[1]


def earliest_two(products: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The two products a customer bought first, with their first days: all that
    :func:`upsold_day` needs to stay exact whatever comes later (a product's first day only
    moves earlier, with an order that names it)."""
    return sorted(_first_days(products).items(), key=lambda pd: (pd[1], pd[0]))[:2]


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


# -- where the site's counters are kept ------------------------------------------------------

#: The codes of the kept counters (fields of the ``k:<day>`` hashes): a day counter of the
#: spells at its day; a per-period counter at the first day of its period, its field naming
#: the period's kind; orders and revenue (in millionths, per currency) at the order's day.
DAY_CODES = {
    "start_new": "cus",
    "start_re": "cur",
    "end": "cue",
    "up_start": "cuus",
    "up_end": "cuue",
}
PERIOD_CODES = {
    "ordering": "cuo",
    "repeat": "curp",
    "new": "cun",
    "returning": "curt",
    "resurrecting": "curs",
    "dormant": "cud",
}
ORDERS_CODE, REVENUE_CODE = "cuor", "curv"
#: Totals (monotonic, for ``_total`` counters): orders counted, new customers.
ORDERS_TOTAL, NEW_CUSTOMERS_TOTAL = "cuort", "cunt"
_NAMES = {code: name for name, code in (*DAY_CODES.items(), *PERIOD_CODES.items())}


def kept_slot(key: Key, site: str) -> tuple[int, str]:
    """Where a customer counter is kept: (day, field)."""
    if len(key) == 2:
        name, day = key
        return int(day), field(DAY_CODES[str(name)], site)
    name, kind, period = key
    return bounds(kind, period)[0], field(PERIOD_CODES[name], site, kind)


@dataclass(slots=True)
class SiteCounters:
    """One site's kept counters, read back: the customer counters by :data:`Key`, and
    orders and revenue (millionths) per day and currency."""

    counters: Counter[Key]
    orders: Counter[tuple[int, str]]
    revenue: Counter[tuple[int, str]]


def read_kept(kept: Mapping[tuple[int, str], int], site: str) -> SiteCounters:
    """A site's counters from the kept (day, field) counts of every partition, summed."""
    out = SiteCounters(Counter(), Counter(), Counter())
    for (day, name), n in kept.items():
        parts = split(name)
        if len(parts) < 2 or parts[1] != site:
            continue
        code = parts[0]
        if code == ORDERS_CODE and len(parts) == 3:
            out.orders[day, parts[2]] += n
        elif code == REVENUE_CODE and len(parts) == 3:
            out.revenue[day, parts[2]] += n
        elif code in DAY_CODES.values():
            out.counters[_NAMES[code], day] += n
        elif code in PERIOD_CODES.values() and len(parts) == 3 and parts[2] in KINDS:
            kind: Kind = parts[2]
            out.counters[_NAMES[code], kind, period_of(kind, day)] += n
    return out


@dataclass(frozen=True, slots=True)
class CustomerKpis:
    """One period's customer KPIs (docs/kpis.md); None where the denominator is 0. Money
    per currency."""

    counts: PeriodCounts
    retention_rate: float | None
    churn_rate: float | None
    repeat_purchase_rate: float | None
    returning_customer_rate: float | None
    upselling_ratio: float | None
    orders: dict[str, int]
    revenue: dict[str, float]
    average_order_value: dict[str, float]
    purchase_frequency: float | None
    historic_clv: dict[str, float]
    predicted_clv: dict[str, float]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def kpis(site: SiteCounters, kind: Kind, period: int, *, margin: float = 1.0) -> CustomerKpis:
    """The customer KPIs of one period of a site."""
    first, last = bounds(kind, period)
    days = DayCounters(site.counters)
    c = period_counts(days, site.counters, kind, period)
    orders: Counter[str] = Counter()
    revenue: Counter[str] = Counter()
    lifetime: Counter[str] = Counter()
    for (day, currency), n in site.orders.items():
        if first <= day <= last:
            orders[currency] += n
    for (day, currency), micros in site.revenue.items():
        if first <= day <= last:
            revenue[currency] += micros
        if day <= last:
            lifetime[currency] += micros
    churn = _ratio(c.lost, (c.start + c.end) / 2)
    frequency = _ratio(sum(orders.values()), c.ordering)
    aov = {cur: revenue[cur] / MICROS / n for cur, n in orders.items() if n}
    customers_ever = days.upto("start_new", last)
    historic = {cur: m / MICROS / customers_ever for cur, m in lifetime.items() if customers_ever}
    predicted = {
        cur: value * frequency / churn * margin
        for cur, value in aov.items()
        if frequency is not None and churn
    }
    return CustomerKpis(
        counts=c,
        retention_rate=_ratio(c.end - c.new, c.start),
        churn_rate=churn,
        repeat_purchase_rate=_ratio(c.repeat, c.ordering),
        returning_customer_rate=_ratio(c.returning + c.resurrecting, c.ordering),
        upselling_ratio=_ratio(c.upsold_end, c.end),
        orders=dict(orders),
        revenue={cur: m / MICROS for cur, m in revenue.items()},
        average_order_value=aov,
        purchase_frequency=frequency,
        historic_clv=historic,
        predicted_clv=predicted,
    )
