"""One customer's record under a batch's orders: counted once whatever the path, the site's
counters moved by the difference, products from lines, a record small enough to keep."""

from __future__ import annotations

from collections import Counter

import msgspec

from kpistream.kpis import calendar as C
from kpistream.kpis.customers import Key, contributions
from kpistream.schemas.events import Order, OrderItem
from kpistream.streams.customer_kpis import (
    UNKNOWN_PRODUCT,
    CustomerRecord,
    apply,
    decode_record,
    encode_record,
    products_of,
)

UTC = C.zone("UTC")
BERLIN = C.zone("Europe/Berlin")
DAY = C.parse("day", "2026-03-02")


def order(order_id: str, day: int, *items: OrderItem, hour: int = 12) -> Order:
    return Order(
        order_id=order_id,
        ts=C.day_start_ms(day, UTC) + hour * 3_600_000,
        site="shop",
        customer_id="c-1",
        value=10.0,
        currency="EUR",
        items=list(items),
    )


def test_a_new_customer_counts_their_orders_and_spell() -> None:
    applied = apply(None, [order("1", DAY), order("2", DAY + 3)], horizon=30, tz=UTC)
    assert applied.record.days == {DAY: 1, DAY + 3: 1}
    assert [o.order_id for _, o in applied.counted] == ["1", "2"]
    assert applied.duplicates == 0
    assert applied.changes == dict(contributions({DAY: 1, DAY + 3: 1}, 30, None))
    assert applied.changes[("start_new", DAY)] == 1 and applied.changes[("end", DAY + 32)] == 1


def test_the_same_order_again_counts_once_and_moves_nothing() -> None:
    first = apply(None, [order("A-17", DAY)], horizon=30, tz=UTC)
    again = apply(first.record, [order("A-17", DAY), order("A-17", DAY)], horizon=30, tz=UTC)
    assert (again.counted, again.duplicates, again.changes) == ([], 2, {})
    assert again.record.days == {DAY: 1}


def test_a_late_earlier_order_moves_the_spell_start() -> None:
    first = apply(None, [order("2", DAY + 10)], horizon=5, tz=UTC)
    late = apply(first.record, [order("1", DAY)], horizon=5, tz=UTC)
    # The first spell starts earlier now; the later one is a reactivation.
    expected: Counter[Key] = Counter(
        {("start_new", DAY): 1, ("end", DAY + 4): 1, ("start_re", DAY + 10): 1}
    )
    expected[("start_new", DAY + 10)] -= 1
    moved = {k: v for k, v in late.changes.items() if len(k) == 2}
    assert moved == dict(expected)


def test_the_local_day_decides_in_the_sites_zone() -> None:
    """23:30 UTC on March 1 is already March 2 in Berlin."""
    at_23 = order("1", DAY - 1, hour=23)
    late_evening = msgspec.structs.replace(at_23, ts=at_23.ts + 30 * 60_000)
    assert apply(None, [late_evening], horizon=30, tz=BERLIN).record.days == {DAY: 1}
    assert apply(None, [late_evening], horizon=30, tz=UTC).record.days == {DAY - 1: 1}


def test_products_are_categories_else_item_ids_and_lines_of_a_duplicate_still_count() -> None:
    shoes = OrderItem(item_id="sku-1", category="shoes")
    sku9 = OrderItem(item_id="sku-9")
    assert products_of(order("1", DAY, shoes, sku9, shoes)) == ["shoes", "sku-9"]
    assert products_of(order("2", DAY)) == [UNKNOWN_PRODUCT]
    tracker = apply(None, [order("A-1", DAY)], horizon=30, tz=UTC)  # no lines from the tracker
    backend = apply(tracker.record, [order("A-1", DAY, shoes)], horizon=30, tz=UTC)
    assert backend.duplicates == 1 and not backend.counted
    assert sorted(p for p, _ in backend.record.products) == [UNKNOWN_PRODUCT, "shoes"]


def test_a_record_of_three_orders_is_small() -> None:
    applied = apply(
        None,
        [order(f"ORD-{n:08d}", DAY + 40 * n, OrderItem(item_id=f"sku-{n}")) for n in range(3)],
        horizon=365,
        tz=UTC,
    )
    raw = encode_record(applied.record)
    assert decode_record(raw) == applied.record
    assert len(raw) <= 80, len(raw)
    assert decode_record(encode_record(CustomerRecord())) == CustomerRecord()
