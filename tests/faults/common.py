"""What the fault tests share: the seeded traffic, settings, and real worker processes."""

from __future__ import annotations

import asyncio
import heapq
import sys
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

import msgspec

from kpistream.config.settings import Settings, child_environment
from kpistream.contract import health as H
from kpistream.produce import produce
from kpistream.runtime import spawn
from kpistream.sources import encode
from kpistream.sources.simulator import Account, sessions, social
from tests.support.waits import wait_for_totals

START_MS = (time.time_ns() // 1_000_000) - 6 * 3_600_000


def accounts(count: int) -> list[Account]:
    """Social accounts over three networks, with audiences of three sizes."""
    networks, sizes = ("instagram", "linkedin", "tiktok"), (5_000, 2_500, 1_000)
    return [(networks[i % 3], f"brand-{i}", sizes[i // 3 % 3]) for i in range(count)]


def traffic(
    seed: int, *, sessions_count: int, spacing_ms: int, social_s: int, n_accounts: int
) -> list[bytes]:
    """Website sessions and social activity from START_MS, merged in event-time order."""
    site = sessions(seed, start_ms=START_MS, count=sessions_count, spacing_ms=spacing_ms)
    posts = social(seed, start_ms=START_MS, seconds=social_s, accounts=accounts(n_accounts))
    return [encode(e) for e in heapq.merge(site, posts, key=lambda e: e["ts"])]


#: Historic, seeded traffic: about 3,000 events of 400 sessions with carts and purchases and
#: about 1,000 social events of 6 accounts (posts, likes, follows, follower snapshots), all
#: spanning less than the allowed lateness, so that a late retry is still a retry.
LINES = traffic(11, sessions_count=400, spacing_ms=100, social_s=80, n_accounts=6)

WORKER = [sys.executable, "-m", "kpistream", "worker"]
FAULTY_WORKER = [sys.executable, "-m", "tests.faults.faulty_worker"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def many_lines(seed: int) -> list[bytes]:
    """About 33,000 events (3,000 of them social): enough batches of 50 for several faults
    in one run."""
    return traffic(seed, sessions_count=4000, spacing_ms=10, social_s=120, n_accounts=12)


def produce_slowly(
    settings: Settings,
    lines: list[bytes],
    *,
    slices: int,
    pause_s: float,
    hold: asyncio.Event | None = None,
) -> asyncio.Task[None]:
    """Produce ``lines`` in ``slices`` with a pause after each, so that events keep
    arriving while a fault happens; returns the running task. With ``hold``, the last slice
    waits until it is set: the flow cannot end before the fault, however slow the fault."""
    size = len(lines) // slices + 1

    async def flow() -> None:
        for start in range(0, len(lines), size):
            if hold is not None and start + size >= len(lines):
                await hold.wait()
            await produce(settings, lines[start : start + size])
            await asyncio.sleep(pause_s)

    return asyncio.create_task(flow())


def settings_for(settings_factory: Any, **overrides: Any) -> Settings:
    # Partitions enough for rebalances to move something; budgets large enough that no label
    # depends on which worker saw a value first.
    base = {
        "partitions": 4,
        "max_landing_pages": 1000,
        "max_channels": 1000,
        "max_accounts": 1000,
    }
    settings: Settings = settings_factory(**{**base, **overrides})
    return settings


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**child_environment(settings), **extra}


def spawn_worker(settings: Settings, log_path: Path, *, fault: str | None = None) -> Popen[bytes]:
    """A real `kpistream worker` process; with ``fault`` the harness of faulty_worker.py."""
    if fault is None:
        return spawn(WORKER, log_path=log_path, env=worker_env(settings))
    return spawn(FAULTY_WORKER, log_path=log_path, env=worker_env(settings, FAULT=fault))


async def processed(settings: Settings) -> int:
    reader = await wait_for_totals(settings, {}, timeout_s=1)
    return int(reader.snapshot({}).health[H.PROCESSED])


def flowing(settings: Settings, slices: int, gate: asyncio.Event) -> asyncio.Task[None]:
    """LINES produced in ``slices`` slices 0.2 s apart, in the background, the last quarter
    only once ``gate`` is set: events still flow after a test has injected its faults, by
    construction and not by how fast this machine is."""
    size = len(LINES) // slices + 1
    held = len(LINES) - len(LINES) // 4

    async def flow() -> None:
        for start in range(0, len(LINES), size):
            if start >= held:
                await gate.wait()
            await produce(settings, LINES[start : start + size])
            await asyncio.sleep(0.2)

    return asyncio.create_task(flow())


def website_only(lines: list[bytes]) -> list[bytes]:
    """The clickstream events of ``lines`` (the ones with a visitor)."""
    return [line for line in lines if "visitor_id" in msgspec.json.decode(line)]
