"""What every command shares: the console, settings and addresses, one line before a
write, waiting for the servers, help with defaults."""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import msgspec
from rich.console import Console

from kpistream import runtime
from kpistream.config.connections import redacted
from kpistream.config.settings import Settings, default_of, env_name, load

console = Console(stderr=True)


def settings_of(args: argparse.Namespace) -> Settings:
    return load(
        {
            "kafka": getattr(args, "kafka", None),
            "redis": getattr(args, "redis", None),
            "metrics_port": getattr(args, "metrics_port", None),
        }
    )


STARTUP_RETRY_FIRST_S = 0.5
STARTUP_RETRY_MAX_S = 10.0


def wait_for_servers(settings: Settings) -> None:
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


def discovered(args: argparse.Namespace) -> Settings:
    """Settings for a command that talks to a deployment: the broker and Redis given
    (``--kafka``/``--redis`` or their variables) always win; only when neither is given
    does the newest running ``kpistream up``/``demo`` stack stand in for both."""
    settings = settings_of(args)
    given = any(
        getattr(args, name, None) or os.environ.get(env_name(name)) for name in ("kafka", "redis")
    )
    stack = None if given else runtime.running_stack()
    if stack is not None:
        settings = msgspec.structs.replace(settings, kafka=stack.kafka, redis=stack.redis)
    return settings


def about_to_change(what: str, settings: Settings, *, kafka: bool, redis: bool) -> None:
    """One line before a command writes: which broker and Redis it is about to change."""
    where = []
    if kafka:
        where.append(f"Kafka {settings.kafka}")
    if redis:
        where.append(f"Redis {redacted(settings.redis)} (prefix {settings.redis_prefix})")
    console.print(
        f"kpistream: {what}: {' and '.join(where)}", markup=False, highlight=False, soft_wrap=True
    )


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


def with_defaults(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpWithDefaults
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                with_defaults(child)


def setting_default(name: str) -> str:
    value = default_of(name)
    return str(value) if value != "" else "empty"


def cli_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kpistream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
