"""Waiting for the real pipeline to catch up, by reading Redis the way the exporter does."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.runtime import free_port
from kpistream.sinks.exporter import serve
from kpistream.sinks.window_store import WindowReader
from tests.support.known_events import Samples, samples


async def wait_for_totals(
    settings: Settings, expected: dict[str, int], timeout_s: float = 30
) -> WindowReader:
    """Wait until the summed totals in Redis reach the expected values."""
    reader = WindowReader(redis.Redis.from_url(settings.redis), prefix=settings.redis_prefix)
    windows = settings.window_minutes()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    totals: dict[str, int] = {}
    while loop.time() < deadline:
        totals = (await asyncio.to_thread(reader.snapshot, windows)).totals
        if all(totals.get(k, 0) >= v for k, v in expected.items()):
            return reader
        await asyncio.sleep(0.2)
    got = {k: totals.get(k, 0) for k in expected}
    raise AssertionError(f"totals {got} never reached {expected} in {timeout_s}s")


def counted(totals: Mapping[str, int]) -> int:
    """Records the totals have counted: processed, duplicate, late, rejected, or forwarded
    to the partition that owns them (their forwarded copy is a record of its own)."""
    return sum(
        v
        for k, v in totals.items()
        if k in (H.PROCESSED, H.DUPLICATE, H.LATE, H.REROUTED) or k.startswith(H.REJECTED)
    )


async def wait_for_events(settings: Settings, expected: int, timeout_s: float = 30) -> WindowReader:
    reader = WindowReader(redis.Redis.from_url(settings.redis), prefix=settings.redis_prefix)
    windows = settings.window_minutes()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    seen = -1
    while loop.time() < deadline:
        totals = (await asyncio.to_thread(reader.snapshot, windows)).totals
        seen = counted(totals)
        if seen >= expected:
            return reader
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {seen} of {expected} events reached Redis in {timeout_s}s")


async def scrape_samples(settings: Settings) -> Samples:
    """Serve the real exporter on a free port, scrape /metrics once, and parse it."""
    text = await scrape_text(settings)
    return samples(text)


async def scrape_text(settings: Settings) -> str:
    port = free_port()
    server = serve(settings, port=port)
    try:
        return await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def wait_until(what: str, check: Any, *, timeout_s: float = 60) -> None:
    """Poll ``check()`` (sync or async) until it is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


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
