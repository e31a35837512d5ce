"""The stack: ``up``, ``demo`` and ``down``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console

from kpistream import runtime
from kpistream.cli.common import console, settings_of
from kpistream.config.connections import redacted
from kpistream.config.settings import Settings, env_name

# -- up and demo ----------------------------------------------------------------------------


class Stack:
    """A running stack: its settings, published info and the children to watch."""

    def __init__(self, settings: Settings, info: runtime.StackInfo, workdir: Path) -> None:
        self.settings = settings
        self.info = info
        self.workdir = workdir
        self.watched: dict[str, subprocess.Popen[bytes]] = {}

    def check(self) -> None:
        """One line, naming the log, when a child died: a stack without it is no stack."""
        for name, child in self.watched.items():
            if child.poll() is not None:
                raise runtime.UserError(
                    f"the {name} exited with code {child.returncode}; "
                    f"see {self.workdir / (name + '.log')}"
                )


#: `demo` makes sessions end within a minute (unless configured), so that abandoned carts and
#: time on site show up while you watch; `up` keeps the production defaults.
DEMO_DEFAULTS = {"session_gap_s": "60", "allowed_lateness_s": "15"}


@contextlib.contextmanager
def stack(
    args: argparse.Namespace, defaults: dict[str, str] | None = None, *, shop: bool = False
) -> Iterator[Stack]:
    """Embedded broker/Redis unless configured, plus worker, exporter and collector children
    (and the demo shop with ``shop``)."""
    defaults = {k: v for k, v in (defaults or {}).items() if not os.environ.get(env_name(k))}
    for name, value in defaults.items():
        console.print(f"[dim]demo: {env_name(name)}={value} (set it to override)[/]")
    settings = msgspec.structs.replace(
        settings_of(args),
        **{k: type(getattr(settings_of(args), k))(v) for k, v in defaults.items()},
    )
    if args.metrics_port:  # before anything starts
        runtime.check_port("127.0.0.1", args.metrics_port, "the exporter", "--metrics-port")
    workdir = runtime.workdir()
    stops: list[Callable[[], None]] = []  # run in reverse on the way out
    group = runtime.ProcessGroup()
    try:
        overrides: dict[str, Any] = {}
        if not (args.kafka or os.environ.get(env_name("kafka"))):
            broker = runtime.start_broker(workdir, group=group)
            stops.append(broker.stop)
            overrides["kafka"] = broker.address
        if not (args.redis or os.environ.get(env_name("redis"))):
            server = runtime.start_redis(workdir, group=group)
            stops.append(server.stop)
            overrides["redis"] = server.address
        settings = msgspec.structs.replace(settings, **overrides)
        runtime.check_redis(settings.redis)
        asyncio.run(runtime.ensure_topics(settings))
        if not settings.id_secret:  # the customer zone's key, for this run only
            settings = msgspec.structs.replace(settings, id_secret=secrets.token_hex(32))
        env = {
            **os.environ,
            **{env_name(k): v for k, v in defaults.items()},
            env_name("kafka"): settings.kafka,
            env_name("redis"): settings.redis,
            env_name("id_secret"): settings.id_secret,
        }
        port = args.metrics_port or runtime.free_port()

        def child(name: str, *args: str) -> subprocess.Popen[bytes]:
            """A `kpistream NAME ARGS` child of the stack, logging to NAME.log."""
            process = runtime.spawn(
                [sys.executable, "-m", "kpistream", name, *args],
                log_path=workdir / f"{name}.log",
                env=env,
                group=group,
            )
            stops.append(functools.partial(runtime.stop, process, name=name))
            return process

        worker = child("worker")
        exporter = child("exporter", "--port", str(port))
        collector_port = runtime.free_port()
        collector = child("collector", "--port", str(collector_port))
        watched = {"worker": worker, "exporter": exporter, "collector": collector}
        if shop:
            shop_port = runtime.free_port()
            collector_url = f"http://127.0.0.1:{collector_port}"
            watched["shop"] = child("shop", "--port", str(shop_port), "--collector", collector_url)
        # Print the URLs only once they answer.
        runtime.wait_port(port, exporter, "exporter", workdir / "exporter.log")
        runtime.wait_port(collector_port, collector, "collector", workdir / "collector.log")
        info = runtime.StackInfo(
            os.getpid(),
            settings.kafka,
            settings.redis,
            f"http://127.0.0.1:{port}/metrics",
            time.time(),
            group.pgid,
        )
        console.print(f"[bold]kafka[/]    {info.kafka}")
        console.print(f"[bold]redis[/]    {redacted(info.redis)}", highlight=False)
        console.print(f"[bold]metrics[/]  {info.metrics_url}")
        console.print(
            f"[bold]collector[/] http://127.0.0.1:{collector_port} (kpistream.js, "
            "/v1/events, /api/event, Snowplow tp2)"
        )
        if shop:
            runtime.wait_port(shop_port, watched["shop"], "shop", workdir / "shop.log")
            console.print(
                f"[bold]shop[/]     http://localhost:{shop_port}/ (kpistream.js), "
                f"http://plausible.localhost:{shop_port}/, "
                f"http://snowplow.localhost:{shop_port}/"
            )
        console.print(f"[dim]logs     {workdir}[/]")
        running = Stack(settings, info, workdir)
        running.watched = watched
        with runtime.published(info):
            yield running
    finally:
        # Stopping is not interrupted by a second Ctrl-C: children left half-stopped are
        # what outlived stacks before.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for stop_child in reversed(stops):
            stop_child()
        group.kill()


def cmd_up(args: argparse.Namespace) -> int:
    with stack(args) as running:
        console.print("running; Ctrl-C stops everything")
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            running.check()
            time.sleep(0.2)
    return 0


#: `down` waits this long for a stack to stop by itself: `up` stops each child within 10 s
#: (the worker within 8), one after the other.
DOWN_TIMEOUT_S = 60.0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the newest running stack (or all with ``--all``) as Ctrl-C would, and wait until
    it is gone; what is still there at the deadline is killed."""
    stacks = sorted(runtime.running_stacks(), key=lambda s: s.started)
    if not stacks:
        console.print(f"kpistream: no running stack under {runtime.state_dir()}", markup=False)
        return 0
    for info in stacks if args.all else stacks[-1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while runtime.alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        how = "stopped"
        if runtime.alive(info.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
            how = f"killed after {args.timeout:g} s"
        runtime.ProcessGroup.of(info.pgid).kill()  # anything its children left behind
        console.print(
            f"kpistream: {how} the stack of pid {info.pid} "
            f"(Kafka {info.kafka}, Redis {redacted(info.redis)})",
            markup=False,
            highlight=False,
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.live import Live

    from kpistream.live import kpi_table
    from kpistream.produce import produce
    from kpistream.sinks.store_reader import WindowReader
    from kpistream.sources.demo import LiveTraffic

    with stack(args, DEMO_DEFAULTS, shop=True) as running:
        from kpistream.config.connections import redis_client

        settings = running.settings
        reader = WindowReader(redis_client(settings), prefix=settings.redis_prefix)
        windows = settings.window_minutes()
        long_windows = settings.long_windows
        # The shortest window reacts fastest: that is what a live view is for.
        shown = args.window or min(windows, key=lambda name: windows[name])
        if shown not in windows:
            raise runtime.UserError(
                f"--window {shown}: not one of KPISTREAM_WINDOWS={settings.windows}"
            )

        def read() -> Any:
            return kpi_table(reader.snapshot(windows, long_windows), shown)

        deadline = None if args.duration is None else time.monotonic() + args.duration

        async def run() -> None:
            task = asyncio.create_task(produce(settings, LiveTraffic(args.rate, deadline).lines()))
            with Live(read(), console=Console(), refresh_per_second=2) as live:
                while not task.done():
                    await asyncio.sleep(1.0)
                    running.check()
                    live.update(await asyncio.to_thread(read))
                await task

        asyncio.run(run())
    return 0
