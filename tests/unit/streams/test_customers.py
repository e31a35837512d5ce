"""The orders topic's processor on hand-made batches, its records kept between batches as
the store keeps them: the counters it moves, where they are kept, duplicates and
rejections counted."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.kpis import calendar as C
from kpistream.kpis.customers import kpis, read_kept
from kpistream.kpis.fields import field
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import Order, OrderItem
from kpistream.streams.customers import CustomerProcessor
from kpistream.streams.labels import LabelBudget

UTC = C.zone("UTC")
JAN_5 = C.parse("day", "2026-01-05")
NOW_MS = 4_000_000_000_000


def order(order_id: str, customer: str, day: int, value: float = 10.0, **more: Any) -> Order:
    ts = C.day_start_ms(day, UTC) + 3_600_000
    return Order(
        order_id=order_id,
        ts=ts,
        site="shop",
        customer_id=customer,
        value=value,
        currency="EUR",
        **more,
    )


class Store:
    """Keeps the records and counters of committed deltas, as Redis does."""

    def __init__(self) -> None:
        self.records: dict[Any, bytes] = {}
        self.kept: Counter[tuple[int, str]] = Counter()
        self.totals: Counter[str] = Counter()
        self.health: Counter[str] = Counter()

    def run(self, p: CustomerProcessor, batch: list[Any]) -> BatchDelta:
        p.fill({k: self.records.get(k) for k in p.needs(batch)})
        delta = p.process(batch, now_ms=NOW_MS)
        p.committed()
        for key, raw in delta.records.items():
            assert raw is not None
            self.records[key] = raw
        self.kept.update(delta.kept)
        self.totals.update(delta.totals)
        self.health.update(delta.health)
        return delta


def processor(horizon: int = 30) -> CustomerProcessor:
    sites = LabelBudget(allowlist=["shop"], max_values=10)
    return CustomerProcessor(sites=sites, horizon_days=lambda _: horizon, zone=lambda _: UTC)


def test_orders_move_the_kept_counters_at_their_days_and_periods() -> None:
    store, p = Store(), processor()
    store.run(p, [order("a1", "c-a", JAN_5, 20.5), order("a2", "c-a", JAN_5 + 40)])
    month_jan, month_feb = C.parse("month", "2026-01"), C.parse("month", "2026-02")
    feb_1 = C.bounds("month", month_feb)[0]
    kept = +store.kept
    assert kept[JAN_5, field("cus", "shop")] == 1  # first spell starts
    assert kept[JAN_5 + 29, field("cue", "shop")] == 1  # and ends 29 days later
    assert kept[JAN_5 + 40, field("cur", "shop")] == 1  # reactivated
    assert kept[C.bounds("month", month_jan)[0], field("cuo", "shop", "month")] == 1
    assert kept[feb_1, field("cuo", "shop", "month")] == 1
    assert kept[feb_1, field("curt", "shop", "month")] == 1  # ordered in January too
    assert kept[JAN_5, field("curv", "shop", "EUR")] == 20_500_000
    assert kept[JAN_5, field("cuor", "shop", "EUR")] == 1
    assert store.totals == Counter({field("cuort", "shop"): 2, field("cunt", "shop"): 1})


def test_an_order_again_in_a_later_batch_counts_once_and_moves_nothing() -> None:
    store, p = Store(), processor()
    store.run(p, [order("a1", "c-a", JAN_5, items=[OrderItem(item_id="x")])])
    before = +store.kept
    delta = store.run(p, [order("a1", "c-a", JAN_5), Rejection("wrong_type", "x")])
    assert not delta.kept and not delta.totals
    assert +store.kept == before
    assert store.health[H.DUPLICATE] == 1 and store.health[H.PROCESSED] == 1
    assert store.health[field(H.REJECTED, "wrong_type")] == 1


def test_a_late_order_moves_the_first_spell_and_counts_no_new_customer_twice() -> None:
    store, p = Store(), processor(horizon=5)
    store.run(p, [order("2", "c-a", JAN_5 + 10)])
    store.run(p, [order("1", "c-a", JAN_5)])
    kept = +store.kept
    assert kept[JAN_5, field("cus", "shop")] == 1
    assert kept[JAN_5 + 10, field("cur", "shop")] == 1
    assert (JAN_5 + 10, field("cus", "shop")) not in kept
    assert store.totals[field("cunt", "shop")] == 1


def test_the_worked_example_through_the_processor_and_back_from_the_kept_counters() -> None:
    """docs/kpis.md's example (H = 30), with values, in two batches out of order, read back
    from the kept counters as the report will read them."""

    def day(text: str) -> int:
        return C.parse("day", text)

    def bought(order_id: str, customer: str, when: str, value: float, *products: str) -> Order:
        items = [OrderItem(item_id=p, category=p) for p in products]
        return order(order_id, customer, day(when), value, items=items)

    store, p = Store(), processor(horizon=30)
    store.run(
        p,
        [
            bought("c1", "c-C", "2026-02-03", 50, "shoes"),
            bought("a2", "c-A", "2026-02-20", 20, "shoes"),
            bought("c2", "c-C", "2026-02-03", 60, "socks"),
            bought("b2", "c-B", "2026-01-25", 40, "hats"),
        ],
    )
    store.run(
        p,
        [
            bought("a1", "c-A", "2026-01-05", 10, "shoes"),
            bought("c3", "c-C", "2026-02-17", 70, "shoes"),
            bought("b1", "c-B", "2026-01-10", 30, "shoes"),
            bought("c1", "c-C", "2026-02-03", 50, "shoes"),  # again, from another path
        ],
    )
    feb = kpis(read_kept(store.kept, "shop"), "month", C.parse("month", "2026-02"))
    c = feb.counts
    assert (c.start, c.new, c.reactivated, c.lost, c.end) == (2, 1, 1, 2, 2)
    assert (feb.retention_rate, feb.churn_rate) == (0.5, 1.0)
    assert (feb.repeat_purchase_rate, feb.returning_customer_rate, feb.upselling_ratio) == (
        0.5,
        0.5,
        0.5,
    )
    assert feb.orders == {"EUR": 4} and feb.revenue == {"EUR": 200.0}
    assert feb.average_order_value == {"EUR": 50.0} and feb.purchase_frequency == 2.0
    assert feb.historic_clv == {"EUR": 280 / 3}
    assert feb.predicted_clv == {"EUR": 100.0}  # 50 x 2 x (1 / 1.0) x margin 1
    assert store.health[H.DUPLICATE] == 1
