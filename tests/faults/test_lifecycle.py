"""A `kpistream up` stopped every way a user stops one: Ctrl-C, SIGTERM, the terminal
closing, `kpistream down`. Each time no child process remains and no event is lost; an
address given on the command line wins over the running stack; no password is printed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from kpistream import runtime
from kpistream.config.settings import Settings, child_environment
from kpistream.contract.keys import label_keys
from kpistream.produce import produce
from tests.faults import oracle
from tests.faults.common import many_lines, now_ms, settings_for
from tests.support.stack import start_streams
from tests.support.waits import wait_until_sync

KPISTREAM = [sys.executable, "-m", "kpistream"]


def _up(
    settings: Settings, state: Path, log: Path, *, embedded: bool = False
) -> subprocess.Popen[str]:
    """`kpistream up` on the settings' broker and Redis (``embedded``: its own), as a
    terminal's foreground job: the leader of its own process group, which Ctrl-C and a
    hang-up signal as a whole."""
    env = {**child_environment(settings), "KPISTREAM_STATE_DIR": str(state)}
    if embedded:
        del env["KPISTREAM_KAFKA"], env["KPISTREAM_REDIS"]
    return subprocess.Popen(
        [*KPISTREAM, "up"],
        stderr=open(log, "w"),
        stdout=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,
    )


def _header(log: Path, up: subprocess.Popen[str]) -> str:
    def printed() -> bool:
        assert up.poll() is None, log.read_text()
        return "running;" in log.read_text()

    wait_until_sync("`kpistream up` is running", printed, timeout_s=90, every_s=0.1)
    return log.read_text()


def _children(up: subprocess.Popen[str]) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(up.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(pid) for pid in found]


WAYS = ["ctrl-c", "sigterm", "hangup", "down"]


@pytest.mark.slow
@pytest.mark.parametrize("way", WAYS)
async def test_a_stopped_stack_leaves_no_process_and_loses_no_event(
    way: str, settings_factory: Any, workers: Any, tmp_path: Path
) -> None:
    settings = settings_for(settings_factory)
    state, log = tmp_path / "state", tmp_path / "up.log"
    up = _up(settings, state, log)
    try:
        header = _header(log, up)
        children = _children(up)
        assert len(children) == 3, header  # worker, exporter, collector (broker, Redis given)
        await produce(settings, many_lines(seed=21)[:3000])  # stopped while it counts them
        started = time.monotonic()
        if way == "ctrl-c":
            os.killpg(up.pid, signal.SIGINT)
        elif way == "sigterm":
            up.terminate()
        elif way == "hangup":
            os.killpg(up.pid, signal.SIGHUP)
        else:
            down = await asyncio.to_thread(
                subprocess.run,
                [*KPISTREAM, "down"],
                env={**os.environ, "KPISTREAM_STATE_DIR": str(state)},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert down.returncode == 0, down.stderr
            assert f"stopped the stack of pid {up.pid}" in down.stderr, down.stderr
        code = up.wait(60)
        took = time.monotonic() - started
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    assert code in (0, 130), log.read_text()
    after = log.read_text().split("running;", 1)[1]
    assert "error" not in after and "killed" not in after, log.read_text()  # each by itself
    left = [pid for pid in children if runtime.alive(pid)]
    assert left == [], f"children outlived `up` ({way}): {left}"
    # Each child stopped by itself within its deadline, not at `up`'s kill 10 s later.
    assert took < 10 * 3, took
    # Nothing lost, nothing doubled: workers take up where the stopped one committed.
    await start_streams(workers, settings)
    await oracle.assert_exact(settings, now_ms=now_ms())


def test_an_explicit_redis_wins_over_a_running_stack(
    settings_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    """With a stack running, `labels reset` and `produce` given an address talk to it, and
    say so, instead of the stack's (they reached the running stack's Redis before)."""
    ours = settings_factory()
    state, log = tmp_path / "state", tmp_path / "up.log"
    up = _up(ours, state, log, embedded=True)  # a developer's stack, its own Redis
    try:
        header = _header(log, up)
        theirs = redis.Redis.from_url(_printed_redis(header, state))
        client = redis.Redis.from_url(redis_url)
        members, _ = label_keys(ours.redis_prefix, "campaign")
        client.zadd(members, {"bf": 1})
        theirs.zadd(members, {"bf": 1})
        env = {**os.environ, "KPISTREAM_STATE_DIR": str(state)}
        env = {k: v for k, v in env.items() if k not in ("KPISTREAM_KAFKA", "KPISTREAM_REDIS")}
        reset = subprocess.run(
            [*KPISTREAM, "labels", "reset", "campaign", "--redis", ours.redis],
            env={**env, "KPISTREAM_REDIS_PREFIX": ours.redis_prefix},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert reset.returncode == 0, reset.stderr
        assert client.zcard(members) == 0 and theirs.zcard(members) == 1
        password = ours.redis.split(":")[2].split("@")[0]
        assert password not in reset.stderr
        assert re.search(r"labels reset: Redis redis://:\*\*\*@127\.0\.0\.1:\d+/0", reset.stderr)
        client.close()
        theirs.close()
    finally:
        up.terminate()
        up.wait(60)


def _printed_redis(header: str, state: Path) -> str:
    """The running stack's Redis URL: printed without its password, which only the stack's
    state file (its owner's alone) holds."""
    assert re.search(r"redis\s+redis://:\*\*\*@127\.0\.0\.1:\d+/0", header), header
    (published,) = list((state / "stacks").glob("*.json"))
    assert published.stat().st_mode & 0o077 == 0
    url: str = json.loads(published.read_text())["redis"]
    return url


def test_up_prints_and_logs_no_password(settings_factory: Any, tmp_path: Path) -> None:
    """An external Redis URL with a password is printed redacted, and no log has it."""
    settings = settings_factory()
    password = settings.redis.split(":")[2].split("@")[0]
    state, log = tmp_path / "state", tmp_path / "up.log"
    up = _up(settings, state, log)
    try:
        header = _header(log, up)
        logs = Path(re.search(r"logs\s+(\S+)", header).group(1))  # type: ignore[union-attr]
    finally:
        up.terminate()
        up.wait(60)
    assert "redis://:***@127.0.0.1:" in header
    for text in [log.read_text(), *(p.read_text() for p in logs.glob("*.log"))]:
        assert password not in text
