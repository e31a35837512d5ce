"""Waiting for the real pipeline to catch up, by reading Redis the way the exporter does."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from kpistream.config.connections import redis_client
from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.runtime import free_port
from kpistream.sinks.exporter import serve
from kpistream.sinks.store_reader import WindowReader
from tests.support.known_events import Samples, samples


class Patient(WindowReader):
    """A reader for waits: while Redis is down or still loading its data (the fault tests
    restart it), a snapshot is None instead of an error."""

    def snapshot(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().snapshot(*args, **kwargs)
        except redis.exceptions.ConnectionError:  # BusyLoadingError is one
            return None


async def wait_for_totals(
    settings: Settings, expected: dict[str, int], timeout_s: float = 30
) -> WindowReader:
    """Wait until the summed totals (KPI and health counters) in Redis reach the expected
    values."""
    reader = Patient(redis_client(settings), prefix=settings.redis_prefix)
    windows = settings.window_minutes()
    totals: dict[str, int] = {}

    async def reached() -> bool:
        nonlocal totals
        snapshot = await asyncio.to_thread(reader.snapshot, windows)
        if snapshot is None:
            return False  # Redis down or loading (a fault test's): not yet
        totals = {**snapshot.totals, **snapshot.health}
        return all(totals.get(k, 0) >= v for k, v in expected.items())

    await wait_until(
        f"the totals reach {expected}",
        reached,
        timeout_s=timeout_s,
        detail=lambda: f"got { ({k: totals.get(k, 0) for k in expected}) }",
    )
    return reader


def counted(health: Mapping[str, int]) -> int:
    """Records the health counters have counted: processed, duplicate, late, rejected, or
    forwarded to the partition that owns them (their forwarded copy is a record of its own)."""
    return sum(
        v
        for k, v in health.items()
        if k in (H.PROCESSED, H.DUPLICATE, H.LATE, H.REROUTED) or k.startswith(H.REJECTED)
    )


async def wait_for_events(settings: Settings, expected: int, timeout_s: float = 30) -> WindowReader:
    """Wait until Redis has counted ``expected`` records (see :func:`counted`)."""
    reader = Patient(redis_client(settings), prefix=settings.redis_prefix)
    windows = settings.window_minutes()
    seen = -1

    async def reached() -> bool:
        nonlocal seen
        snapshot = await asyncio.to_thread(reader.snapshot, windows)
        if snapshot is None:
            return False  # Redis down or loading (a fault test's): not yet
        seen = counted(snapshot.health)
        return seen >= expected

    await wait_until(
        f"{expected} events reach Redis", reached, timeout_s=timeout_s, detail=lambda: f"{seen}"
    )
    return reader


async def scrape_samples(settings: Settings) -> Samples:
    """Serve the real exporter on a free port, scrape /metrics once, and parse it."""
    text = await scrape_text(settings)
    return samples(text)


async def scrape_text(settings: Settings, query: str = "") -> str:
    """Serve the real exporter on a free port and fetch /metrics once (``query``: its query
    string, e.g. ``name[]=kpi_bounce_rate``)."""
    port = free_port()
    server = serve(settings, port=port)
    try:
        return await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics?{query}")
    finally:
        server.shutdown()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def wait_until(
    what: str,
    check: Any,
    *,
    timeout_s: float = 60,
    every_s: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll ``check()`` (sync or async) until it is true; fail after ``timeout_s`` naming
    ``what`` (and ``detail()``, what was seen last). Every wait of the tests is this one (or
    :func:`wait_until_sync` outside an event loop): a condition with a deadline, never a
    sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            seen = f"; last seen: {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g}s waiting until {what}{seen}")
        await asyncio.sleep(every_s)


def wait_until_sync(
    what: str, check: Callable[[], Any], *, timeout_s: float = 60, every_s: float = 0.2
) -> None:
    """:func:`wait_until` for code without an event loop."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting until {what}")
        time.sleep(every_s)


async def read_records(
    settings: Settings, topic: str, expected: int, *, timeout_s: float = 60, what: str = "records"
) -> list[ConsumerRecord[bytes, bytes]]:
    """A topic's records from the start: waits until at least ``expected`` are there (with a
    deadline, not one poll), then takes any more that arrive within half a second after."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < expected:
            assert loop.time() < deadline, f"{len(records)} of {expected} {what}"
            batch = await consumer.getmany(timeout_ms=500)
            records += [r for rs in batch.values() for r in rs]
        batch = await consumer.getmany(timeout_ms=500)
        return records + [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()


async def read_dead_letters(
    settings: Settings, expected: int, *, timeout_s: float = 60
) -> list[dict[str, Any]]:
    """The records of the dead-letter topic, decoded (see :func:`read_records`)."""
    records = await read_records(
        settings, settings.deadletter_topic, expected, timeout_s=timeout_s, what="dead letters"
    )
    return [json.loads(r.value) for r in records]
