"""`kpistream exporter`: serve the KPI state from Redis on /metrics."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from kpistream.config.connections import SyncRedis, redis_client
from kpistream.config.settings import Settings
from kpistream.sinks.kpi_collector import KpiCollector
from kpistream.sinks.window_store import WindowReader

log = logging.getLogger(__name__)


def build_registry(settings: Settings, client: SyncRedis | None = None) -> CollectorRegistry:
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
        )
    )
    return registry


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int | None = None) -> Any:
    """Start the HTTP server in a daemon thread; returns the server."""
    registry = build_registry(settings)
    server, _thread = start_http_server(port or settings.metrics_port, addr=host, registry=registry)
    return server


def run_forever(settings: Settings, *, host: str, port: int | None) -> None:
    serve(settings, host=host, port=port)
    log.info("exporter on http://%s:%d/metrics", host, port or settings.metrics_port)
    threading.Event().wait()
