"""Fault injection against the real broker and Redis, judged by the oracle (issue 4)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from kpistream.produce import encode, produce
from kpistream.runtime import ensure_topics, free_port, spawn, start_broker, stop
from kpistream.settings import Settings, env_name
from kpistream.simulator import sessions
from sinks import fields as F
from sinks.exporter import serve
from sinks.window_store import Fenced, OffsetMismatch, WindowStore
from streams.delta import BatchDelta
from tests.faults import oracle
from tests.integration import known_events as K
from tests.integration.known_events import samples
from tests.integration.waits import get, wait_for_totals

#: Historic, seeded traffic: about 3,000 events of 400 sessions with carts and purchases,
#: spanning less than the allowed lateness, so that a late retry is still a retry.
START_MS = (time.time_ns() // 1_000_000) - 6 * 3_600_000
LINES = [encode(e) for e in sessions(11, start_ms=START_MS, count=400, spacing_ms=100)]
DONE = ("_processed", "_dup", "_late")


def settings_for(settings_factory: Any, **overrides: Any) -> Settings:
    # Partitions enough for rebalances to move something; budgets large enough that no label
    # depends on which worker saw a value first.
    base = {"partitions": 4, "max_landing_pages": 1000, "max_channels": 1000}
    settings: Settings = settings_factory(**{**base, **overrides})
    return settings


async def wait_all(settings: Settings, produced: int) -> None:
    reader = await wait_for_totals(settings, {}, timeout_s=1)
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        totals = reader.snapshot({}).totals
        seen = sum(v for k, v in totals.items() if k in DONE or k.startswith(F.REJECTED))
        if seen >= produced or asyncio.get_running_loop().time() > deadline:
            assert seen == produced, f"counted {seen} of {produced} events"
            return
        await asyncio.sleep(0.2)


def dedupe(log: dict[int, list[bytes | None]]) -> dict[int, list[bytes | None]]:
    """The log as if every event had been delivered once (the oracle's own dedupe)."""
    ids = msgspec.json.Decoder(dict[str, Any])
    out = {}
    for partition, values in log.items():
        seen: set[str] = set()
        kept = []
        for value in values:
            event_id = ids.decode(value or b"{}").get("event_id")
            if event_id not in seen:
                seen.add(event_id)
                kept.append(value)
        out[partition] = kept
    return out


async def test_every_event_delivered_twice_is_counted_once(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(settings_factory)
    await ensure_topics(settings)
    await workers(settings)
    await produce(settings, LINES + LINES)
    await wait_all(settings, 2 * len(LINES))
    log = await oracle.read_log(settings)
    want = oracle.expected(settings, dedupe(log), now_ms=time.time_ns() // 1_000_000)
    got = oracle.stored(settings)
    assert got.totals.pop(F.DUPLICATE) == len(LINES)
    assert want.totals[F.PROCESSED] == len(LINES)
    assert got.totals == want.totals
    assert got.minutes == want.minutes and got.days == want.days


@pytest.mark.slow
async def test_replay_is_identical_across_workers_batch_sizes_and_clocks(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """The same log, processed once by 1 worker with batches of 7 and once by 3 workers with
    batches of 1,000 and a wall clock an hour ahead, leaves byte-identical KPI state."""
    one = settings_for(settings_factory, batch_max_records=7)
    await ensure_topics(one)
    await produce(one, LINES)
    await workers(one)
    await wait_all(one, len(LINES))
    # Same topics, another consumer group and Redis prefix: a replay of the same log.
    three = msgspec.structs.replace(
        one,
        batch_max_records=1000,
        redis_prefix=one.redis_prefix + "b",
        consumer_group=one.consumer_group + "b",
    )
    later = lambda: time.time_ns() // 1_000_000 + 3_600_000  # noqa: E731
    for _ in range(3):
        await workers(three, clock_ms=later)
    await wait_all(three, len(LINES))
    first, second = oracle.stored(one), oracle.stored(three)
    assert first.digest() == second.digest()
    log = await oracle.read_log(one)
    assert first == oracle.expected(one, log, now_ms=time.time_ns() // 1_000_000)


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPISTREAM_")}
    env.update({env_name(f): str(getattr(settings, f)) for f in Settings.__struct_fields__})
    return env


@pytest.mark.slow
async def test_worker_killed_repeatedly_mid_stream_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, tmp_path
) -> None:
    """`kill -9` of the real worker process three times while it works through ~30,000
    events in batches of 50 (so a kill lands before, inside or after an atomic step),
    each time restarted: counters, buckets and stored offsets end exactly as the oracle says."""
    lines = [encode(e) for e in sessions(12, start_ms=START_MS, count=4000, spacing_ms=10)]
    settings = settings_for(settings_factory, batch_max_records=50)
    await ensure_topics(settings)
    await produce(settings, lines)
    env = worker_env(settings)
    command = [sys.executable, "-m", "kpistream", "worker"]
    reader = await wait_for_totals(settings, {}, timeout_s=1)
    kills = 0
    while kills < 3:
        worker = spawn(command, log_path=tmp_path / f"worker-{kills}.log", env=env)
        before = reader.snapshot({}).totals[F.PROCESSED]
        deadline = asyncio.get_running_loop().time() + 60
        while reader.snapshot({}).totals[F.PROCESSED] <= before:  # it is working now
            assert asyncio.get_running_loop().time() < deadline, "worker made no progress"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1 * kills)
        worker.kill()  # SIGKILL: no shutdown, no final commit
        worker.wait()
        kills += 1
        assert reader.snapshot({}).totals[F.PROCESSED] < len(lines), "killed too late"
    worker = spawn(command, log_path=tmp_path / "worker-last.log", env=env)
    try:
        await wait_all(settings, len(lines))
    finally:
        stop(worker)
    log = await oracle.read_log(settings)
    assert oracle.stored(settings) == oracle.expected(
        settings, log, now_ms=time.time_ns() // 1_000_000
    )
    client = redis.Redis.from_url(settings.redis)
    for partition, values in log.items():
        meta = client.hget(
            f"{settings.redis_prefix}:{{{settings.clickstream_topic}:{partition}}}:meta", "offset"
        )
        assert meta is not None and int(meta) == len(values), partition


POISON = [
    bytes(range(256)),  # random bytes
    b'{"event_id":"\xff\xfe","type":"page_view"}',  # invalid UTF-8
    b'{"x":"' + b"y" * 5_000_000 + b'"}',  # 5 MB
    b"[" * 10_000 + b"]" * 10_000,  # nested 10,000 levels deep
    b'{"event_id":"n","type":"page_view","ts":NaN,"site":"s","visitor_id":"v","path":"/"}',
    b'{"event_id":"i","type":"page_view","ts":Infinity,"site":"s","visitor_id":"v","path":"/"}',
    b'{"event_id":"s","type":"page_view","ts":"1763800000000","site":"s","visitor_id":"v","path":"/"}',
    b'{"event_id":null,"type":null,"ts":null,"site":null,"visitor_id":null,"path":null}',
    b"null",
]
#: bytes, invalid UTF-8, NaN, Infinity: not JSON; the deep array and `null`: not objects;
#: a null `type` is no known type; a number sent as a string is the wrong type.
POISON_REASONS = {
    "malformed_json": 4,
    "too_large": 1,
    "not_an_object": 2,
    "unknown_type": 1,
    "wrong_type": 1,
}


async def test_poison_mixed_in_is_dead_lettered_and_leaves_the_state_untouched(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    settings = settings_for(settings_factory)
    await ensure_topics(settings)
    await workers(settings)
    step = len(LINES) // len(POISON)
    mixed = [line for i, p in enumerate(POISON) for line in (*LINES[i * step : (i + 1) * step], p)]
    mixed += LINES[len(POISON) * step :]
    await produce(settings, mixed)
    await wait_all(settings, len(mixed))
    got = oracle.stored(settings)
    rejected = {k.split("\x1f")[1]: v for k, v in got.totals.items() if k.startswith(F.REJECTED)}
    assert sum(rejected.values()) == len(POISON)
    assert rejected == POISON_REASONS
    # The valid events alone give exactly the state of a run without poison.
    log = await oracle.read_log(settings)
    clean = {p: [v for v in values if v not in POISON] for p, values in log.items()}
    want = oracle.expected(settings, clean, now_ms=time.time_ns() // 1_000_000)
    got.totals = +Counter({k: v for k, v in got.totals.items() if not k.startswith(F.REJECTED)})
    assert got == want


async def test_shuffled_within_the_lateness_equals_in_order_and_extremes_are_counted(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """Each visitor's events arrive in random order (all within the 120 s lateness of each
    other); the state equals the in-order oracle. One event far older than the lateness is
    counted late, one beyond the future skew is rejected."""
    rng = random.Random(5)
    by_visitor: dict[str, list[bytes]] = {}
    decode = msgspec.json.Decoder(dict[str, Any]).decode
    for line in LINES:
        by_visitor.setdefault(decode(line)["visitor_id"], []).append(line)
    shuffled = []
    for events in by_visitor.values():
        rng.shuffle(events)
        shuffled += events
    newest = max(decode(line)["ts"] for line in LINES)
    late = encode(
        {
            "event_id": "too-late",
            "type": "page_view",
            "ts": START_MS - 3_600_000,
            "site": "shop.example",
            "visitor_id": decode(LINES[-1])["visitor_id"],
            "path": "/",
        }
    )
    future = encode(
        {
            "event_id": "future",
            "type": "page_view",
            "ts": time.time_ns() // 1_000_000 + 3_600_000,
            "site": "shop.example",
            "visitor_id": "v-future",
            "path": "/",
        }
    )
    assert newest - START_MS < 2 * 3_600_000
    in_order = settings_for(settings_factory)
    await ensure_topics(in_order)
    await produce(in_order, LINES)
    want = oracle.expected(
        in_order, await oracle.read_log(in_order), now_ms=time.time_ns() // 1_000_000
    )
    settings = settings_for(settings_factory)
    await ensure_topics(settings)
    await workers(settings)
    await produce(settings, [*shuffled, late, future])
    await wait_all(settings, len(LINES) + 2)
    got = oracle.stored(settings)
    assert got.totals.pop(F.LATE) == 1
    assert got.totals.pop(F.field(F.REJECTED, "ts_in_future")) == 1
    assert got == want


async def test_fifty_concurrent_scrapes_while_the_worker_writes(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    """Every scrape is well-formed and no ratio leaves 0..1, while batches commit."""
    settings = settings_for(settings_factory, batch_max_records=20, exporter_cache_s=0.0)
    await ensure_topics(settings)
    await workers(settings)
    port = free_port()
    server = serve(settings, port=port)
    url = f"http://127.0.0.1:{port}/metrics"
    writing = asyncio.create_task(produce(settings, LINES))
    try:
        scrapes = await asyncio.gather(*(asyncio.to_thread(get, url) for _ in range(50)))
        await writing
        scrapes += [await asyncio.to_thread(get, url)]
    finally:
        server.shutdown()
    for text in scrapes:
        for (name, labels), value in samples(text).items():  # parsing is the well-formed check
            if name.endswith("_ratio"):
                assert 0 <= value <= 1, (name, labels, value)
            if name == "kpi_net_promoter_score":
                assert -100 <= value <= 100, (labels, value)


@pytest.mark.slow
async def test_worker_waits_for_a_broker_that_appears_later(  # type: ignore[no-untyped-def]
    settings_factory, tmp_path
) -> None:
    port = free_port()
    settings = settings_for(settings_factory, kafka=f"127.0.0.1:{port}", partitions=2)
    log_path = tmp_path / "worker.log"
    worker = spawn(
        [sys.executable, "-m", "kpistream", "worker"], log_path=log_path, env=worker_env(settings)
    )
    broker = None
    try:
        await asyncio.sleep(3)  # the worker is retrying now
        assert worker.poll() is None, log_path.read_text()
        broker = start_broker(tmp_path, port)
        await produce(settings, K.lines())
        await wait_all(settings, len(K.lines()))
    finally:
        stop(worker)
        if broker is not None:
            broker.stop()
    text = log_path.read_text()
    waits = [line for line in text.splitlines() if line.startswith("kpistream: waiting:")]
    assert waits and all(f"cannot reach Kafka at 127.0.0.1:{port}" in w for w in waits), text
    assert "Traceback" not in text


async def test_the_fence_rejects_a_stale_owner_and_a_stale_position(settings_factory) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(settings_factory)
    client = aioredis.Redis.from_url(settings.redis)
    store = WindowStore.from_settings(client, settings)
    keys = store.keys(settings.clickstream_topic, 0)

    def delta(n: int) -> BatchDelta:
        d = BatchDelta(watermark_ms=START_MS)
        d.totals[F.PROCESSED] = n
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
    assert int(await client.hget(keys.key("totals"), F.PROCESSED)) == 7
    assert int(await client.hget(keys.key("meta"), "offset")) == 7
    await client.aclose()


@pytest.mark.slow
async def test_a_zombie_worker_is_fenced_and_the_state_stays_exact(  # type: ignore[no-untyped-def]
    settings_factory, tmp_path
) -> None:
    """SIGSTOP a worker past its session timeout, let a second worker take its partitions,
    then SIGCONT it: whatever it tries to commit is rejected; the state matches the oracle."""
    lines = [encode(e) for e in sessions(13, start_ms=START_MS, count=4000, spacing_ms=10)]
    settings = settings_for(settings_factory, batch_max_records=50)
    await ensure_topics(settings)
    await produce(settings, lines)
    env = worker_env(settings)
    command = [sys.executable, "-m", "kpistream", "worker"]
    reader = await wait_for_totals(settings, {}, timeout_s=1)
    zombie = spawn(command, log_path=tmp_path / "zombie.log", env=env)
    successor = None
    try:
        started = asyncio.get_running_loop().time()
        while reader.snapshot({}).totals[F.PROCESSED] == 0:
            assert asyncio.get_running_loop().time() < started + 60, "no progress"
            await asyncio.sleep(0.05)
        zombie.send_signal(signal.SIGSTOP)
        frozen_at = reader.snapshot({}).totals[F.PROCESSED]
        assert frozen_at < len(lines), "the first worker finished before it could be frozen"
        successor = spawn(command, log_path=tmp_path / "successor.log", env=env)
        deadline = asyncio.get_running_loop().time() + 60
        while reader.snapshot({}).totals[F.PROCESSED] == frozen_at:  # the successor took over
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        zombie.send_signal(signal.SIGCONT)
        await wait_all(settings, len(lines))
    finally:
        zombie.send_signal(signal.SIGCONT)
        stop(zombie)
        if successor is not None:
            stop(successor)
    log = await oracle.read_log(settings)
    assert oracle.stored(settings) == oracle.expected(
        settings, log, now_ms=time.time_ns() // 1_000_000
    )


async def test_a_worker_whose_partition_was_claimed_is_fenced_and_counted(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    settings = settings_for(settings_factory, partitions=1)
    await ensure_topics(settings)
    worker = await workers(settings)
    await produce(settings, LINES[:10])
    await wait_all(settings, 10)
    tp = next(iter(worker.owned))
    # Another worker claims the partition (as after a rebalance this one has not seen yet).
    client = aioredis.Redis.from_url(settings.redis)
    store = WindowStore.from_settings(client, settings)
    await store.claim(store.keys(tp.topic, tp.partition))
    await produce(settings, LINES[10:20])
    reader = await wait_for_totals(settings, {}, timeout_s=1)
    deadline = asyncio.get_running_loop().time() + 30
    while reader.snapshot({}).fenced_writes == 0:
        assert asyncio.get_running_loop().time() < deadline, "the stale write was not counted"
        await asyncio.sleep(0.1)
    assert tp not in worker.owned
    assert reader.snapshot({}).totals[F.PROCESSED] == 10  # nothing of the fenced batch landed
    await client.aclose()
