"""Data in: ``kpistream produce``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from kpistream import runtime
from kpistream.cli.common import about_to_change, console, discovered


def cmd_produce(args: argparse.Namespace) -> int:
    settings = discovered(args)
    path = Path(args.file)
    if not path.is_file():
        raise runtime.UserError(f"no such file: {path}")
    from kpistream.produce import Tally, produce
    from kpistream.sources.files import JsonLines

    about_to_change("produce", settings, kafka=True, redis=False)
    asyncio.run(runtime.ensure_topics(settings))
    tally = Tally(settings)
    counts = asyncio.run(produce(settings, JsonLines(path).lines(), tally=tally))
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
