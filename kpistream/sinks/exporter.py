"""`kpistream exporter`: serve the KPI state from Redis on /metrics."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from kpistream.config.connections import SyncRedis, redis_client
from kpistream.config.settings import Settings
from kpistream.sinks.kpi_collector import KpiCollector
from kpistream.sinks.log_ends import LogEnds
from kpistream.sinks.store_reader import WindowReader

log = logging.getLogger(__name__)


class Exporter:
    """The running exporter: its HTTP server and the broker reader behind its lag."""

    def __init__(self, server: Any, log_ends: LogEnds) -> None:
        self.server = server
        self.log_ends = log_ends

    def shutdown(self) -> None:
        self.server.shutdown()
        self.log_ends.stop()


def build_registry(
    settings: Settings, client: SyncRedis | None = None, log_ends: LogEnds | None = None
) -> CollectorRegistry:
    client = client or redis_client(settings, socket_timeout=5, socket_connect_timeout=2)
    reader = WindowReader(client, prefix=settings.redis_prefix)
    windows = settings.window_minutes()
    long_windows = settings.long_windows
    budgets = settings.label_budgets()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        KpiCollector(
            lambda: reader.snapshot(windows, long_windows, budgets),
            cache_s=settings.exporter_cache_s,
            ends=None if log_ends is None else log_ends.read,
        )
    )
    return registry


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int | None = None) -> Exporter:
    """Start the HTTP server in a daemon thread, and the reader of the broker's log ends."""
    topics = [settings.clickstream_topic, settings.social_topic, settings.orders_topic]
    log_ends = LogEnds(settings, topics).start()
    registry = build_registry(settings, log_ends=log_ends)
    server, _thread = start_http_server(port or settings.metrics_port, addr=host, registry=registry)
    return Exporter(server, log_ends)


def run_forever(settings: Settings, *, host: str, port: int | None) -> None:
    serve(settings, host=host, port=port)
    log.info("exporter on http://%s:%d/metrics", host, port or settings.metrics_port)
    threading.Event().wait()
