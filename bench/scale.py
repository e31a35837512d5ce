"""Scale-out (`python -m bench.scale`): one, then two `kpistream worker` processes on the
same topic (6 partitions) work through the same simulated events, produced after the
workers are up and own their partitions. Reports events/s, each worker's CPU (from /proc)
and Redis's CPU (INFO cpu) over the run, so the README can say how throughput grows with
workers and where Redis becomes the limit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from bench import memory
from kpistream import runtime
from kpistream.config.connections import SyncRedis, redis_client
from kpistream.config.settings import Settings, child_environment
from kpistream.produce import produce
from kpistream.sinks.store_reader import WindowReader
from kpistream.sources import encode
from kpistream.sources.simulator import sessions

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Scale:
    workers: int
    events_per_s: float
    worker_cpu: list[float]  # each worker's CPU seconds per wall second over the run
    redis_cpu: float  # Redis's CPU seconds per wall second over the run (every node)
    master_cpu: float  # the same, masters only (all of it on one redis-server)
    store: str = "one redis-server"

    @property
    def redis_cpu_per_10k(self) -> float:
        """Redis CPU (share of a core) per 10,000 events/s."""
        return self.redis_cpu / (self.events_per_s / 10_000)

    @property
    def master_cpu_per_10k(self) -> float:
        return self.master_cpu / (self.events_per_s / 10_000)

    def row(self) -> str:
        cpu = " / ".join(f"{c:.0%}" for c in self.worker_cpu)
        return (
            f"| {self.store} | {self.workers} | {self.events_per_s:,.0f} | {cpu} | "
            f"{self.redis_cpu:.0%} | {self.redis_cpu_per_10k:.1%} |"
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def redis_cpu(client: SyncRedis, *, replicas: bool = True) -> float:
    """CPU seconds Redis used so far (every node of a cluster, or its masters)."""
    return sum(
        float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        for info in memory.redis_info(client, "cpu", replicas=replicas)
    )


def processed(reader: WindowReader) -> int:
    return int(reader.snapshot({}).health.get("_processed", 0))


async def run(
    base: Settings, workdir: Path, workers: int, lines: list[bytes], *, store: str = ""
) -> Scale:
    tag = f"scale{workers}{'-cluster' if base.redis_cluster else ''}"
    # Historic events: the watermark stays in event time while the workers wait for them.
    settings = memory.isolated(base, tag, idle_after_s=3600)
    await runtime.ensure_topics(settings)
    env = child_environment(settings)
    children = [
        runtime.spawn(
            [sys.executable, "-m", "kpistream", "worker"],
            log_path=workdir / f"{tag}-worker{i}.log",
            env=env,
        )
        for i in range(workers)
    ]
    client = redis_client(settings)
    reader = WindowReader(client, prefix=settings.redis_prefix)
    try:
        # Warm up until every worker has joined and the group is settled: a first event per
        # partition, counted, and then no rebalance for a while.
        earlier = time.time_ns() // 1_000_000 - 7 * 3_600_000  # before the measured events
        warm = [
            encode(e)
            for _, e in zip(range(600), sessions(3, start_ms=earlier, count=600), strict=False)
        ]
        await produce(settings, warm)
        deadline = time.monotonic() + 120
        while processed(reader) < len(warm):
            if time.monotonic() > deadline:
                health = dict(reader.snapshot({}).health)
                raise SystemExit(f"workers never counted the warm-up ({health}): see {workdir}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3 * settings.rebalance_timeout_s + 2)  # late joiners settle
        before = processed(reader)
        cpu0 = [cpu_seconds(c.pid) for c in children]
        redis0, masters0 = redis_cpu(client), redis_cpu(client, replicas=False)
        started = time.monotonic()
        await produce(settings, lines)  # the workers count while it sends
        while processed(reader) < before + len(lines):
            if time.monotonic() - started > 900:
                raise SystemExit(f"{workers} workers did not finish: see {workdir}")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = [(cpu_seconds(c.pid) - c0) / elapsed for c, c0 in zip(children, cpu0, strict=True)]
        used = (redis_cpu(client) - redis0) / elapsed
        by_masters = (redis_cpu(client, replicas=False) - masters0) / elapsed
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)
    return Scale(workers, len(lines) / elapsed, cpu, used, by_masters, store or "one redis-server")


def markdown(results: list[Scale], events: int) -> str:
    return "\n".join(
        [
            f"Scale-out (`python -m bench.scale`): {events:,} events to 6 partitions, from the "
            "first produced to the last counted (produce runs at several times the workers' "
            "rate), `kpistream worker` processes on this 2-core machine, which also runs the "
            "broker, Redis and the producer. Redis CPU is every node's (replicas included), "
            "in shares of one core:",
            "",
            "| Redis | workers | events/s | CPU per worker | Redis CPU | per 10k events/s |",
            "| --- | --- | --- | --- | --- | --- |",
            *(r.row() for r in results),
            "",
        ]
    )


async def main(events: int, counts: list[int]) -> None:
    start_ms = time.time_ns() // 1_000_000 - 6 * 3_600_000
    lines = [
        encode(e)
        for _, e in zip(range(events), sessions(7, start_ms=start_ms, count=events), strict=False)
    ]
    with memory.embedded() as (settings, workdir):
        results = [await run(settings, workdir, n, lines) for n in counts]
        with on_cluster(settings, workdir) as clustered:
            results += [await run(clustered, workdir, n, lines, store=CLUSTER) for n in counts]
    print(markdown(results, events))


#: What the cluster runs use (runtime.start_redis_cluster's default shape).
CLUSTER = "cluster, 3 masters + 3 replicas"


@contextlib.contextmanager
def on_cluster(settings: Settings, workdir: Path) -> Iterator[Settings]:
    """The same settings on a fresh embedded Redis Cluster (three masters, a replica each)."""
    cluster = runtime.start_redis_cluster(workdir / "cluster")
    try:
        yield msgspec.structs.replace(settings, redis=cluster.address, redis_cluster=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    asyncio.run(main(args.events, args.workers))
