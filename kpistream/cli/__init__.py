"""The ``kpistream`` command, one module per command group: the stack (up, demo, down),
the services (worker, exporter, collector, shop), data in (produce), administration
(labels, forget) and deployment (goals, rules, dashboards)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from kpistream import runtime
from kpistream.cli import deploy
from kpistream.cli.admin import cmd_forget, cmd_labels
from kpistream.cli.common import cli_version, console, setting_default, with_defaults
from kpistream.cli.data_in import cmd_produce
from kpistream.cli.services import cmd_collector, cmd_exporter, cmd_shop, cmd_worker
from kpistream.cli.stack import DOWN_TIMEOUT_S, cmd_demo, cmd_down, cmd_up
from kpistream.config.settings import HELP, SettingsError, env_name

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    epilog = "settings (environment):\n" + "\n".join(
        f"  {env_name(name):32} {text} (default: {setting_default(name)})"
        for name, text in HELP.items()
    )
    root = argparse.ArgumentParser(
        prog="kpistream",
        description="Real-time marketing KPIs: Kafka -> Redis -> Prometheus",
        epilog=epilog,
    )
    root.add_argument("--version", action="version", version=f"kpistream {cli_version()}")
    sub = root.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "--kafka",
            help="Kafka bootstrap servers (default: KPISTREAM_KAFKA, else "
            f"{setting_default('kafka')}; up/demo: an embedded broker)",
        )
        p.add_argument(
            "--redis",
            help="Redis URL (default: KPISTREAM_REDIS, else "
            f"{setting_default('redis')}; up/demo: an embedded redis-server)",
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
    deploy.add_commands(sub)
    with_defaults(root)
    return root


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
