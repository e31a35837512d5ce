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
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kpistream.contract import health as H
from kpistream.contract.read_model import PartitionStatus, StoreSnapshot
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.kpis.series import Grouped, group
from kpistream.schemas.decoder import REASONS
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
        described = [_redis_up(True), *kpi_families(empty), *health_families(empty, {})]
        if self._ends is not None:
            described.append(_kafka_up(True))
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
        yield _redis_up(snapshot is not None)
        ends = None
        if self._ends is not None:
            ends = self._ends()
            yield _kafka_up(ends is not None)
        if snapshot is not None:
            yield from kpi_families(snapshot)
            yield from health_families(snapshot, ends or {})


def _kafka_up(up: bool) -> Metric:
    family = GaugeMetricFamily(
        "kpistream_kafka_up", "1 when the exporter read the log ends from the broker lately"
    )
    family.add_metric([], 1.0 if up else 0.0)
    return family


def _redis_up(up: bool) -> Metric:
    family = GaugeMetricFamily("kpistream_redis_up", "1 when the last KPI read from Redis worked")
    family.add_metric([], 1.0 if up else 0.0)
    return family


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


def _counter(name: str, text: str, value: float) -> Metric:
    family = CounterMetricFamily(name, text)
    family.add_metric([], value)
    return family


def health_families(snapshot: StoreSnapshot, ends: Ends) -> Iterator[Metric]:
    """The service's own health: what it counted, dropped, forwarded and how fast; the
    partitions, their lag and the label budgets."""
    health = snapshot.health
    yield _counter(
        "kpistream_events_processed", "Valid events applied to the KPI state", health[H.PROCESSED]
    )
    yield _counter(
        "kpistream_events_late",
        "Events dropped for arriving later than the allowed lateness",
        health[H.LATE],
    )
    yield _counter(
        "kpistream_events_duplicate",
        "Events dropped as a retry of an event already counted (same event_id)",
        health[H.DUPLICATE],
    )
    rejected = CounterMetricFamily(
        "kpistream_events_rejected",
        "Invalid events sent to the dead-letter topic",
        labels=["reason"],
    )
    for reason in REASONS:
        rejected.add_metric([reason], health[fields.field(H.REJECTED, reason)])
    yield rejected
    yield _batch_times(health)
    for name, text, value in (
        (
            "kpistream_fenced_writes",
            "Batches a worker that had lost its partition tried to commit; rejected by the fence",
            snapshot.fenced_writes,
        ),
        (
            "kpistream_state_resets",
            "Partitions found without any state (Redis came back empty) and rebuilt from the "
            "earliest offset the topic retains",
            snapshot.state_resets,
        ),
        (
            "kpistream_events_rerouted",
            "Events that arrived on a partition that does not own their visitor or account "
            "and were forwarded to the owner (counted again there)",
            health[H.REROUTED],
        ),
        (
            "kpistream_offsets_skipped",
            "Offsets the log had no record for (transaction markers, compaction, retention), "
            "confirmed by a second read",
            health[H.SKIPPED],
        ),
    ):
        yield _counter(name, text, value)
    yield from partition_families(snapshot, ends, now_s=time.time())
    yield from label_families(snapshot)
    yield from _progress(snapshot)


def _batch_times(health: Counter[str]) -> Metric:
    batch = HistogramMetricFamily(
        "kpistream_batch_processing_seconds",
        "Time to decode, process and dead-letter one partition batch (before its Redis commit)",
    )
    buckets = [
        (repr(le), float(health[fields.field(H.BATCH_BUCKET, repr(le))]))
        for le in H.BATCH_BUCKETS_S
    ]
    buckets.append(("+Inf", float(health[H.BATCH_COUNT])))
    batch.add_metric([], buckets, sum_value=health[H.BATCH_SUM_US] / 1_000_000)
    return batch


def _progress(snapshot: StoreSnapshot) -> Iterator[Metric]:
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


def label_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    """Label budgets: size, values holding a slot, distinct values refused one."""
    labels = ["dimension"]
    budget = GaugeMetricFamily(
        "kpistream_label_budget",
        "Label values a dimension may name (KPISTREAM_MAX_*)",
        labels=labels,
    )
    used = GaugeMetricFamily(
        "kpistream_label_values",
        "Label values holding a slot of the dimension's budget (unseen for "
        "KPISTREAM_LABEL_IDLE_DAYS, a value gives its slot up)",
        labels=labels,
    )
    refused = GaugeMetricFamily(
        "kpistream_label_refused_values",
        "Distinct values refused a label because the budget was full (they fold into "
        "'other'); HyperLogLog estimate, reset by `kpistream labels reset`",
        labels=labels,
    )
    for name, use in sorted(snapshot.labels.items()):
        budget.add_metric([name], use.budget)
        used.add_metric([name], use.admitted)
        refused.add_metric([name], use.refused)
    yield budget
    yield used
    yield refused


#: A worker that has not written its live view for this long is not consuming: it writes
#: about every second while it owns a partition, paused and stalled ones included.
WORKER_SILENT_S = 15.0


def with_ends(status: dict[str, PartitionStatus], ends: Ends) -> dict[str, PartitionStatus]:
    """The partitions' status with the broker's log ends: every partition the broker has,
    claimed by a worker or not (a partition nobody ever read lags by its whole log). The
    larger of the broker's end and the owner's report counts (a broker's ListOffsets can
    trail what a fetch saw)."""
    merged = dict(status)
    for (topic, partition), end in ends.items():
        tag = f"{topic}:{partition}"
        known = merged.get(tag)
        if known is None:
            merged[tag] = PartitionStatus(None, None, end, False)
        else:
            reported = known.end_offset or 0
            merged[tag] = PartitionStatus(
                known.offset,
                known.watermark_ms,
                max(end, reported),
                known.stalled,
                known.reported_ms,
            )
    return merged


def partition_families(snapshot: StoreSnapshot, ends: Ends, *, now_s: float) -> Iterator[Metric]:
    """Per-partition health, live: lag from the log end (the broker's, or else the owner's
    last report) and the stored offset; whether any worker is consuming."""
    status = with_ends(snapshot.partition_status, ends)
    reports = [s.reported_ms for s in status.values() if s.reported_ms]
    last = GaugeMetricFamily(
        "kpistream_worker_report_age_seconds",
        "Seconds since a worker last reported a partition it owns (workers report about "
        "every second)",
    )
    up = GaugeMetricFamily(
        "kpistream_worker_up",
        f"1 while some worker reports its partitions (within {WORKER_SILENT_S:g} s), 0 when "
        "none is consuming",
    )
    silent = None if not reports else max(0.0, now_s - max(reports) / 1000)
    if silent is not None:
        last.add_metric([], silent)
    up.add_metric([], 1.0 if silent is not None and silent <= WORKER_SILENT_S else 0.0)
    yield last
    yield up
    lag = GaugeMetricFamily(
        "kpistream_consumer_lag_records",
        "Records not yet counted: log end offsets minus stored offsets, summed over partitions",
    )
    lag.add_metric([], sum(s.lag for s in status.values()))
    yield lag
    labels = ["topic", "partition"]
    per_lag = GaugeMetricFamily(
        "kpistream_partition_lag_records",
        "Records of the partition not yet counted (log end minus stored offset)",
        labels=labels,
    )
    stalled = GaugeMetricFamily(
        "kpistream_partition_stalled",
        "1 while a record batch of the partition cannot be read (e.g. an unknown codec or "
        "a corrupt batch); the other partitions go on",
        labels=labels,
    )
    age = GaugeMetricFamily(
        "kpistream_partition_watermark_age_seconds",
        "Wall clock minus the partition's event-time watermark",
        labels=labels,
    )
    for tag, s in sorted(status.items()):
        topic, _, partition = tag.rpartition(":")
        per_lag.add_metric([topic, partition], s.lag)
        stalled.add_metric([topic, partition], 1.0 if s.stalled else 0.0)
        if s.watermark_ms:
            age.add_metric([topic, partition], max(0.0, now_s - s.watermark_ms / 1000))
    yield per_lag
    yield stalled
    yield age
