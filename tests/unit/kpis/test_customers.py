"""The customer counts two ways: the counters that orders arriving in any order, in pieces
and twice move (:mod:`kpistream.kpis.customers`), and a brute-force reference written here
straight from the definitions in docs/kpis.md, day by day. Plus hand-computed cases."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpistream.kpis import calendar as C
from kpistream.kpis.customers import (
    DayCounters,
    Key,
    PeriodCounts,
    changes,
    contributions,
    earliest_two,
    period_counts,
    spells,
    upsold_day,
)

D0 = C.day_number(C.as_date(0).replace(year=2025, month=1, day=1))


@dataclass(frozen=True)
class Order:
    customer: str
    order_id: str
    day: int
    product: str


@dataclass
class Record:
    """One customer's record as the store keeps it: order ids seen, orders per day, the two
    earliest products."""

    ids: set[str] = field(default_factory=set)
    by_day: Counter[int] = field(default_factory=Counter)
    products: list[tuple[str, int]] = field(default_factory=list)


def counters_of(batches: list[list[Order]], horizon: int) -> Counter[Key]:
    """The site's counters after the batches, each customer's contributions moved once per
    batch (as the worker does)."""
    records: dict[str, Record] = defaultdict(Record)
    site: Counter[Key] = Counter()
    for batch in batches:
        touched: dict[str, Counter[Key]] = {}
        for order in batch:
            r = records[order.customer]
            if order.order_id in r.ids:
                continue  # the same order again: counts once
            if order.customer not in touched:
                touched[order.customer] = contributions(r.by_day, horizon, upsold_day(r.products))
            r.ids.add(order.order_id)
            r.by_day[order.day] += 1
            r.products = earliest_two([*r.products, (order.product, order.day)])
        for customer, before in touched.items():
            r = records[customer]
            after = contributions(r.by_day, horizon, upsold_day(r.products))
            site.update(changes(before, after))
    return site


def reference(orders: list[Order], horizon: int, kind: C.Kind, period: int) -> PeriodCounts:
    """The definitions, customer by customer and day by day."""
    p0, p1 = C.bounds(kind, period)
    before = C.previous(kind, period)
    unique = {o.order_id: o for o in orders}.values()
    by_customer: dict[str, list[Order]] = defaultdict(list)
    for o in unique:
        by_customer[o.customer].append(o)
    counts: Counter[str] = Counter()
    for mine in by_customer.values():
        days = [o.day for o in mine]
        first = min(days)

        def active(d: int, days: list[int] = days) -> bool:
            return any(d - horizon + 1 <= o <= d for o in days)

        counts["start"] += active(p0 - 1)
        counts["end"] += active(p1)
        counts["new"] += p0 <= first <= p1
        counts["reactivated"] += sum(
            active(d) and not active(d - 1) and d != first for d in range(p0, p1 + 1)
        )
        counts["lost"] += sum(active(d) and not active(d + 1) for d in range(p0 - 1, p1))
        products_by_p1 = {o.product for o in mine if o.day <= p1}
        counts["upsold_end"] += active(p1) and len(products_by_p1) >= 2
        in_p = sum(C.period_of(kind, d) == period for d in days)
        in_before = any(C.period_of(kind, d) == before for d in days)
        counts["ordering"] += in_p >= 1
        counts["repeat"] += in_p >= 2
        counts["returning"] += in_p >= 1 and in_before and first < p0
        counts["resurrecting"] += in_p >= 1 and not in_before and first < p0
        counts["dormant"] += in_p == 0 and in_before
    return PeriodCounts(**{name: counts[name] for name in PeriodCounts.__slots__})


def measured(site: Counter[Key], kind: C.Kind, period: int) -> PeriodCounts:
    return period_counts(DayCounters(site), site, kind, period)


def periods_over(kind: C.Kind, first_day: int, last_day: int) -> list[int]:
    out = [C.period_of(kind, first_day)]
    while C.bounds(kind, out[-1])[1] < last_day:
        out.append(C.following(kind, out[-1]))
    return out


def random_orders(rng: random.Random, customers: int, span_days: int) -> list[Order]:
    orders: list[Order] = []
    for c in range(customers):
        start = D0 + rng.randrange(span_days)
        n = rng.choice([1, 1, 2, 3, 3, 5, 8])
        day = start
        for i in range(n):
            products = ["shoes", "socks", "hats", f"item-{rng.randrange(3)}"]
            orders.append(Order(f"c{c}", f"c{c}-o{i}", day, rng.choice(products)))
            day += rng.choice([0, 1, 6, 30, 90, 200, 400])
    return orders


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    horizon=st.integers(1, 400),
    pieces=st.integers(1, 40),
    kind=st.sampled_from(C.KINDS),
)
def test_counters_equal_the_definitions_for_every_period_whatever_the_arrival(
    seed: int, horizon: int, pieces: int, kind: C.Kind
) -> None:
    """Several hundred customers over two years, shuffled, cut in pieces, one piece sent
    twice, compared with the day-by-day reference for every period of one kind."""
    rng = random.Random(seed)
    orders = random_orders(rng, rng.randrange(200, 320), 730)
    arrival = orders[:]
    rng.shuffle(arrival)
    size = max(1, len(arrival) // pieces)
    batches = [arrival[i : i + size] for i in range(0, len(arrival), size)]
    batches.append(rng.choice(batches))  # a piece imported twice
    site = counters_of(batches, horizon)
    last = max(o.day for o in orders) + horizon + 7
    for period in periods_over(kind, D0 - 1, last):
        got = measured(site, kind, period)
        assert got == reference(orders, horizon, kind, period), (kind, C.label(kind, period))
        assert got.end == got.start + got.new + got.reactivated - got.lost


# -- by hand ---------------------------------------------------------------------------------

MONTH = C.parse("month", "2026-03")
MAR_1, MAR_31 = C.bounds("month", MONTH)


def site_of(orders: list[Order], horizon: int) -> Counter[Key]:
    return counters_of([orders], horizon)


def test_a_customer_lost_and_reactivated_inside_one_month() -> None:
    """Horizon 15 days: an order on Feb 27 keeps the customer active Feb 27 - Mar 13; lost
    from Mar 14 (the spell's last day, Mar 13, is in [Feb 28, Mar 30]); back on Mar 20, and
    active to Apr 3, so at the end of March."""
    feb_27 = MAR_1 - 2
    site = site_of([Order("a", "1", feb_27, "x"), Order("a", "2", MAR_1 + 19, "x")], 15)
    got = measured(site, "month", MONTH)
    assert (got.start, got.new, got.reactivated, got.lost, got.end) == (1, 0, 1, 1, 1)
    assert (got.ordering, got.returning, got.resurrecting) == (1, 1, 0)


def test_a_spell_ending_on_the_last_day_of_a_period_is_lost_in_the_next() -> None:
    """Horizon 10: an order on Mar 22 is active to Mar 31, the month's last day: active at
    its end (E), lost in April (the day before April 1 is in April's loss window)."""
    site = site_of([Order("a", "1", MAR_31 - 9, "x")], 10)
    march = measured(site, "month", MONTH)
    april = measured(site, "month", C.following("month", MONTH))
    assert (march.new, march.lost, march.end) == (1, 0, 1)
    assert (april.start, april.lost, april.end) == (1, 1, 0)
    assert april.dormant == 1


def test_a_daylight_saving_day_is_one_day() -> None:
    """Europe/Berlin, 2026-03-29 has 23 hours: 00:30 and 23:30 local are the same day, and
    01:30 UTC on the 28th (02:30 local, winter time) is still the 28th."""
    berlin = C.zone("Europe/Berlin")
    sunday = C.parse("day", "2026-03-29")
    start = C.day_start_ms(sunday, berlin)
    end = C.day_start_ms(sunday + 1, berlin)
    assert end - start == 23 * 3_600_000
    assert C.local_day(start + 30 * 60_000, berlin) == sunday
    assert C.local_day(end - 30 * 60_000, berlin) == sunday
    assert C.local_day(end, berlin) == sunday + 1
    autumn = C.parse("day", "2026-10-25")
    assert C.day_start_ms(autumn + 1, berlin) - C.day_start_ms(autumn, berlin) == 25 * 3_600_000


def test_two_categories_in_one_order_make_an_upsold_customer() -> None:
    order = [Order("a", "1", MAR_1 + 3, "shoes"), Order("a", "1b", MAR_1 + 3, "socks")]
    got = measured(site_of(order, 365), "month", MONTH)
    assert (got.end, got.upsold_end) == (1, 1)


def test_the_same_order_via_two_paths_counts_once() -> None:
    tracker = Order("a", "A-17", MAR_1 + 3, "shoes")
    backend = Order("a", "A-17", MAR_1 + 3, "shoes")
    got = measured(counters_of([[tracker], [backend, tracker]], 365), "month", MONTH)
    assert (got.new, got.ordering, got.repeat, got.end) == (1, 1, 0, 1)


def test_spells_merge_when_they_touch() -> None:
    assert spells([10, 14, 15, 30], 5) == [(10, 19), (30, 34)]
    assert spells([10, 15], 5) == [(10, 19)]  # 15 is the day after 10's spell: they touch
    assert spells([10, 16], 5) == [(10, 14), (16, 20)]


def test_the_second_product_of_a_customer_decides_the_upsold_day() -> None:
    assert upsold_day([("a", 5)]) is None
    assert upsold_day([("a", 5), ("a", 3), ("b", 9), ("c", 7)]) == 7
    assert earliest_two([("a", 5), ("b", 9), ("c", 7), ("b", 1)]) == [("b", 1), ("a", 5)]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("day", "2026-03-29"),
        ("week", "2026-W13"),
        ("month", "2026-03"),
        ("quarter", "2026-Q1"),
        ("year", "2026"),
    ],
)
def test_period_labels_read_back(kind: C.Kind, text: str) -> None:
    period = C.parse(kind, text)
    assert C.label(kind, period) == text
    first, last = C.bounds(kind, period)
    assert C.period_of(kind, first) == C.period_of(kind, last) == period
    assert C.period_of(kind, first - 1) == C.previous(kind, period)
    assert C.period_of(kind, last + 1) == C.following(kind, period)


def test_a_mistyped_period_or_zone_says_how_to_write_it() -> None:
    with pytest.raises(ValueError, match="write it as '2026-03'"):
        C.parse("month", "2026-13")
    with pytest.raises(C.UnknownZone, match="did you mean 'Europe/Berlin'"):
        C.zone("europe/berlin")


def test_the_worked_example_of_docs_kpis_md() -> None:
    """docs/kpis.md, "Customers": H = 30 days, three customers over January and February."""

    def day(text: str) -> int:
        return C.parse("day", text)

    orders = [
        Order("A", "a1", day("2026-01-05"), "shoes"),
        Order("A", "a2", day("2026-02-20"), "shoes"),
        Order("B", "b1", day("2026-01-10"), "shoes"),
        Order("B", "b2", day("2026-01-25"), "hats"),
        Order("C", "c1", day("2026-02-03"), "shoes"),
        Order("C", "c2", day("2026-02-03"), "socks"),
        Order("C", "c3", day("2026-02-17"), "shoes"),
    ]
    site = site_of(orders, 30)
    feb = measured(site, "month", C.parse("month", "2026-02"))
    assert (feb.start, feb.new, feb.reactivated, feb.lost, feb.end) == (2, 1, 1, 2, 2)
    assert (feb.ordering, feb.repeat, feb.returning, feb.upsold_end) == (2, 1, 1, 1)
    assert (feb.end - feb.new) / feb.start == 0.5  # retention
    assert feb.lost / ((feb.start + feb.end) / 2) == 1.0  # churn
    march = measured(site, "month", C.parse("month", "2026-03"))
    assert (march.start, march.lost, march.end, march.dormant) == (2, 2, 0, 2)
