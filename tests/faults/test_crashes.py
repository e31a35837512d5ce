"""Worker crashes and zombies: kill -9 on either side of the atomic step, fencing (issue 4)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.store import Fenced, OffsetMismatch
from kpistream.produce import produce
from kpistream.runtime import ensure_topics, stop
from kpistream.sinks.window_store import WindowStore
from tests.faults import oracle
from tests.faults.common import (
    LINES,
    START_MS,
    many_lines,
    now_ms,
    processed,
    settings_for,
    spawn_worker,
    website_only,
)
from tests.support.waits import wait_for_totals, wait_until

#: (action, n-th atomic step of that worker's stream): either side of the step, at a
#: worker's very first step after its claim and deeper into its run, in either stream.
KILLS = (
    "kill-before:3",
    "kill-after:3",
    "kill-before:1",
    "kill-after:1",
    "kill-before:2:social",
    "kill-after:2:social",
)


@pytest.mark.slow
async def test_worker_killed_before_and_after_the_atomic_step_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, tmp_path
) -> None:
    """`kill -9` of the real worker six times while it works through ~33,000 events in
    batches of 50 (four times in its clickstream consumer, twice in its social one), each
    time at an exact point: just before a batch's atomic step (decoded, dead letters sent,
    nothing in Redis) or just after it (in Redis, but neither the worker's position nor
    Kafka's committed offset moved). Each time a worker is restarted; at the end counters,
    buckets, follower gauges and stored offsets are exactly the oracle's."""
    lines = many_lines(12)
    settings = settings_for(settings_factory, batch_max_records=50)
    await ensure_topics(settings)
    await produce(settings, lines)
    for i, fault in enumerate(KILLS):
        topic = settings.social_topic if fault.endswith("social") else settings.clickstream_topic
        before = position(settings, topic)
        worker = spawn_worker(settings, tmp_path / f"worker-{i}.log", fault=fault)
        code = await asyncio.to_thread(worker.wait, 120)
        assert code == -signal.SIGKILL, (fault, code, _tail(tmp_path / f"worker-{i}.log"))
        after = position(settings, topic)
        if fault.startswith("kill-before:1"):
            assert after == before, "a worker killed before its first step wrote something"
        else:
            assert before < after, (fault, before, after)
    assert await processed(settings) < len(lines), "the faults came after the work was done"
    worker = spawn_worker(settings, tmp_path / "worker-last.log")
    try:
        await oracle.assert_exact(settings, now_ms=now_ms())
    finally:
        stop(worker)


def position(settings: Settings, topic: str) -> int:
    """How far a stream is: the sum of its partitions' stored offsets."""
    stored = oracle.stored_offsets(settings)
    return sum(offset for (in_topic, _), offset in stored.items() if in_topic == topic)


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-20:])


async def test_the_fence_rejects_a_stale_owner_and_a_stale_position(settings_factory) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(settings_factory)
    client = aioredis.Redis.from_url(settings.redis)
    store = WindowStore.from_settings(client, settings)
    keys = store.keys(settings.clickstream_topic, 0)

    def delta(n: int) -> BatchDelta:
        d = BatchDelta(watermark_ms=START_MS)
        d.health[H.PROCESSED] = n
        return d

    old = await store.claim(keys)
    await store.commit(keys, epoch=old.epoch, expected_offset=None, next_offset=5, delta=delta(5))
    new = await store.claim(keys)  # another worker takes the partition: epoch + 1
    assert new.epoch == old.epoch + 1 and new.next_offset == 5
    with pytest.raises(Fenced):
        await store.commit(keys, epoch=old.epoch, expected_offset=5, next_offset=9, delta=delta(4))
    await store.commit(keys, epoch=new.epoch, expected_offset=5, next_offset=7, delta=delta(2))
    with pytest.raises(OffsetMismatch):  # a replayed step at an old position
        await store.commit(keys, epoch=new.epoch, expected_offset=5, next_offset=7, delta=delta(2))
    assert await client.hget(keys.key("health"), H.PROCESSED) == b"7"
    assert await client.hget(keys.key("meta"), "offset") == b"7"
    await client.aclose()


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.slow
async def test_a_zombie_frozen_before_its_commit_is_fenced_counted_and_the_state_exact(  # type: ignore[no-untyped-def]
    settings_factory, tmp_path
) -> None:
    """A worker freezes (SIGSTOP) holding a batch ready for its atomic step, stays frozen past
    its session timeout so a second worker takes its partitions, then resumes (SIGCONT) and
    tries to commit: the fence rejects it and counts it; the state is exactly the oracle's."""
    settings = settings_for(settings_factory, batch_max_records=50)
    await ensure_topics(settings)
    await produce(settings, many_lines(13))
    zombie = spawn_worker(settings, tmp_path / "zombie.log", fault="stop-before:4")
    successor = None
    try:
        await wait_until("the worker froze before its 4th step", lambda: _stopped(zombie.pid))
        frozen_at = await processed(settings)
        successor = spawn_worker(settings, tmp_path / "successor.log")

        async def successor_works() -> bool:
            return await processed(settings) > frozen_at

        await wait_until("the successor took over", successor_works)
        zombie.send_signal(signal.SIGCONT)
        reader = await wait_for_totals(settings, {}, timeout_s=1)
        await wait_until(
            "the zombie's write was rejected", lambda: reader.snapshot({}).fenced_writes
        )
        await oracle.assert_exact(settings, now_ms=now_ms())
    finally:
        zombie.send_signal(signal.SIGCONT)
        stop(zombie)
        if successor is not None:
            stop(successor)
    assert "another worker owns it now" in (tmp_path / "zombie.log").read_text()


async def test_a_worker_whose_partition_was_claimed_is_fenced_and_counted(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    settings = settings_for(settings_factory, partitions=1)
    await ensure_topics(settings)
    worker = await workers(settings)
    website = website_only(LINES)  # this worker runs the clickstream alone
    await produce(settings, website[:10])
    await oracle.wait_consumed(settings)
    tp = next(iter(worker.owned))
    # Another worker claims the partition (as after a rebalance this one has not seen yet).
    client = aioredis.Redis.from_url(settings.redis)
    store = WindowStore.from_settings(client, settings)
    await store.claim(store.keys(tp.topic, tp.partition))
    await produce(settings, website[10:20])
    reader = await wait_for_totals(settings, {}, timeout_s=1)
    await wait_until("the stale write was counted", lambda: reader.snapshot({}).fenced_writes)
    assert tp not in worker.owned
    assert reader.snapshot({}).health[H.PROCESSED] == 10  # nothing of the fenced batch landed
    await client.aclose()
