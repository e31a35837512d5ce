"""The orders topic's stream processor: each customer's orders of a batch applied to their
record (:mod:`kpistream.streams.customer_kpis`), and the site's customer counters moved by
the difference, in counters kept without expiry (docs/kpis.md, "Customers").

Orders are exact whatever their time: there is no lateness here (an order from last year
counts in last year's periods), so the watermark only records the newest order seen. A
customer's record is read from the store with the batch and written back with it: nothing
of a customer stays in the worker between batches.

Where the counters are kept (``k:<day>`` hashes of the partition):
:func:`kpistream.kpis.customers.kept_slot`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import orders_key
from kpistream.contract.visitor import VisitorKey
from kpistream.kpis.catalogue import MICROS
from kpistream.kpis.customers import (
    NEW_CUSTOMERS_TOTAL,
    ORDERS_CODE,
    ORDERS_TOTAL,
    REVENUE_CODE,
    kept_slot,
)
from kpistream.kpis.fields import field
from kpistream.schemas.events import Order, Orders
from kpistream.streams.customer_kpis import CustomerRecord, apply, decode_record, encode_record
from kpistream.streams.labels import LabelBudget
from kpistream.streams.logic import decoder_of
from kpistream.streams.watermarked import WatermarkedProcessor


class CustomerProcessor(WatermarkedProcessor):
    """Rules for one partition of the orders topic (keyed by site and customer)."""

    def __init__(
        self,
        *,
        sites: LabelBudget,
        horizon_days: Callable[[str], int],
        zone: Callable[[str], ZoneInfo],
    ) -> None:
        super().__init__(allowed_lateness_ms=0)
        self.sites = sites
        self.horizon_days = horizon_days
        self.zone = zone
        self._loaded: dict[VisitorKey, CustomerRecord | None] = {}

    def load(self, state: dict[bytes, bytes], watermark_ms: int) -> dict[str, set[str]]:
        self.watermark_ms = watermark_ms
        return {"site": set()}

    def needs(self, events: list[Any]) -> list[VisitorKey]:
        """Every customer of the batch: their record is read with it, every time."""
        return sorted({(e.site, e.customer_id) for e in events if isinstance(e, Order)})

    def fill(self, loaded: dict[VisitorKey, bytes | None]) -> None:
        self._loaded = {k: None if v is None else decode_record(v) for k, v in loaded.items()}

    def committed(self) -> None:
        self._loaded = {}

    def held(self) -> int:
        return len(self._loaded)

    def compact(self) -> None:
        """Nothing is held between batches."""

    def process(self, decoded: Iterable[Any], *, now_ms: int) -> BatchDelta:
        delta = BatchDelta()
        by_customer: dict[VisitorKey, list[Order]] = {}
        for event in decoded:
            if not self.screen(event, None, delta.health):  # no order is late
                continue
            by_customer.setdefault((event.site, event.customer_id), []).append(event)
            if event.ts > self.watermark_ms:
                self.watermark_ms = min(event.ts, now_ms)
        for key, orders in by_customer.items():
            self._customer(delta, key, orders)
        delta.watermark_ms = self.watermark_ms
        return delta

    def _customer(self, delta: BatchDelta, key: VisitorKey, orders: list[Order]) -> None:
        site = key[0]
        label = self.sites.label(site)
        before = self._loaded.get(key)
        applied = apply(before, orders, horizon=self.horizon_days(site), tz=self.zone(site))
        if applied.duplicates:
            delta.health[H.DUPLICATE] += applied.duplicates
        if not applied.counted:
            return
        delta.health[H.PROCESSED] += len(applied.counted)
        kept: Counter[tuple[int, str]] = delta.kept
        for change, n in applied.changes.items():
            kept[kept_slot(change, label)] += n
        for day, order in applied.counted:
            kept[day, field(ORDERS_CODE, label, order.currency)] += 1
            kept[day, field(REVENUE_CODE, label, order.currency)] += round(order.value * MICROS)
        delta.totals[field(ORDERS_TOTAL, label)] += len(applied.counted)
        if before is None or not before.days:
            delta.totals[field(NEW_CUSTOMERS_TOTAL, label)] += 1
        delta.records[key] = encode_record(applied.record)

    def _settle(self, delta: BatchDelta, touched: set[Any]) -> None:
        delta.watermark_ms = self.watermark_ms


class CustomerLogic:
    """The orders topic's :class:`kpistream.streams.logic.StreamLogic`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.orders_topic
        self.decoder = decoder_of(settings, Orders)
        self.sites = LabelBudget(allowlist=settings.site_allowlist, max_values=settings.max_sites)

    def new_partition(self) -> CustomerProcessor:
        return CustomerProcessor(
            sites=self.sites,
            horizon_days=self.settings.customer_horizon,
            zone=self.settings.site_zone,
        )

    def ownership_key(self, event: Any) -> str:
        return orders_key(event)

    def budget(self, dimension: str) -> LabelBudget:
        return self.sites

    def budgets(self) -> dict[str, LabelBudget]:
        return {"site": self.sites}

    def dimension_values(self, events: Iterable[Any]) -> dict[str, set[str]]:
        return {"site": {event.site for event in events}}
