"""Scale-out (`python -m bench.scale`): one, then two `kpistream worker` processes on the
same topic (6 partitions) work through the same simulated events, produced after the
workers are up and own their partitions. Reports events/s, each worker's CPU (from /proc)
and Redis's CPU (INFO cpu) over the run, so the README can say how throughput grows with
workers and where Redis becomes the limit."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import memory
from kpistream import runtime
from kpistream.config.connections import SyncRedis, redis_client
from kpistream.config.settings import Settings, child_environment
from kpistream.produce import encode, produce
from kpistream.simulator import sessions
from kpistream.sinks.window_store import WindowReader

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Scale:
    workers: int
    events_per_s: float
    worker_cpu: list[float]  # each worker's CPU seconds per wall second over the run
    redis_cpu: float  # Redis's CPU seconds per wall second over the run

    def row(self) -> str:
        cpu = " / ".join(f"{c:.0%}" for c in self.worker_cpu)
        return f"| {self.workers} | {self.events_per_s:,.0f} | {cpu} | {self.redis_cpu:.0%} |"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def redis_cpu(client: SyncRedis) -> float:
    """CPU seconds Redis used so far (every node of a cluster)."""
    return sum(
        float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        for info in memory.redis_info(client, "cpu")
    )


def processed(reader: WindowReader) -> int:
    return int(reader.snapshot({}).health.get("_processed", 0))


async def run(base: Settings, workdir: Path, workers: int, lines: list[bytes]) -> Scale:
    tag = f"scale{workers}"
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
        redis0 = redis_cpu(client)
        started = time.monotonic()
        await produce(settings, lines)  # the workers count while it sends
        while processed(reader) < before + len(lines):
            if time.monotonic() - started > 900:
                raise SystemExit(f"{workers} workers did not finish: see {workdir}")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = [(cpu_seconds(c.pid) - c0) / elapsed for c, c0 in zip(children, cpu0, strict=True)]
        used = (redis_cpu(client) - redis0) / elapsed
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)
    return Scale(workers, len(lines) / elapsed, cpu, used)


def markdown(results: list[Scale], events: int) -> str:
    return "\n".join(
        [
            f"Scale-out (`python -m bench.scale`): {events:,} events to 6 partitions, from the "
            "first produced to the last counted (produce runs at several times the workers' "
            "rate), `kpistream worker` processes on this 2-core machine, which also runs the "
            "broker, Redis and the producer:",
            "",
            "| workers | events/s | CPU per worker | Redis CPU |",
            "| --- | --- | --- | --- |",
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
    print(markdown(results, events))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    asyncio.run(main(args.events, args.workers))
