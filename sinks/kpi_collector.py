"""Prometheus collector that reads the KPI state from Redis at scrape time.

A fresh set of metric families is built from one :class:`sinks.window_store.StoreSnapshot`
per scrape (reused for ``cache_s`` so a burst of scrapers costs one Redis read), so N workers
show one consistent set of KPIs and nothing goes stale. ``describe()`` returns nothing, so
registering the collector does not touch Redis. Ratios are only emitted when their
denominator is positive: "no sessions" is no sample, not a 0 that would page someone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from schemas.decoder import REASONS
from sinks import fields as F
from sinks.window_store import StoreSnapshot

log = logging.getLogger(__name__)

SITE = ["site"]
ITEM = ["site", "item_kind", "campaign"]


class KpiCollector(Collector):
    def __init__(
        self,
        read: Callable[[], StoreSnapshot],
        *,
        cache_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.cache_s = cache_s
        self._monotonic = monotonic
        self._cached: tuple[float, StoreSnapshot | None] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def snapshot(self) -> StoreSnapshot | None:
        with self._lock:
            now = self._monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                try:
                    snapshot: StoreSnapshot | None = self._read()
                except Exception as exc:  # Redis down: say so in a metric and one log line
                    log.warning("cannot read KPI state from Redis: %s", exc)
                    snapshot = None
                self._cached = (now, snapshot)
            return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot()
        up = GaugeMetricFamily("kpistream_redis_up", "1 when the last KPI read from Redis worked")
        up.add_metric([], 1.0 if snapshot is not None else 0.0)
        yield up
        if snapshot is not None:
            yield from kpi_families(snapshot)
            yield from health_families(snapshot)


def _by(counter: Counter[str], kind: str) -> dict[tuple[str, ...], int]:
    """Counter values of one field kind, keyed by their label values."""
    out: dict[tuple[str, ...], int] = {}
    for name, value in counter.items():
        parts = F.split(name)
        if parts[0] == kind:
            out[tuple(parts[1:])] = value
    return out


def kpi_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    sessions = GaugeMetricFamily(
        "kpi_sessions", "Sessions whose first event lies in the window", labels=[*SITE, "window"]
    )
    bounce = GaugeMetricFamily(
        "kpi_bounce_ratio",
        "Sessions with exactly one page view and no interaction / sessions, by session start",
        labels=[*SITE, "window"],
    )
    impressions = GaugeMetricFamily(
        "kpi_impressions", "Impression events in the window", labels=[*ITEM, "window"]
    )
    clicks = GaugeMetricFamily("kpi_clicks", "Click events in the window", labels=[*ITEM, "window"])
    ctr = GaugeMetricFamily(
        "kpi_click_through_ratio",
        "Clicks / impressions of the same items in the window",
        labels=[*ITEM, "window"],
    )
    for window, counter in snapshot.windows.items():
        bounces = _by(counter, F.BOUNCES)
        for labels, n in sorted(_by(counter, F.SESSIONS).items()):
            sessions.add_metric([*labels, window], n)
            if n > 0:
                bounce.add_metric([*labels, window], bounces.get(labels, 0) / n)
        click_counts = _by(counter, F.CLICKS)
        impression_counts = _by(counter, F.IMPRESSIONS)
        for labels in sorted(impression_counts.keys() | click_counts.keys()):
            n_imp = impression_counts.get(labels, 0)
            n_clk = click_counts.get(labels, 0)
            impressions.add_metric([*labels, window], n_imp)
            clicks.add_metric([*labels, window], n_clk)
            if n_imp > 0:
                ctr.add_metric([*labels, window], n_clk / n_imp)
    yield from (sessions, bounce, impressions, clicks, ctr)

    totals = snapshot.totals
    # A numerator counter exists (at 0) for every label set of its denominator, so that PromQL
    # ratios of the two are defined as soon as the denominator is.
    for name, kind, paired_with, label_names, doc in (
        (
            "kpi_sessions",
            F.SESSIONS,
            F.SESSIONS,
            SITE,
            "Sessions started (bounce-rate denominator)",
        ),
        (
            "kpi_non_bounced_sessions",
            F.NON_BOUNCED,
            F.SESSIONS,
            SITE,
            "Sessions that are not bounces (bounce rate = 1 - this / kpi_sessions_total)",
        ),
        ("kpi_impressions", F.IMPRESSIONS, F.IMPRESSIONS, ITEM, "Impressions (CTR denominator)"),
        ("kpi_clicks", F.CLICKS, F.IMPRESSIONS, ITEM, "Clicks (CTR numerator)"),
    ):
        family = CounterMetricFamily(name, doc, labels=label_names)
        counts = _by(totals, kind)
        for values in sorted(counts.keys() | _by(totals, paired_with).keys()):
            family.add_metric(list(values), counts.get(values, 0))
        yield family


def health_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    totals = snapshot.totals
    processed = CounterMetricFamily(
        "kpistream_events_processed", "Valid events applied to the KPI state"
    )
    processed.add_metric([], totals[F.PROCESSED])
    yield processed
    late = CounterMetricFamily(
        "kpistream_events_late", "Events dropped for arriving later than the allowed lateness"
    )
    late.add_metric([], totals[F.LATE])
    yield late
    duplicate = CounterMetricFamily(
        "kpistream_events_duplicate",
        "Events dropped as a retry of an event already counted (same event_id)",
    )
    duplicate.add_metric([], totals[F.DUPLICATE])
    yield duplicate
    rejected = CounterMetricFamily(
        "kpistream_events_rejected",
        "Invalid events sent to the dead-letter topic",
        labels=["reason"],
    )
    for reason in REASONS:
        rejected.add_metric([reason], totals[F.field(F.REJECTED, reason)])
    yield rejected
    batch = HistogramMetricFamily(
        "kpistream_batch_processing_seconds",
        "Time to decode, process and dead-letter one partition batch (before its Redis commit)",
    )
    buckets = [
        (repr(le), float(totals[F.field(F.BATCH_BUCKET, repr(le))])) for le in F.BATCH_BUCKETS_S
    ]
    buckets.append(("+Inf", float(totals[F.BATCH_COUNT])))
    batch.add_metric([], buckets, sum_value=totals[F.BATCH_SUM_US] / 1_000_000)
    yield batch
    partitions = GaugeMetricFamily("kpistream_partitions", "Kafka partitions with state in Redis")
    partitions.add_metric([], snapshot.partitions)
    yield partitions
    if snapshot.watermark_ms is not None:
        watermark = GaugeMetricFamily(
            "kpistream_watermark_seconds",
            "Event-time watermark (newest accepted event time), Unix seconds",
        )
        watermark.add_metric([], snapshot.watermark_ms / 1000)
        yield watermark
