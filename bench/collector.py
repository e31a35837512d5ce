"""Collector benchmark: wrk (Debian) on loopback against `kpistream collector` (real Kafka
and Redis behind it), single-event and batched requests, beside a minimal ASGI
accept-and-drop app on the same server (uvicorn + httptools + uvloop): the ceiling.

    .venv/bin/python -m bench.collector [--seconds 10]

The server is pinned to core 0 and wrk to core 1, so "one core" is what the server gets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kpistream import runtime

CEILING_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""

BATCH = 20
UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36"
)


def wrk_script(body: str, path: Path) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "text/plain"\n'
        f'wrk.headers["User-Agent"] = "{UA}"\n'
    )
    return path


def run_wrk(url: str, script: Path, seconds: int, connections: int = 32) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rate,
        "p50": ms("50%"),
        "p99": ms("99%"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def measure(seconds: int = 10) -> str:
    """The collector benchmark as a markdown section (a note instead without wrk)."""
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        return "Collector: not measured (needs wrk and taskset: Debian's wrk, util-linux).\n"
    work = Path(tempfile.mkdtemp(prefix="kpistream-bench-collector-"))
    broker = runtime.start_broker(work)
    redis_server = runtime.start_redis(work)
    # The broker and Redis share wrk's core: the collector's core is its own.
    for server in (broker, redis_server):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", "1", str(server.process.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    env = {
        **os.environ,
        "KPISTREAM_KAFKA": broker.address,
        "KPISTREAM_REDIS": redis_server.address,
        "KPISTREAM_COLLECTOR_RATE": "1000000",
        "KPISTREAM_COLLECTOR_BURST": "1000000",
        "KPISTREAM_COLLECTOR_MAX_EVENTS_PER_MINUTE": "100000000",
        "KPISTREAM_COLLECTOR_QUEUE": "100000",
    }
    port, ceiling_port = runtime.free_port(), runtime.free_port()
    (work / "ceiling.py").write_text(CEILING_APP)
    logs = work / "collector.log"
    with logs.open("wb") as log:
        collector = subprocess.Popen(
            [
                "taskset",
                "-c",
                "0",
                sys.executable,
                "-m",
                "kpistream",
                "collector",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ceiling = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "uvicorn",
            "ceiling:app",
            "--port",
            str(ceiling_port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        runtime.wait_port(port, collector, "collector", logs)
        runtime.wait_port(ceiling_port, ceiling, "ceiling", logs)
        one = json.dumps({"type": "page_view", "site": "bench.test", "path": "/"})
        batch = json.dumps(
            [{"type": "page_view", "site": "bench.test", "path": f"/{i}"} for i in range(BATCH)]
        )
        runs = [
            ("ceiling: ASGI accept-and-drop, same server", ceiling_port, "/", one, 1, 32),
            ("collector, 1 event/request", port, "/v1/events", one, 1, 32),
            ("collector, 1 event/request", port, "/v1/events", one, 1, 128),
            (f"collector, {BATCH} events/request", port, "/v1/events", batch, BATCH, 32),
        ]
        run_wrk(f"http://127.0.0.1:{port}/v1/events", wrk_script(one, work / "w.lua"), 2)  # warm
        rows = [
            "| run | connections | requests/s | events/s | p50 ms | p99 ms | non-2xx |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, target, path, body, events, connections in runs:
            r = run_wrk(
                f"http://127.0.0.1:{target}{path}",
                wrk_script(body, work / "post.lua"),
                seconds,
                connections,
            )
            rows.append(
                f"| {name} | {connections} | {r['rps']:,.0f} | {r['rps'] * events:,.0f} | "
                f"{r['p50']:.2f} | {r['p99']:.2f} | {r['errors']:.0f} |"
            )
    finally:
        for child in (collector, ceiling):
            child.terminate()
            child.wait(10)
        redis_server.stop()
        broker.stop()
    return (
        "Collector (`kpistream collector`, Starlette on uvicorn with httptools and uvloop, "
        "pinned to one core; wrk on the other; every accepted event acknowledged by the "
        f"embedded broker before the answer; {seconds} s per run):\n\n" + "\n".join(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    print(measure(parser.parse_args().seconds))


if __name__ == "__main__":
    main()
