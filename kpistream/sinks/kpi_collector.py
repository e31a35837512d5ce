"""Prometheus collector that reads the KPI state from Redis at scrape time.

A fresh set of metric families is built from one :class:`kpistream.sinks.window_store.StoreSnapshot`
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
    Metric,
)
from prometheus_client.registry import Collector

from kpistream.contract.read_model import StoreSnapshot
from kpistream.kpis import catalogue as K
from kpistream.kpis.series import Grouped, group
from kpistream.sinks.health_metrics import health_families, kafka_up, redis_up
from kpistream.sinks.log_ends import Ends

log = logging.getLogger(__name__)


class KpiCollector(Collector):
    def __init__(
        self,
        read: Callable[[], StoreSnapshot],
        *,
        cache_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        ends: Callable[[], Ends | None] | None = None,
    ) -> None:
        self._read = read
        #: the broker's log ends (:class:`kpistream.sinks.log_ends.LogEnds`); None: not read
        self._ends = ends
        self.cache_s = cache_s
        self._monotonic = monotonic
        self._cached: tuple[float, StoreSnapshot | None] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        """Every family this collector serves, built from an empty snapshot: the names the
        registry needs to answer ``/metrics?name[]=...``, without reading Redis."""
        empty = StoreSnapshot(watermark_ms=0, totals=Counter(), windows={}, partitions=0)
        described = [redis_up(True), *kpi_families(empty), *health_families(empty, {})]
        if self._ends is not None:
            described.append(kafka_up(True))
        return iter(described)

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
        yield redis_up(snapshot is not None)
        ends = None
        if self._ends is not None:
            ends = self._ends()
            yield kafka_up(ends is not None)
        if snapshot is not None:
            yield from kpi_families(snapshot)
            yield from health_families(snapshot, ends or {})


def _sum(counter: Grouped, parts: tuple[K.Count | K.Level, ...]) -> dict[tuple[str, ...], float]:
    """The parts' values summed by label set, each in its unit (``Count.scale``)."""
    raw: Counter[tuple[str, ...]] = Counter()
    for part in parts:
        raw.update(counter.get(part, {}))
    scale = parts[0].scale if parts and isinstance(parts[0], K.Count) else 1.0
    return {labels: n * scale if scale != 1.0 else n for labels, n in raw.items()}


def quotient_values(
    q: K.Quotient, window: Grouped, levels: Grouped
) -> Iterator[tuple[tuple[str, ...], float]]:
    """(labels, value) of a quotient over one window's counts, where its denominator is > 0;
    a :class:`~kpistream.kpis.catalogue.Level` denominator is read from ``levels``."""
    numerator = Counter(_sum(window, q.numerator))
    numerator.subtract(_sum(window, q.subtract))
    source = levels if isinstance(q.denominator[0], K.Level) else window
    denominator = _sum(source, q.denominator)
    width = len(q.labels)
    for labels in sorted(numerator.keys() | denominator.keys()):
        den = denominator.get(labels[: width - q.extra_labels], 0)
        if den > 0 and len(labels) == width:
            yield labels, q.value(numerator[labels], den)


def reads(kpi: K.Count | K.Quotient, window: str, long_windows: frozenset[str]) -> bool:
    """Whether a window holds what the KPI counts: a long window (day buckets) holds only the
    long-window counts, a rolling window only the others. A window that holds none of them
    would read 0 (social engagement over 30 days read 0.0 with likes in every minute)."""
    counts = (
        [kpi]
        if isinstance(kpi, K.Count)
        else [
            c for c in (*kpi.numerator, *kpi.subtract, *kpi.denominator) if isinstance(c, K.Count)
        ]
    )
    return all(c.long_window == (window in long_windows) for c in counts)


def kpi_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    windows = {window: group(counter) for window, counter in snapshot.windows.items()}
    gauges = group(snapshot.gauges)
    long = snapshot.long_windows
    for count in K.COUNTS:
        if not count.window:
            continue
        family = GaugeMetricFamily(
            count.metric, f"{count.help}, in the window", labels=[*count.labels, "window"]
        )
        for window, grouped in windows.items():
            if not reads(count, window, long):
                continue
            for labels, n in sorted(grouped.get(count, {}).items()):
                family.add_metric([*labels, window], n * count.scale)
        yield family
    for q in K.QUOTIENTS:
        family = GaugeMetricFamily(q.metric, q.help, labels=[*q.labels, "window"])
        for window, grouped in windows.items():
            if not reads(q, window, long):
                continue
            for labels, value in quotient_values(q, grouped, gauges):
                family.add_metric([*labels, window], value)
        yield family
    yield from visitor_families(snapshot, windows)
    yield from level_families(gauges)
    totals = group(snapshot.totals)
    for count in K.COUNTS:
        if not count.total:
            continue
        counter_family = CounterMetricFamily(count.metric, count.help, labels=list(count.labels))
        values = totals.get(count, {})
        label_sets = set(values)
        if count.paired_with is not None:
            width = len(count.labels)
            label_sets |= {k[:width] for k in totals.get(count.paired_with, {}) if len(k) >= width}
        for labels in sorted(label_sets):
            counter_family.add_metric(list(labels), values.get(labels, 0) * count.scale)
        yield counter_family


def visitor_families(snapshot: StoreSnapshot, windows: dict[str, Grouped]) -> Iterator[Metric]:
    """Unique visitors per window, split into new and returning (``windows``: the
    snapshot's windows, grouped)."""
    unique, kinds = (
        GaugeMetricFamily(f.metric, f.help, labels=[*f.labels, "window"]) for f in K.FAMILIES[:2]
    )
    for window, per_site in snapshot.uniques.items():
        new = windows[window].get(K.NEW_VISITORS, {})
        for site, n in sorted(per_site.items()):
            unique.add_metric([site, window], n)
            first_time = new.get((site,), 0)
            kinds.add_metric([site, "new", window], first_time)
            # An estimate minus an exact count: never report fewer than none.
            kinds.add_metric([site, "returning", window], max(0, n - first_time))
    yield unique
    yield kinds


def level_families(gauges: Grouped) -> Iterator[Metric]:
    for level in K.LEVELS:
        family = GaugeMetricFamily(level.metric, level.help, labels=list(level.labels))
        for labels, n in sorted(gauges.get(level, {}).items()):
            family.add_metric(list(labels), n)
        yield family
