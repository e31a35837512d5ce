"""`make bench`: the raw consume+decode ceiling and the worker's end-to-end rate, same run.

Starts a fresh embedded broker and redis-server, produces N simulated clickstream events,
then measures (1) a bare aiokafka ``getmany`` + msgspec typed decode of all N (the ceiling),
(2) the worker's batch consumer (the same code ``kpistream worker`` runs) from first fetch
until every record is in Redis, (3) the same with every event produced to a partition that
does not own it (the worker forwards all N, then counts the forwarded copies), (4) the same
with every tenth event invalid, (5) memory under a flood of distinct visitors
(:mod:`bench.memory`), (6) the peers doing the same job on the same events
(:mod:`bench.peers.run`), latency from produce to /metrics at a paced rate
(:mod:`bench.latency`), (7) one and two worker processes (:mod:`bench.scale`) and (8) the
HTTP collector (:mod:`bench.collector`) and its bot check (:mod:`bench.bot_check`).
Writes ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import bot_check, latency, memory, scale
from bench import capacity as capacity_of
from bench import collector as collector_bench
from bench.peers import run as peers
from kpistream import runtime
from kpistream.config.settings import Settings
from kpistream.contract.routing import owner
from kpistream.produce import produce, route
from kpistream.schemas.events import Clickstream
from kpistream.sources import encode
from kpistream.sources.simulator import sessions
from kpistream.worker import batch_consumer

RESULTS = Path(__file__).parent / "RESULTS.md"
#: Visitors of the memory run on the cluster (a smaller flood: the per-key cost is what counts).
CLUSTER_VISITORS = 300_000


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


async def end_to_end(settings: Settings, total: int, *, records: int | None = None) -> float:
    """Events per second until ``records`` records (default: ``total``) are handled."""
    worker = batch_consumer(settings)
    await worker.start()
    handled = 0
    started = None
    while handled < (records or total):
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


async def produce_misrouted(settings: Settings, lines: list[bytes]) -> None:
    """Every event to the partition after its owner: all of them need forwarding."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, linger_ms=10)
    await producer.start()
    try:
        pending = []
        for line in lines:
            _, key, owned_by = route(line, settings)
            assert owned_by is not None
            wrong = (owner(owned_by, settings.partitions) + 1) % settings.partitions
            pending.append(
                await producer.send(settings.clickstream_topic, line, key=key, partition=wrong)
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


#: Invalid lines for the 10%-invalid run, one of each kind in turn.
INVALID = [
    b"{not json",
    b'{"type":"page_view","site":"shop.example"}',  # fields missing
    b'{"type":"teleport","event_id":"x","ts":1,"site":"s","visitor_id":"v"}',
    b'{"type":"page_view","event_id":"x","ts":"soon","site":"s","visitor_id":"v","path":"/"}',
    b'{"type":"page_view","event_id":"x","ts":1,"site":"s","visitor_id":"a@b.example","path":"/"}',
]


def with_invalid(lines: list[bytes], every: int = 10) -> list[bytes]:
    """Every ``every``-th line replaced by an invalid one (the valid rest keeps its order)."""
    return [
        INVALID[i // every % len(INVALID)] if i % every == every - 1 else line
        for i, line in enumerate(lines)
    ]


async def main(events: int, visitors: int) -> None:
    with memory.embedded() as (settings, workdir):
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
        rivals = peers.run(settings, events, peers.ours(settings))
        misrouted = memory.isolated(settings, "misrouted")
        await runtime.ensure_topics(misrouted)
        await produce_misrouted(misrouted, lines)
        misrouted_rate = await end_to_end(misrouted, events, records=2 * events)
        invalid = memory.isolated(settings, "invalid")
        await runtime.ensure_topics(invalid)
        await produce(invalid, with_invalid(lines))
        invalid_rate = await end_to_end(invalid, events)
        used = await memory.measure(settings, visitors, workdir)
        delays = [await latency.measure(settings, workdir, rate, 60) for rate in (2_000, 20_000)]
        scaled = [await scale.run(settings, workdir, n, lines) for n in (1, 2)]
        with scale.on_cluster(settings, workdir) as clustered:
            on_cluster = [
                await scale.run(clustered, workdir, n, lines, store=scale.CLUSTER) for n in (1, 2)
            ]
            cluster_memory = await memory.measure(
                clustered, CLUSTER_VISITORS, workdir, tag="membench-cluster"
            )
        capacity = capacity_of.from_runs(on_cluster, cluster_memory)
    report = (
        "# Benchmark results\n\n"
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}; embedded Tansu broker "
        f"and redis-server; {events:,} simulated clickstream events over "
        f"{settings.partitions} partitions, one worker process.\n\n"
        f"ceiling_events_per_s: {ceiling_rate:.0f}\n"
        f"end_to_end_events_per_s: {e2e_rate:.0f}\n"
        f"end_to_end_all_misrouted_events_per_s: {misrouted_rate:.0f}\n"
        f"end_to_end_10pct_invalid_events_per_s: {invalid_rate:.0f}\n"
        f"ratio_end_to_end_to_ceiling: {e2e_rate / ceiling_rate:.3f}\n"
        f"produce_events_per_s: {produce_rate:.0f}\n\n"
        "ceiling = aiokafka getmany + msgspec typed decode, nothing else. end_to_end = the\n"
        "worker's batch consumer: decode, sessionize, aggregate, dead-letter, one atomic Lua\n"
        "commit of state + offset per partition batch, until every event is in Redis.\n"
        "all_misrouted = the same events, each produced to a partition that does not own it:\n"
        "the worker forwards every one to its owner and then counts the forwarded copies\n"
        "(events/s of the original events until both are done). 10pct_invalid = every\n"
        "tenth event replaced by an invalid line (five kinds in turn), each dead-lettered\n"
        "with its reason.\n\n"
        + peers.markdown(rivals, e2e_rate, ceiling_rate)
        + "\n"
        + used.markdown()
        + "\n"
        + latency.markdown(delays)
        + "\n"
        + scale.markdown(scaled + on_cluster, events)
        + "\n"
        + cluster_memory.markdown(f" on the {scale.CLUSTER} (Redis: its masters)")
        + "\n"
        + capacity.markdown()
        + "\n"
        + collector_bench.measure()
        + "\n"
        + bot_check.markdown(bot_check.measure())
    )
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--visitors", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.visitors))
