"""Administration: label budgets and erasure."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rich.console import Console

from kpistream import runtime
from kpistream.cli.common import about_to_change, console, discovered


def cmd_labels(args: argparse.Namespace) -> int:
    """Show each label budget, or reset one (all its values, or the values named)."""
    from kpistream.config.connections import redis_client
    from kpistream.contract.keys import label_keys
    from kpistream.sinks.store_reader import WindowReader
    from kpistream.streams import labels

    settings = discovered(args)
    runtime.check_redis(settings.redis)
    client = redis_client(settings, decode_responses=True)
    budgets = settings.label_budgets()
    if args.action == "reset":
        if not args.dimension or args.dimension not in budgets:
            raise runtime.UserError(
                f"labels reset: name a budgeted dimension, one of {', '.join(budgets)}"
            )
        members, refused = label_keys(settings.redis_prefix, args.dimension)
        about_to_change("labels reset", settings, kafka=False, redis=True)
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


def cmd_forget(args: argparse.Namespace) -> int:
    from kpistream.forget import forget, stored_id

    settings = discovered(args)
    try:
        visitor = stored_id(settings, args.site, args.visitor)
    except ValueError as exc:
        raise runtime.UserError(str(exc)) from None
    about_to_change("forget", settings, kafka=True, redis=True)
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
