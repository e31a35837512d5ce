"""Redis crashes: kill -9 with the recommended persistence, and a restart from an older state
that the worker must detect and re-seek from, with a negative control (issue 4)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis

from kpistream.produce import produce
from kpistream.runtime import EmbeddedServer, ensure_topics, free_port, start_redis
from kpistream.streams.batch_consumer import BatchConsumer
from kpistream.worker import batch_consumer
from tests.faults import oracle
from tests.faults.common import LINES, flowing, now_ms, processed, settings_for
from tests.support.stack import start_streams
from tests.support.waits import wait_until


def kill(server: EmbeddedServer) -> None:
    server.process.kill()  # kill -9: no shutdown save; what is on disk is what survives
    server.process.wait()


async def test_redis_killed_twice_mid_stream_restarts_from_its_aof_and_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, workers, tmp_path
) -> None:
    """Redis (appendonly yes, appendfsync everysec) is killed twice while events flow and the
    worker writes; each time it restarts from its AOF a second later. The worker waits and
    retries with backoff, reloads, re-seeks, and the state is exact."""
    port = free_port()
    server = start_redis(tmp_path, port, persist=True)
    settings = settings_for(settings_factory, redis=server.address, batch_max_records=50)
    await ensure_topics(settings)
    faults_done = asyncio.Event()
    flow = flowing(settings, 60, faults_done)  # still flowing after both crashes
    try:
        await start_streams(workers, settings)
        for mark in (len(LINES) // 4, len(LINES) // 2):

            async def reached(mark: int = mark) -> bool:
                return await processed(settings) >= mark

            await wait_until(f"{mark} events were processed", reached)
            kill(server)
            await asyncio.sleep(1.0)  # the worker meets a dead Redis meanwhile
            server = start_redis(tmp_path, port, persist=True, password=server.password)
        assert not flow.done(), "the events stopped flowing before the last Redis crash"
        faults_done.set()
        await flow
        await oracle.assert_exact(settings, now_ms=now_ms())
    finally:
        flow.cancel()
        server.stop()


def restore(snapshot: Path, data_dir: Path) -> None:
    """Leave only ``snapshot`` as the data Redis will load at its next start."""
    for aof in data_dir.glob("appendonly*"):  # Redis 7: a folder; Redis 6: one file
        shutil.rmtree(aof) if aof.is_dir() else aof.unlink()
    shutil.copy(snapshot, data_dir / "dump.rdb")


class TrustsItsMemory(BatchConsumer):
    """Negative control: after a Redis error it carries on from its in-memory position and
    sessions (writing that position over the stored one) instead of re-reading Redis and
    re-seeking to the stored offset."""

    async def _claim(self, tp: Any) -> None:
        kept = self.owned.get(tp)
        await super()._claim(tp)
        if kept is None or kept.next_offset is None:
            return
        fresh = self.owned[tp]
        assert self.redis is not None
        await self.redis.hset(fresh.keys.key("meta"), "offset", kept.next_offset)
        kept.epoch = fresh.epoch
        self.owned[tp] = kept
        await self._seek(tp, kept.next_offset)


@pytest.mark.parametrize("kind", [BatchConsumer, TrustsItsMemory], ids=["reseek", "no-reseek"])
async def test_redis_back_with_an_older_state_is_detected_and_replayed(  # type: ignore[no-untyped-def]
    settings_factory, workers, tmp_path: Path, kind: type[BatchConsumer]
) -> None:
    """Redis comes back older than the worker's last commit (a machine crash that loses the
    last second of `appendfsync everysec`, a failover to a lagging replica): here it restarts
    from a snapshot taken after the first third of the log, so the second third's state and
    offsets are gone together. The worker's next step fails its offset check; it re-reads the
    stored offsets and sessions, re-seeks, and replays: the state is exact. The negative
    control, a worker that keeps its in-memory position, loses exactly the second third."""
    port = free_port()
    server = start_redis(tmp_path, port, persist=True)
    settings = settings_for(settings_factory, redis=server.address, partitions=2)
    await ensure_topics(settings)
    first, second, third = LINES[:1000], LINES[1000:2000], LINES[2000:]
    try:
        await start_streams(workers, settings, kind=kind)
        await produce(settings, first)
        await oracle.wait_consumed(settings)
        redis.Redis.from_url(settings.redis).save()
        shutil.copy(tmp_path / "dump.rdb", tmp_path / "older.rdb")
        await produce(settings, second)
        await oracle.wait_consumed(settings)
        kill(server)
        restore(tmp_path / "older.rdb", tmp_path)
        server = start_redis(tmp_path, port, password=server.password)  # loads the older snapshot
        assert await processed(settings) == len(first)
        await produce(settings, third)
        if kind is BatchConsumer:
            await oracle.assert_exact(settings, now_ms=now_ms())
            return
        log = await oracle.wait_consumed(settings)
        got = oracle.stored(settings)
        assert oracle.accounted(got) == len(first) + len(third)  # the second third is lost
        assert got != oracle.expected(settings, log, now_ms=now_ms())
    finally:
        server.stop()


async def test_redis_back_empty_is_recognised_and_rebuilt_from_the_log(  # type: ignore[no-untyped-def]
    settings_factory, workers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis without persistence is killed (-9) while events flow and comes back empty on
    the same port. The worker does not take its missing epochs for another owner: it sees a
    Redis that lost its data, claims every partition anew, rebuilds from the earliest
    retained offset, logs it and counts it; the state is exactly the oracle's."""
    port = free_port()
    server = start_redis(tmp_path, port)  # no AOF: a restart is empty
    settings = settings_for(settings_factory, redis=server.address, batch_max_records=50)
    await ensure_topics(settings)
    faults_done = asyncio.Event()
    flow = flowing(settings, 40, faults_done)
    try:
        await start_streams(workers, settings)

        async def third() -> bool:
            return await processed(settings) >= len(LINES) // 3

        await wait_until("a third of the events were processed", third)
        kill(server)
        server = start_redis(tmp_path, port, password=server.password)
        assert not flow.done(), "the events stopped flowing before Redis came back empty"
        faults_done.set()
        await flow
        await oracle.assert_exact(settings, now_ms=now_ms())
        resets = int(
            redis.Redis.from_url(settings.redis).get(f"{settings.redis_prefix}:state_resets") or 0
        )
        assert 1 <= resets <= settings.partitions + max(1, settings.partitions // 2), resets
        assert "Redis has no state for it" in caplog.text
        fenced = redis.Redis.from_url(settings.redis).get(f"{settings.redis_prefix}:fenced_writes")
        assert fenced is None, "a worker alone fenced itself"
    finally:
        flow.cancel()
        server.stop()


async def test_a_worker_waiting_for_a_dead_redis_still_stops(  # type: ignore[no-untyped-def]
    settings_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis dies for good while the worker claims its partitions again: the claim retries
    with backoff, and a stop (SIGTERM, a rebalance) still ends the worker promptly instead
    of waiting for a Redis that never comes back."""
    port = free_port()
    server = start_redis(tmp_path, port)
    settings = settings_for(settings_factory, redis=server.address)
    await ensure_topics(settings)
    worker = batch_consumer(settings)
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        await produce(settings, LINES[:50])
        await wait_until("the first events were processed", lambda: processed(settings))
        kill(server)
        await produce(settings, LINES[50:100])
        await wait_until(
            "the worker retries its claim", lambda: "retrying partition" in caplog.text
        )
        await asyncio.wait_for(worker.stop(), 30)
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        server.stop()
