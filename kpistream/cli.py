"""The ``kpistream`` command: up, demo, worker, exporter, produce; goals, rules, dashboards."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
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

from kpistream import deploy_cli, runtime
from kpistream.config.connections import redacted
from kpistream.config.settings import HELP, Settings, SettingsError, env_name, load

console = Console(stderr=True)


def _settings(args: argparse.Namespace) -> Settings:
    return load(
        {
            "kafka": getattr(args, "kafka", None),
            "redis": getattr(args, "redis", None),
            "metrics_port": getattr(args, "metrics_port", None),
        }
    )


# -- worker and exporter --------------------------------------------------------------------


#: The allocator a worker runs on: glibc's, which gives freed pages back to the system, where
#: CPython's own keeps any 1 MiB arena that a single surviving object pins. After a flood of
#: 200,000 sessions: RSS 40 -> 175 -> 64 MB with it, 40 -> 190 -> 147 MB without
#: (bench/memory.py). Set PYTHONMALLOC yourself to choose otherwise.
WORKER_ALLOCATOR = "malloc"


def _reexec_with_allocator() -> None:
    """Start the worker again on :data:`WORKER_ALLOCATOR` (it is chosen at interpreter
    start), when run as the ``kpistream`` program and PYTHONMALLOC is not set."""
    program = Path(sys.argv[0]).name
    if os.environ.get("PYTHONMALLOC") or program not in ("kpistream", "__main__.py"):
        return
    env = {**os.environ, "PYTHONMALLOC": WORKER_ALLOCATOR}
    os.execve(sys.executable, [sys.executable, "-m", "kpistream", *sys.argv[1:]], env)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _reexec_with_allocator()
    _wait_for_servers(settings)
    from kpistream.worker import Worker, create_app

    app = create_app(settings)
    worker = Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


#: First retry soon; then back off to one attempt (and one log line) every 10 s.
STARTUP_RETRY_FIRST_S = 0.5
STARTUP_RETRY_MAX_S = 10.0


def _wait_for_servers(settings: Settings) -> None:
    """Wait for Redis and Kafka (creating the topics) for up to KPISTREAM_STARTUP_TIMEOUT_S,
    one line per failed attempt, then give up with the last reason as one line."""
    from kpistream.streams.retry import Backoff

    deadline = time.monotonic() + settings.startup_timeout_s
    backoff = Backoff(STARTUP_RETRY_FIRST_S, STARTUP_RETRY_MAX_S)
    while True:
        try:
            runtime.check_redis(settings.redis)
            asyncio.run(runtime.ensure_topics(settings))
            return
        except runtime.UserError as exc:
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                raise
            console.print(
                f"kpistream: waiting: {exc}; retrying in {delay:.1f}s",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            time.sleep(delay)


def cmd_exporter(args: argparse.Namespace) -> int:
    settings = _settings(args)
    port = args.port or settings.metrics_port
    runtime.check_port(args.host, port, "the exporter", "KPISTREAM_METRICS_PORT / --port")
    runtime.check_redis(settings.redis)
    from kpistream.sinks.exporter import run_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_forever(settings, host=args.host, port=args.port)
    return 0


# -- produce --------------------------------------------------------------------------------


def _discovered(args: argparse.Namespace) -> Settings:
    """Settings for a command that talks to a deployment: the broker and Redis given
    (``--kafka``/``--redis`` or their variables) always win; only when neither is given
    does the newest running ``kpistream up``/``demo`` stack stand in for both."""
    settings = _settings(args)
    given = any(
        getattr(args, name, None) or os.environ.get(env_name(name)) for name in ("kafka", "redis")
    )
    stack = None if given else runtime.running_stack()
    if stack is not None:
        settings = msgspec.structs.replace(settings, kafka=stack.kafka, redis=stack.redis)
    return settings


def _about_to_change(what: str, settings: Settings, *, kafka: bool, redis: bool) -> None:
    """One line before a command writes: which broker and Redis it is about to change."""
    where = []
    if kafka:
        where.append(f"Kafka {settings.kafka}")
    if redis:
        where.append(f"Redis {redacted(settings.redis)} (prefix {settings.redis_prefix})")
    console.print(
        f"kpistream: {what}: {' and '.join(where)}", markup=False, highlight=False, soft_wrap=True
    )


def cmd_produce(args: argparse.Namespace) -> int:
    settings = _discovered(args)
    path = Path(args.file)
    if not path.is_file():
        raise runtime.UserError(f"no such file: {path}")
    from kpistream.produce import Tally, file_lines, produce

    _about_to_change("produce", settings, kafka=True, redis=False)
    asyncio.run(runtime.ensure_topics(settings))
    tally = Tally(settings)
    counts = asyncio.run(produce(settings, file_lines(path), tally=tally))
    for topic, n in sorted(counts.items()):
        console.print(f"sent {n} events to {topic} on {settings.kafka}", highlight=False)
    console.print(
        f"kpistream: produce: {tally.summary()}", markup=False, highlight=False, soft_wrap=True
    )
    if not tally.valid:
        raise runtime.UserError(
            f"no valid event in {path}: see docs/events.md for the event contract"
        )
    return 0


# -- labels ---------------------------------------------------------------------------------


def cmd_labels(args: argparse.Namespace) -> int:
    """Show each label budget, or reset one (all its values, or the values named)."""
    from kpistream.config.connections import redis_client
    from kpistream.contract.keys import label_keys
    from kpistream.sinks.window_store import WindowReader
    from kpistream.streams import labels

    settings = _discovered(args)
    runtime.check_redis(settings.redis)
    client = redis_client(settings, decode_responses=True)
    budgets = settings.label_budgets()
    if args.action == "reset":
        if not args.dimension or args.dimension not in budgets:
            raise runtime.UserError(
                f"labels reset: name a budgeted dimension, one of {', '.join(budgets)}"
            )
        members, refused = label_keys(settings.redis_prefix, args.dimension)
        _about_to_change("labels reset", settings, kafka=False, redis=True)
        if args.values:
            removed = client.zrem(members, *args.values)
            console.print(f"{args.dimension}: {removed} of {len(args.values)} values removed")
        else:
            removed = client.zcard(members)
            client.delete(members, refused)
            console.print(f"{args.dimension}: all {removed} values removed, refusals reset")
        console.print(
            f"workers reload budgets within {labels.SYNC_S:.0f} s; "
            "values seen again are admitted anew"
        )
        return 0
    reader = WindowReader(client, prefix=settings.redis_prefix)
    now_ms = time.time_ns() // 1_000_000
    out = Console()
    for name, use in reader.label_use(budgets).items():
        state = "full" if use.admitted >= use.budget else "room"
        out.print(
            f"[bold]{name}[/]: {use.admitted} of {use.budget} ({state}), "
            f"{use.refused} distinct values refused"
        )
        members, _ = label_keys(settings.redis_prefix, name)
        ranked: Any = client.zrevrange(members, 0, -1, withscores=True)
        for value, seen in ranked:
            age_h = (now_ms - float(seen)) / 3_600_000
            out.print(f"  {value!s}  [dim]last seen {age_h:.1f} h ago[/]", highlight=False)
    return 0


# -- collector and forget ---------------------------------------------------------------------


def cmd_collector(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.port:
        settings = msgspec.structs.replace(settings, collector_port=args.port)
    runtime.check_port(
        args.host, settings.collector_port, "the collector", "KPISTREAM_COLLECTOR_PORT / --port"
    )
    _wait_for_servers(settings)
    import uvicorn

    from kpistream.collector.app import create_app, server_options

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=settings.collector_port,
        log_level="warning",
        loop="uvloop",
        **server_options(app),
    )
    return 0


def cmd_shop(args: argparse.Namespace) -> int:
    runtime.check_port(args.host, args.port, "the demo shop", "--port")
    import uvicorn

    from kpistream.collector.shop import create_shop

    uvicorn.run(
        create_shop(args.collector),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
    )
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from kpistream.forget import forget, stored_id

    settings = _discovered(args)
    try:
        visitor = stored_id(settings, args.site, args.visitor)
    except ValueError as exc:
        raise runtime.UserError(str(exc)) from None
    _about_to_change("forget", settings, kafka=True, redis=True)
    asyncio.run(runtime.ensure_topics(settings))
    result = asyncio.run(forget(settings, args.site, visitor, wait_s=args.wait))
    where = f"partition {result.partition}, offset {result.offset}"
    if not result.applied:
        console.print(
            f"queued ({where}): no worker carried it out within {args.wait:g}s; it will be "
            "when the partition's worker reaches it",
            markup=False,
        )
        return 1
    if result.sessions_left or result.record_left:  # a new event of the visitor since
        console.print(f"erased ({where}); the visitor was seen again since", markup=False)
        return 0
    console.print(f"erased ({where}): no session or record of the visitor remains", markup=False)
    return 0


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
        _settings(args), **{k: type(getattr(_settings(args), k))(v) for k, v in defaults.items()}
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
        base = [sys.executable, "-m", "kpistream"]
        worker = runtime.spawn(
            [*base, "worker"], log_path=workdir / "worker.log", env=env, group=group
        )
        stops.append(functools.partial(runtime.stop, worker, name="worker"))
        exporter = runtime.spawn(
            [*base, "exporter", "--port", str(port)],
            log_path=workdir / "exporter.log",
            env=env,
            group=group,
        )
        stops.append(functools.partial(runtime.stop, exporter, name="exporter"))
        collector_port = runtime.free_port()
        collector = runtime.spawn(
            [*base, "collector", "--port", str(collector_port)],
            log_path=workdir / "collector.log",
            env=env,
            group=group,
        )
        stops.append(functools.partial(runtime.stop, collector, name="collector"))
        watched = {"worker": worker, "exporter": exporter, "collector": collector}
        if shop:
            shop_port = runtime.free_port()
            shop_child = runtime.spawn(
                [
                    *base,
                    "shop",
                    "--port",
                    str(shop_port),
                    "--collector",
                    f"http://127.0.0.1:{collector_port}",
                ],
                log_path=workdir / "shop.log",
                env=env,
                group=group,
            )
            stops.append(functools.partial(runtime.stop, shop_child, name="shop"))
            watched["shop"] = shop_child
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

    from kpistream.demo import traffic
    from kpistream.live import kpi_table
    from kpistream.produce import produce
    from kpistream.sinks.window_store import WindowReader

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
            task = asyncio.create_task(produce(settings, traffic(args.rate, deadline)))
            with Live(read(), console=Console(), refresh_per_second=2) as live:
                while not task.done():
                    await asyncio.sleep(1.0)
                    running.check()
                    live.update(await asyncio.to_thread(read))
                await task

        asyncio.run(run())
    return 0


# -- entry point ----------------------------------------------------------------------------


class HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.option_strings or action.nargs in (argparse.OPTIONAL, "*")
        if (
            shown
            and "default" not in text
            and action.default not in (None, argparse.SUPPRESS)
            and not action.required
        ):
            text += " (default: %(default)s)"
        return text


def _with_defaults(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpWithDefaults
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _with_defaults(child)


def _setting_default(name: str) -> str:
    value = Settings.__struct_defaults__[Settings.__struct_fields__.index(name)]
    return str(value) if value != "" else "empty"


def parser() -> argparse.ArgumentParser:
    epilog = "settings (environment):\n" + "\n".join(
        f"  {env_name(name):32} {text} (default: {_setting_default(name)})"
        for name, text in HELP.items()
    )
    root = argparse.ArgumentParser(
        prog="kpistream",
        description="Real-time marketing KPIs: Kafka -> Redis -> Prometheus",
        epilog=epilog,
    )
    root.add_argument("--version", action="version", version=f"kpistream {_version()}")
    sub = root.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "--kafka",
            help="Kafka bootstrap servers (default: KPISTREAM_KAFKA, else "
            f"{_setting_default('kafka')}; up/demo: an embedded broker)",
        )
        p.add_argument(
            "--redis",
            help="Redis URL (default: KPISTREAM_REDIS, else "
            f"{_setting_default('redis')}; up/demo: an embedded redis-server)",
        )
        p.set_defaults(func=func)
        return p

    p = command("up", cmd_up, "start broker, Redis (embedded unless configured), worker, exporter")
    p.add_argument("--metrics-port", type=int, help="exporter port (default: a free one)")
    p.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: at Ctrl-C)"
    )
    p = command("demo", cmd_demo, "like `up`, plus simulated traffic and a live KPI table")
    p.add_argument("--metrics-port", type=int, help="exporter port (default: a free one)")
    p.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: at Ctrl-C)"
    )
    p.add_argument("--rate", type=float, default=20.0, help="new sessions per second")
    p.add_argument("--window", help="window the live table shows (default: the shortest)")
    p = sub.add_parser(
        "down",
        help="stop a running `up`/`demo` stack (the newest; --all for every one)",
        description="stop a running `up`/`demo` stack, as Ctrl-C in its terminal would",
    )
    p.add_argument("--all", action="store_true", help="every running stack (default: newest)")
    p.add_argument(
        "--timeout",
        type=float,
        default=DOWN_TIMEOUT_S,
        help="seconds to wait before killing what is left (default: %(default)s)",
    )
    p.set_defaults(func=cmd_down)
    p = command("worker", cmd_worker, "run a stream worker (faust app)")
    p.add_argument("--loglevel", default="info", help="log level of the worker's log")
    p = command("exporter", cmd_exporter, "serve the KPIs from Redis on /metrics")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, help="port (env KPISTREAM_METRICS_PORT, default 9464)")
    p = command("produce", cmd_produce, "send events from a JSON-lines file to their topics")
    p.add_argument("file")
    p = command("collector", cmd_collector, "serve the HTTP collector (trackers -> Kafka)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, help="port (env KPISTREAM_COLLECTOR_PORT, default 8787)")
    p = command("shop", cmd_shop, "serve the demo shop, instrumented (host picks the tracker)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8788, help="port to listen on")
    p.add_argument("--collector", default="http://127.0.0.1:8787", help="the collector's URL")
    p = command("forget", cmd_forget, "erase a customer-zone visitor's state (idempotent)")
    p.add_argument("--site", required=True, help="the site the visitor belongs to")
    p.add_argument("--visitor", required=True, help="the id the site sent (or the stored c-...)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a worker")
    p = command("labels", cmd_labels, "show the label budgets, or reset one")
    p.add_argument(
        "action", nargs="?", choices=["show", "reset"], default="show", help="what to do"
    )
    p.add_argument(
        "dimension", nargs="?", help="with reset: the dimension (site, campaign ...; default: none)"
    )
    p.add_argument("values", nargs="*", help="with reset: only these values (default: all)")
    deploy_cli.add_commands(sub)
    _with_defaults(root)
    return root


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kpistream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.command in ("up", "demo"):  # the terminal closing: stop the stack as on SIGTERM
        signal.signal(signal.SIGHUP, lambda *_: sys.exit(0))
    try:
        code: int = args.func(args)
        return code
    except (SettingsError, runtime.UserError) as exc:
        console.print(f"kpistream: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130
