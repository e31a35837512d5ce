"""Every KPI through the real broker, worker, Redis and exporter, against hand-computed values."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from kpistream.produce import produce
from kpistream.runtime import ensure_topics, free_port
from sinks.exporter import serve
from tests.integration import known_events as K
from tests.integration import kpi_events as KE
from tests.integration.waits import wait_for_totals


async def test_every_web_kpi_is_exact_and_carts_are_decided_without_later_events(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    # idle_after_s=1: once the partitions go quiet their watermark follows the wall clock, so
    # B's cart is decided abandoned although no later event ever arrives.
    settings = settings_factory(idle_after_s=1)
    await ensure_topics(settings)
    await workers(settings)
    await produce(settings, KE.LINES)
    await wait_for_totals(settings, {"end\x1fshop": KE.SHOP_SESSIONS}, timeout_s=30)
    port = free_port()
    server = serve(settings, port=port)
    try:
        text = await asyncio.to_thread(_scrape, port)
    finally:
        server.shutdown()
    got = K.samples(text)
    assert got[("kpistream_events_processed_total", ())] == len(KE.EVENTS)
    for key, value in KE.EXPECTED.items():
        assert key in got, f"missing sample {key}"
        assert got[key] == pytest.approx(value, abs=1e-9), key


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())
