"""The `kpistream` command as a user runs it: real processes, real broker and Redis."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kpistream.runtime import free_port
from tests.support import known_events as K
from tests.support.waits import wait_until_sync

KPISTREAM = [sys.executable, "-m", "kpistream"]


def _header(process: subprocess.Popen[str]) -> str:
    """What `up`/`demo` print before they run: everything up to the `logs` line."""
    assert process.stderr is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("logs"):
        line = process.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    return "".join(lines)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPISTREAM_")}
    env.update(
        KPISTREAM_STATE_DIR=str(tmp_path / "state"),
        KPISTREAM_REBALANCE_TIMEOUT_S="1",
        KPISTREAM_PARTITIONS="2",
        KPISTREAM_IDLE_AFTER_S="3600",  # the known events are historic: stay in event time
        **extra,
    )
    return env


def _fails_in_one_line(args: list[str], env: dict[str, str]) -> str:
    """Run a command that must fail with exit code 2 and exactly one line on stderr."""
    result = subprocess.run(
        [*KPISTREAM, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_worker_without_a_broker_says_so_in_one_line(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    line = _fails_in_one_line(
        ["worker", "--kafka", f"127.0.0.1:{port}", "--redis", redis_url],
        _env(tmp_path, KPISTREAM_STARTUP_TIMEOUT_S="0"),
    )
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in line and "KPISTREAM_KAFKA" in line


def test_exporter_without_redis_says_so_in_one_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    line = _fails_in_one_line(["exporter", "--redis", url], _env(tmp_path))
    assert f"cannot reach Redis at {url}" in line and "KPISTREAM_REDIS" in line


def test_bad_setting_says_which_and_why(tmp_path: Path) -> None:
    line = _fails_in_one_line(["exporter"], _env(tmp_path, KPISTREAM_SESSION_GAP_S="half an hour"))
    assert line == (
        "kpistream: error: bad setting KPISTREAM_SESSION_GAP_S='half an hour': "
        "Expected `int`, got `str`"
    )


def _closes(address: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _port_open(address):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_up_then_produce_serves_exact_kpis_and_children_die_with_it(tmp_path: Path) -> None:
    env = _env(tmp_path)
    up = subprocess.Popen(
        [*KPISTREAM, "up"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True
    )
    second = None
    try:
        assert up.stderr is not None
        header = _header(up)
        kafka = re.search(r"kafka\s+(\S+)", header)
        metrics = re.search(r"metrics\s+(\S+)", header)
        assert kafka and metrics, header
        # The embedded Redis wants a password; the printed URL hides it.
        assert re.search(r"redis\s+redis://:\*\*\*@127\.0\.0\.1:\d+/0", header), header
        # A second stack never collides with the first one's ports.
        second = subprocess.Popen(
            [*KPISTREAM, "up", "--duration", "60"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=_env(tmp_path / "b"),
            text=True,
        )
        assert second.stderr is not None
        header2 = _header(second)
        assert kafka.group(1) not in header2 and metrics.group(1) not in header2, header2

        events = tmp_path / "events.jsonl"
        events.write_bytes(b"\n".join(K.lines()) + b"\n")
        sent = subprocess.run(
            [*KPISTREAM, "produce", str(events)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        assert f"on {kafka.group(1)}" in sent.stderr  # found the running stack by itself

        K.assert_served(metrics.group(1))
    finally:
        up.terminate()
        up.wait(30)
        if second is not None:
            second.kill()  # SIGKILL: its children must still die with it
            second.wait(30)
    # Redis ends on SIGTERM after its last write; the broker is SIGKILLed. Either is gone
    # within a few seconds, however loaded the machine.
    assert _closes(kafka.group(1)), "embedded broker outlived `kpistream up`"
    for name in ("kafka", "redis", "metrics"):  # every child of the killed `up`
        address = re.search(rf"{name}\s+(?:\w+://)?(?:[^@\s]*@)?([\d.]+:\d+)", header2)
        assert address, header2
        assert _closes(address.group(1)), f"{name} outlived a killed `up`"


@pytest.mark.slow
def test_demo_shows_plausible_live_kpis_and_ends_by_itself(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [*KPISTREAM, "demo", "--duration", "30", "--metrics-port", str(port), "--rate", "40"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(tmp_path),
        text=True,
    )
    try:
        assert f"127.0.0.1:{port}/metrics" in _header(demo)
        got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        followers = ("kpi_followers", (("account", "acme"), ("network", "instagram")))

        social_rate = "kpi_social_engagement_rate"

        def busy() -> bool:
            nonlocal got
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                got = K.samples(r.read().decode())
            return (
                got.get(("kpistream_events_processed_total", ()), 0) > 300
                and followers in got
                and any(name == social_rate for name, _ in got)
            )

        # The demo serves for 30 s, then ends by itself: wait for its KPIs well before that
        # (on a loaded machine the social stream's first window can take over 12 s).
        wait_until_sync("the demo's KPIs are served", busy, timeout_s=25, every_s=0.5)
        demo.wait(60)
        assert demo.stdout is not None and demo.stderr is not None
        stdout, stderr = demo.stdout.read(), demo.stderr.read()
    finally:
        demo.kill()
    assert demo.returncode == 0, stderr
    for header in ("bounce", "engaged", "cart ab.", "NPS", "revenue", "followers"):
        assert header in stdout, header
    assert "shop.example" in stdout
    for site in ("shop.example", "blog.example"):
        assert got[("kpi_sessions", (("site", site), ("window", "5m")))] > 0
        assert 0 <= got[("kpi_bounce_rate", (("site", site), ("window", "5m")))] <= 1
        assert got[("kpi_unique_visitors", (("site", site), ("window", "5m")))] > 0
    for ratio in (
        "kpi_click_through_rate",
        "kpi_engagement_rate",
        "kpi_conversion_rate",
        "kpi_social_engagement_rate",
    ):
        values = [v for (name, _), v in got.items() if name == ratio]
        assert values and all(0 <= v <= 1 for v in values), ratio
    assert got[("kpi_followers", (("account", "acme"), ("network", "instagram")))] > 4_000
    assert got[("kpistream_events_rejected_total", (("reason", "malformed_json"),))] == 0


@pytest.mark.slow
def test_up_exits_with_one_line_when_its_worker_dies(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [*KPISTREAM, "up"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=_env(tmp_path),
        text=True,
    )
    try:
        header = _header(up)
        workers = subprocess.run(
            ["pgrep", "-P", str(up.pid), "-f", "kpistream worker"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(workers) == 1
        os.kill(int(workers[0]), 9)
        up.wait(30)
        # Read through the same buffered stream as _header (communicate() would skip its buffer).
        assert up.stderr is not None
        stderr = up.stderr.read()
    finally:
        up.kill()
    assert up.returncode == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("running;"), (header, stderr)
    assert re.match(
        r"kpistream: error: the worker exited with code -9; see .*worker\.log$", lines[1]
    )
