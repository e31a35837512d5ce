"""What the fault tests share: the seeded traffic, settings, and real worker processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

from kpistream.produce import encode
from kpistream.runtime import spawn
from kpistream.settings import Settings, env_name
from kpistream.simulator import sessions
from sinks import fields as F
from tests.integration.waits import wait_for_totals

#: Historic, seeded traffic: about 3,000 events of 400 sessions with carts and purchases,
#: spanning less than the allowed lateness, so that a late retry is still a retry.
START_MS = (time.time_ns() // 1_000_000) - 6 * 3_600_000
LINES = [encode(e) for e in sessions(11, start_ms=START_MS, count=400, spacing_ms=100)]

WORKER = [sys.executable, "-m", "kpistream", "worker"]
FAULTY_WORKER = [sys.executable, "-m", "tests.faults.faulty_worker"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def many_lines(seed: int) -> list[bytes]:
    """About 30,000 events: enough batches of 50 for several faults in one run."""
    return [encode(e) for e in sessions(seed, start_ms=START_MS, count=4000, spacing_ms=10)]


def settings_for(settings_factory: Any, **overrides: Any) -> Settings:
    # Partitions enough for rebalances to move something; budgets large enough that no label
    # depends on which worker saw a value first.
    base = {"partitions": 4, "max_landing_pages": 1000, "max_channels": 1000}
    settings: Settings = settings_factory(**{**base, **overrides})
    return settings


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPISTREAM_")}
    env.update({env_name(f): str(getattr(settings, f)) for f in Settings.__struct_fields__})
    env.update(extra)
    return env


def spawn_worker(settings: Settings, log_path: Path, *, fault: str | None = None) -> Popen[bytes]:
    """A real `kpistream worker` process; with ``fault`` the harness of faulty_worker.py."""
    if fault is None:
        return spawn(WORKER, log_path=log_path, env=worker_env(settings))
    return spawn(FAULTY_WORKER, log_path=log_path, env=worker_env(settings, FAULT=fault))


async def processed(settings: Settings) -> int:
    reader = await wait_for_totals(settings, {}, timeout_s=1)
    return int(reader.snapshot({}).totals[F.PROCESSED])
