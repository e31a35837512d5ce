"""The service's own health as Prometheus families: what it counted, dropped, forwarded and
how fast; the partitions, their lag and whether a worker consumes them; the label budgets;
whether the exporter reaches Kafka and Redis."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from kpistream.contract import health as H
from kpistream.contract.read_model import PartitionStatus, StoreSnapshot
from kpistream.kpis import fields
from kpistream.schemas.decoder import REASONS
from kpistream.sinks.log_ends import Ends


def up(name: str, text: str, is_up: bool) -> Metric:
    family = GaugeMetricFamily(name, text)
    family.add_metric([], 1.0 if is_up else 0.0)
    return family


def kafka_up(is_up: bool) -> Metric:
    return up(
        "kpistream_kafka_up", "1 when the exporter read the log ends from the broker lately", is_up
    )


def redis_up(is_up: bool) -> Metric:
    return up("kpistream_redis_up", "1 when the last KPI read from Redis worked", is_up)


#: (name, help) of the service's counters read from the snapshot
FENCED_WRITES = (
    "kpistream_fenced_writes",
    "Batches a worker that had lost its partition tried to commit; rejected by the fence",
)
STATE_RESETS = (
    "kpistream_state_resets",
    "Partitions found without any state (Redis came back empty) and rebuilt from the "
    "earliest offset the topic retains",
)
REROUTED = (
    "kpistream_events_rerouted",
    "Events that arrived on a partition that does not own their visitor or account "
    "and were forwarded to the owner (counted again there)",
)
SKIPPED = (
    "kpistream_offsets_skipped",
    "Offsets the log had no record for (transaction markers, compaction, retention), "
    "confirmed by a second read",
)


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
    for name_text, value in (
        (FENCED_WRITES, snapshot.fenced_writes),
        (STATE_RESETS, snapshot.state_resets),
        (REROUTED, health[H.REROUTED]),
        (SKIPPED, health[H.SKIPPED]),
    ):
        yield _counter(*name_text, value)
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
    yield from _workers(status, now_s)
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


def _workers(status: dict[str, PartitionStatus], now_s: float) -> Iterator[Metric]:
    """Whether a worker reports the partitions it owns, and how long since one did."""
    reports = [s.reported_ms for s in status.values() if s.reported_ms]
    last = GaugeMetricFamily(
        "kpistream_worker_report_age_seconds",
        "Seconds since a worker last reported a partition it owns (workers report about "
        "every second)",
    )
    silent = None if not reports else max(0.0, now_s - max(reports) / 1000)
    if silent is not None:
        last.add_metric([], silent)
    yield last
    yield up(
        "kpistream_worker_up",
        f"1 while some worker reports its partitions (within {WORKER_SILENT_S:g} s), 0 when "
        "none is consuming",
        silent is not None and silent <= WORKER_SILENT_S,
    )
