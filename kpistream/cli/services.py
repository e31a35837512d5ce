"""The long-running services: worker, exporter, collector and the demo shop."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import msgspec

from kpistream import runtime
from kpistream.cli.common import settings_of, wait_for_servers

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
    settings = settings_of(args)
    _reexec_with_allocator()
    wait_for_servers(settings)
    from kpistream.worker import Worker, create_app

    app = create_app(settings)
    worker = Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


#: First retry soon; then back off to one attempt (and one log line) every 10 s.
def cmd_exporter(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    port = args.port or settings.metrics_port
    runtime.check_port(args.host, port, "the exporter", "KPISTREAM_METRICS_PORT / --port")
    runtime.check_redis(settings.redis)
    from kpistream.sinks.exporter import run_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_forever(settings, host=args.host, port=args.port)
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.port:
        settings = msgspec.structs.replace(settings, collector_port=args.port)
    runtime.check_port(
        args.host, settings.collector_port, "the collector", "KPISTREAM_COLLECTOR_PORT / --port"
    )
    wait_for_servers(settings)
    import uvicorn

    from kpistream.collector.routes import create_app, server_options

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
