"""The stack fixtures: one real embedded broker and one real redis-server per test session,
settings of their own per test, in-process workers; and the helpers that go with them."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kpistream import runtime
from kpistream.config.settings import Settings, load
from kpistream.sinks.window_store import WindowStore
from kpistream.streams.batch_consumer import BatchConsumer
from kpistream.streams.registry import STREAMS


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def broker(workdir: Path) -> Iterator[str]:
    server = runtime.start_broker(workdir)
    yield server.address
    server.stop()


@pytest.fixture(scope="session")
def redis_url(workdir: Path) -> Iterator[str]:
    server = runtime.start_redis(workdir)
    yield server.address
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(workdir: Path) -> Iterator[runtime.EmbeddedCluster]:
    """A real Redis Cluster: three masters with a replica each, on loopback."""
    cluster = runtime.start_redis_cluster(workdir / "cluster")
    yield cluster
    cluster.stop()


def on_cluster(
    make: Callable[..., Settings], cluster: runtime.EmbeddedCluster
) -> Callable[..., Settings]:
    """A settings factory whose settings use the cluster (cluster-aware clients)."""

    def made(**overrides: object) -> Settings:
        return make(**{"redis": cluster.address, "redis_cluster": True, **overrides})

    return made


@pytest.fixture
def settings_factory(broker: str, redis_url: str):  # type: ignore[no-untyped-def]
    """Settings with topics, group and Redis prefix of their own, so tests never share state."""

    def make(**overrides: object) -> Settings:
        tag = uuid.uuid4().hex[:8]
        base = {
            "kafka": broker,
            "redis": redis_url,
            "redis_prefix": f"t{tag}",
            "clickstream_topic": f"clicks-{tag}",
            "social_topic": f"social-{tag}",
            "orders_topic": f"orders-{tag}",
            "deadletter_topic": f"dlq-{tag}",
            "consumer_group": f"g-{tag}",
            "partitions": 2,
            "rebalance_timeout_s": 1,
            # Fixtures are historic data: keep the watermark in event time unless a test
            # is about idle partitions.
            "idle_after_s": 3600,
        }
        base.update(overrides)
        return load(base, env={})

    return make


def require_binary(name: str, debian_package: str) -> str:
    """Path of a system binary; skip without it, but fail under CI, which installs it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing under CI; .ci/run must install {debian_package}")
        pytest.skip(f"{name} is not installed (Debian package: {debian_package})")
    return path


@pytest.fixture
async def workers() -> AsyncIterator[Callable[[Settings], Any]]:
    """Start batch consumers; at teardown stop them and fail if one swallowed an error."""
    running: list[tuple[BatchConsumer, asyncio.Task[None]]] = []

    async def start(
        settings: Settings,
        prepare: Callable[[BatchConsumer], None] = lambda _: None,
        logic: Any = None,
        group_id: str | None = None,
        clock_ms: Callable[[], int] | None = None,
        kind: type[BatchConsumer] = BatchConsumer,
    ) -> BatchConsumer:
        consumer = kind(settings, logic, group_id=group_id, store=WindowStore.from_settings)
        if clock_ms is not None:
            consumer.clock_ms = clock_ms
        prepare(consumer)
        await consumer.start()
        running.append((consumer, asyncio.create_task(consumer.run())))
        return consumer

    yield start
    for consumer, task in running:
        await consumer.stop()
        await asyncio.wait_for(task, 10)
        assert consumer.errors == [], f"worker swallowed errors: {consumer.errors!r}"


async def start_streams(
    workers: Any, settings: Settings, **options: Any
) -> tuple[BatchConsumer, ...]:
    """In-process, what one `kpistream worker` runs: one consumer per stream of the
    registry (clickstream, social, orders, in that order), each in its own group
    (``workers`` is the conftest fixture)."""
    return tuple(
        [
            await workers(settings, logic=s.logic(settings), group_id=s.group(settings), **options)
            for s in STREAMS
        ]
    )
