"""The collector's own metrics, served on its /metrics."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kpistream_collector_requests",
            "HTTP requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.accepted = Counter(
            "kpistream_collector_events_accepted",
            "events acknowledged by Kafka, by protocol",
            ["protocol"],
            registry=r,
        )
        self.rejected = Counter(
            "kpistream_collector_events_rejected",
            "events refused with HTTP 400, by protocol and reason",
            ["protocol", "reason"],
            registry=r,
        )
        self.dropped = Counter(
            "kpistream_collector_events_dropped",
            "events not counted on purpose (gpc, dnt, bot, bot_behaviour, no_user_agent, "
            "unmapped_event) or refused for now, the sender told to retry (rate_limited, "
            "queue_full, kafka_timeout, kafka_unavailable, kafka_error, redis_unavailable, "
            "internal_error)",
            ["protocol", "reason"],
            registry=r,
        )
        self.produce_seconds = Histogram(
            "kpistream_collector_produce_seconds",
            "time from handing a request's events to the producer to Kafka's acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.queue = Gauge(
            "kpistream_collector_queue_events",
            "events handed to the producer and not yet acknowledged by Kafka",
            registry=r,
        )
        self.queue_capacity = Gauge(
            "kpistream_collector_queue_capacity",
            "most events the collector holds before answering 503",
            registry=r,
        )

    # The labelled children, looked up once: ``labels()`` costs more than ``inc()``.
    @lru_cache(maxsize=256)  # noqa: B019 - one instance per process
    def accepted_of(self, protocol: str) -> Any:
        return self.accepted.labels(protocol)

    @lru_cache(maxsize=1024)  # noqa: B019
    def rejected_of(self, protocol: str, reason: str) -> Any:
        return self.rejected.labels(protocol, reason)

    @lru_cache(maxsize=1024)  # noqa: B019
    def dropped_of(self, protocol: str, reason: str) -> Any:
        return self.dropped.labels(protocol, reason)
