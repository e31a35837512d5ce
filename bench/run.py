"""`make bench`: the raw consume+decode ceiling and the worker's end-to-end rate, same run.

Starts a fresh embedded broker and redis-server, produces N simulated clickstream events,
then measures (1) a bare aiokafka ``getmany`` + msgspec typed decode of all N (the ceiling)
and (2) the worker's batch consumer (the same code ``kpistream worker`` runs) from first fetch
until every partition's offset in Redis reaches the end. Writes ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from kpistream import runtime
from kpistream.produce import encode, produce
from kpistream.settings import Settings, load
from kpistream.simulator import sessions
from schemas.events import Clickstream
from streams.batch_consumer import BatchConsumer

RESULTS = Path(__file__).parent / "RESULTS.md"


async def ceiling(settings: Settings, total: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=settings.batch_max_records,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    partitions = [TopicPartition(settings.clickstream_topic, p) for p in range(settings.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    decoder = msgspec.json.Decoder(Clickstream)
    seen = 0
    started = None
    while seen < total:
        batches = await consumer.getmany(timeout_ms=1000, max_records=settings.batch_max_records)
        if started is None and batches:
            started = time.perf_counter()
        for records in batches.values():
            for record in records:
                decoder.decode(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    await consumer.stop()
    return total / elapsed


async def end_to_end(settings: Settings, total: int) -> float:
    worker = BatchConsumer(settings)
    await worker.start()
    handled = 0
    started = None
    while handled < total:
        n = await worker.poll_once(timeout_ms=1000)
        if started is None and n:
            started = time.perf_counter()
        handled += n
    elapsed = time.perf_counter() - (started or time.perf_counter())
    errors = worker.errors
    await worker.stop()
    if errors:
        raise SystemExit(f"worker errors during the benchmark: {errors!r}")
    return total / elapsed


async def main(events: int) -> None:
    workdir = runtime.workdir()
    broker = runtime.start_broker(workdir)
    server = runtime.start_redis(workdir)
    try:
        settings = load(
            {"kafka": broker.address, "redis": server.address, "rebalance_timeout_s": 1}, env={}
        )
        await runtime.ensure_topics(settings)
        start_ms = time.time_ns() // 1_000_000 - 6 * 3_600_000
        lines = [
            encode(e)
            for _, e in zip(
                range(events), sessions(7, start_ms=start_ms, count=events), strict=False
            )
        ]
        t = time.perf_counter()
        await produce(settings, lines)
        produce_rate = events / (time.perf_counter() - t)
        ceiling_rate = await ceiling(settings, events)
        e2e_rate = await end_to_end(settings, events)
    finally:
        broker.stop()
        server.stop()
    report = (
        "# Benchmark results\n\n"
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}; embedded Tansu broker "
        f"and redis-server; {events:,} simulated clickstream events over "
        f"{settings.partitions} partitions, one worker process.\n\n"
        f"ceiling_events_per_s: {ceiling_rate:.0f}\n"
        f"end_to_end_events_per_s: {e2e_rate:.0f}\n"
        f"produce_events_per_s: {produce_rate:.0f}\n\n"
        "ceiling = aiokafka getmany + msgspec typed decode, nothing else. end_to_end = the\n"
        "worker's batch consumer: decode, sessionize, aggregate, dead-letter, one atomic Lua\n"
        "commit of state + offset per partition batch, until every event is in Redis.\n"
    )
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().events))
