"""The customer family's rules on one customer's record: a batch's orders of that customer
in, the record after and what the site's counters move by out (docs/kpis.md, "Customers";
the counts themselves are :mod:`kpistream.kpis.customers`).

The record is what the store keeps per customer, and all the worker needs of them: the
orders per local day, the ids of the orders counted (site and ``order_id`` are an order's
identity, so an order sent again from any path counts once), and the two products bought
first with their first days (enough for the upselling day whatever comes later). It is
loaded with the batch and written back in the same atomic step as the offset: nothing of a
customer stays in the worker between batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import msgspec

from kpistream.kpis.calendar import local_day
from kpistream.kpis.customers import Key, changes, contributions, earliest_two, upsold_day
from kpistream.schemas.events import Order

#: What an order without lines counts as: one product, the same for all such orders.
UNKNOWN_PRODUCT = "(unknown)"
#: Orders remembered per customer for their identity; a customer with more is a data error
#: (or a marketplace account): further orders are counted but not told apart from retries.
MAX_ORDER_IDS = 10_000


class CustomerRecord(msgspec.Struct, array_like=True, gc=False):
    #: local order day -> orders that day
    days: dict[int, int] = msgspec.field(default_factory=dict)
    #: 64-bit digests of the order ids counted
    ids: list[int] = msgspec.field(default_factory=list)
    #: the two products bought first, with the day each was first bought
    products: list[tuple[str, int]] = msgspec.field(default_factory=list)


_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE = msgspec.msgpack.Decoder(CustomerRecord).decode


def encode_record(record: CustomerRecord) -> bytes:
    return _ENCODE(record)


def decode_record(raw: bytes) -> CustomerRecord:
    return _DECODE(raw)


def order_digest(order_id: str) -> int:
    """A 64-bit digest of an order id (the site is the record's: one record per site)."""
    return int.from_bytes(hashlib.blake2b(order_id.encode(), digest_size=8).digest(), "big")


def products_of(order: Order) -> list[str]:
    """The distinct products of an order: each line's category, else its item id."""
    if not order.items:
        return [UNKNOWN_PRODUCT]
    return sorted({item.category or item.item_id for item in order.items})


@dataclass(frozen=True, slots=True)
class Applied:
    """One customer's orders of a batch, applied to their record."""

    record: CustomerRecord
    #: what the site's customer counters move by (no zero)
    changes: dict[Key, int]
    #: the orders counted, as (local day, order): each new order once
    counted: list[tuple[int, Order]]
    #: orders already counted (the same order again, from any path)
    duplicates: int


def apply(
    record: CustomerRecord | None, orders: Iterable[Order], *, horizon: int, tz: ZoneInfo
) -> Applied:
    """Apply a batch's orders of one customer (of one site) to their record."""
    record = record or CustomerRecord()
    days = dict(record.days)
    ids = list(record.ids)
    seen = set(ids)
    products = list(record.products)
    counted: list[tuple[int, Order]] = []
    duplicates = 0
    for order in orders:
        digest = order_digest(order.order_id)
        day = local_day(order.ts, tz)
        # An order again still adds its products: another path may know its lines better.
        products = earliest_two([*products, *((p, day) for p in products_of(order))])
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        if len(ids) < MAX_ORDER_IDS:
            ids.append(digest)
        days[day] = days.get(day, 0) + 1
        counted.append((day, order))
    after = CustomerRecord(days, ids, products)
    moved = changes(
        contributions(record.days, horizon, upsold_day(record.products)),
        contributions(days, horizon, upsold_day(products)),
    )
    return Applied(after, moved, counted, duplicates)
