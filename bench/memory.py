"""Memory under a flood of distinct visitors: the worker's RSS and Redis, per session and
per visitor, and whether the worker gives memory back once the sessions have ended.

A real ``kpistream worker`` process (sessions end 5 s after their last event, 5 s lateness,
idle partitions follow the clock after 1 s) receives one page view from each of N distinct
visitors, stamped now. Sampled: the worker's RSS before the flood, at its peak while every
session is open, and once every session has ended; Redis ``used_memory`` at the same points.
Run alone with ``python -m bench.memory --visitors N``; ``make bench`` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import redis

from kpistream import runtime
from kpistream.config.connections import SyncRedis, redis_client
from kpistream.config.settings import Settings, child_environment, load
from kpistream.contract import health as H
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.produce import produce
from kpistream.sinks.store_reader import WindowReader
from kpistream.sources import encode


@dataclass
class MemoryResult:
    visitors: int
    rss_base_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    redis_base_mb: float
    redis_peak_mb: float
    redis_after_mb: float

    @property
    def worker_bytes_per_session(self) -> float:
        return (self.rss_peak_mb - self.rss_base_mb) * 2**20 / self.visitors

    @property
    def redis_bytes_per_visitor(self) -> float:
        return (self.redis_after_mb - self.redis_base_mb) * 2**20 / self.visitors

    @property
    def redis_bytes_per_session(self) -> float:
        return (self.redis_peak_mb - self.redis_after_mb) * 2**20 / self.visitors

    def markdown(self, where: str = "") -> str:
        return (
            f"Memory{where}: {self.visitors:,} distinct visitors, one page view each "
            "(`python -m bench.memory`):\n\n"
            "| | before | all sessions open | all sessions ended |\n"
            "| --- | --- | --- | --- |\n"
            f"| worker RSS (MB) | {self.rss_base_mb:.0f} | {self.rss_peak_mb:.0f} | "
            f"{self.rss_after_mb:.0f} |\n"
            f"| Redis used_memory (MB) | {self.redis_base_mb:.0f} | {self.redis_peak_mb:.0f} | "
            f"{self.redis_after_mb:.0f} |\n\n"
            f"worker_bytes_per_open_session: {self.worker_bytes_per_session:.0f}\n"
            f"redis_bytes_per_remembered_visitor: {self.redis_bytes_per_visitor:.0f}\n"
            f"redis_bytes_per_open_session: {self.redis_bytes_per_session:.0f}\n"
        )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def redis_info(client: SyncRedis, section: str, *, replicas: bool = True) -> list[dict[str, Any]]:
    """One INFO section of each server: every node of a cluster (only its masters without
    ``replicas``)."""
    if isinstance(client, redis.RedisCluster):
        nodes = redis.RedisCluster.ALL_NODES if replicas else redis.RedisCluster.PRIMARIES
        return list(client.info(section, target_nodes=nodes).values())
    return [client.info(section)]


def redis_mb(client: SyncRedis) -> float:
    """Memory the data takes once: on a cluster its masters' (each replica holds as much
    again as its master)."""
    infos = redis_info(client, "memory", replicas=False)
    return sum(float(info["used_memory"]) for info in infos) / 2**20


def flood(visitors: int, now_ms: int) -> list[bytes]:
    return [
        encode(
            {
                "event_id": f"e{i}",
                "type": "page_view",
                "ts": now_ms - 1000 + i % 1000,
                "site": "flood.example",
                "visitor_id": f"visitor-{i:09d}",
                "path": "/",
            }
        )
        for i in range(visitors)
    ]


async def wait_ended(reader: WindowReader, key: str, want: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snapshot = reader.snapshot({})
        if {**snapshot.totals, **snapshot.health}.get(key, 0) >= want:
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{key} never reached {want}: {dict(reader.snapshot({}).health)}")


async def measure(
    settings: Settings,
    visitors: int,
    workdir: Path,
    *,
    visitor_cache: int = 20_000,
    tag: str = "membench",
) -> MemoryResult:
    settings = load(
        {
            "kafka": settings.kafka,
            "redis": settings.redis,
            "redis_cluster": settings.redis_cluster,
            "redis_prefix": tag,
            "clickstream_topic": tag,
            "social_topic": f"{tag}-social",
            "consumer_group": tag,
            "rebalance_timeout_s": 1,
            "session_gap_s": 5,
            "allowed_lateness_s": 5,
            "idle_after_s": 1,
            "visitor_cache": visitor_cache,
        },
        env={},
    )
    await runtime.ensure_topics(settings)
    env = child_environment(settings)
    worker = runtime.spawn(
        [sys.executable, "-m", "kpistream", "worker"], log_path=workdir / f"{tag}.log", env=env
    )
    client = redis_client(settings)
    reader = WindowReader(client, prefix=settings.redis_prefix)
    try:
        await asyncio.sleep(8)  # joined its groups, claimed its partitions
        base = rss_mb(worker.pid), redis_mb(client)
        lines = flood(visitors, time.time_ns() // 1_000_000)
        await produce(settings, lines)
        del lines
        await wait_ended(reader, H.PROCESSED, visitors, 900)
        peak = rss_mb(worker.pid), redis_mb(client)
        await wait_ended(reader, fields.field(K.ENDED.code, "flood.example"), visitors, 600)
        await asyncio.sleep(12)  # the trim waits for a quiet 10 s at most
        after = rss_mb(worker.pid), redis_mb(client)
    finally:
        runtime.stop(worker)
    return MemoryResult(visitors, base[0], peak[0], after[0], base[1], peak[1], after[1])


def isolated(settings: Settings, tag: str, **overrides: Any) -> Settings:
    """The same settings on topics, consumer group and Redis prefix of their own."""
    return msgspec.structs.replace(
        settings,
        clickstream_topic=f"{tag}-clicks",
        social_topic=f"{tag}-social",
        deadletter_topic=f"{tag}-dlq",
        consumer_group=f"{tag}-group",
        redis_prefix=tag,
        **overrides,
    )


@contextlib.contextmanager
def embedded() -> Iterator[tuple[Settings, Path]]:
    """A fresh embedded broker and redis-server for one benchmark run, and its settings."""
    workdir = runtime.workdir()
    broker = runtime.start_broker(workdir)
    server = runtime.start_redis(workdir)
    try:
        overrides = {"kafka": broker.address, "redis": server.address, "rebalance_timeout_s": 1}
        yield load(overrides, env={}), workdir
    finally:
        broker.stop()
        server.stop()


async def main(visitors: int, visitor_cache: int) -> None:
    with embedded() as (settings, workdir):
        result = await measure(settings, visitors, workdir, visitor_cache=visitor_cache)
    print(result.markdown())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visitors", type=int, default=1_000_000)
    parser.add_argument("--visitor-cache", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.visitors, args.visitor_cache))
