"""A real collector (uvicorn + the Starlette app) on a free loopback port, in this loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import uvicorn
from aiokafka import AIOKafkaConsumer

from collector.app import create_app
from kpistream.runtime import ensure_topics, free_port
from kpistream.settings import Settings


@contextlib.asynccontextmanager
async def running_collector(settings: Settings, app: Any = None) -> AsyncIterator[str]:
    """Yields the collector's base URL once it answers; stops it at exit."""
    await ensure_topics(settings)
    port = free_port()
    config = uvicorn.Config(
        app or create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        lifespan="on",
        loop="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not server.started:
        assert not task.done(), f"the collector did not start: {task.exception()!r}"
        assert loop.time() < deadline, "the collector did not start in 30 s"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def read_topic(
    settings: Settings, expected: int, *, timeout_s: float = 30
) -> list[tuple[int, bytes, dict[str, Any]]]:
    """(partition, key, decoded value) of the clickstream topic's records: waits until at
    least ``expected`` are there, then half a second more for any extra ones."""
    consumer = AIOKafkaConsumer(
        settings.clickstream_topic,
        bootstrap_servers=settings.kafka,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    out: list[tuple[int, bytes, dict[str, Any]]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    settle_until: float | None = None
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    out.append((r.partition, r.key, msgspec.json.decode(r.value)))
            now = loop.time()
            if len(out) >= expected and settle_until is None:
                settle_until = now + 0.5
            if settle_until is not None and now >= settle_until:
                return out
            assert now < deadline, f"only {len(out)} of {expected} records arrived"
    finally:
        await consumer.stop()
