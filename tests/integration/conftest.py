"""Integration fixtures: batch consumers on the session's real broker and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kpistream.settings import Settings
from streams.batch_consumer import BatchConsumer


@pytest.fixture
async def workers() -> AsyncIterator[Callable[[Settings], Any]]:
    """Start batch consumers; at teardown stop them and fail if one swallowed an error."""
    running: list[tuple[BatchConsumer, asyncio.Task[None]]] = []

    async def start(
        settings: Settings,
        prepare: Callable[[BatchConsumer], None] = lambda _: None,
        logic: Any = None,
        group_id: str | None = None,
    ) -> BatchConsumer:
        consumer = BatchConsumer(settings, logic, group_id=group_id)
        prepare(consumer)
        await consumer.start()
        running.append((consumer, asyncio.create_task(consumer.run())))
        return consumer

    yield start
    for consumer, task in running:
        await consumer.stop()
        await asyncio.wait_for(task, 10)
        assert consumer.errors == [], f"worker swallowed errors: {consumer.errors!r}"
