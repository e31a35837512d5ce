"""A real collector (uvicorn + the Starlette app) on a free loopback port, in this loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import uvicorn

from kpistream.collector.routes import create_app, server_options
from kpistream.config.settings import Settings
from kpistream.runtime import ensure_topics, free_port
from tests.support.waits import read_records, wait_until

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
#: A documentation address (RFC 5737) as the visitor's: it must never be stored.
VISITOR_IP = "203.0.113.77"
#: The customer-zone key of the collector tests.
SECRET = "a-test-secret-of-32-bytes-length"


def headers(ua: str = CHROME, **extra: str) -> dict[str, str]:
    """A browser's request headers, from the visitor's address behind a trusted proxy."""
    return {"User-Agent": ua, "X-Forwarded-For": VISITOR_IP, "Content-Type": "text/plain", **extra}


@contextlib.asynccontextmanager
async def serving(app: Any, what: str, **options: Any) -> AsyncIterator[int]:
    """``app`` on uvicorn on a free loopback port, in this loop; yields the port once it
    listens, and stops the server at exit."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", loop="none", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        assert not task.done(), f"the {what} did not start: {task.exception()!r}"
        return bool(server.started)

    await wait_until(f"the {what} starts", started, timeout_s=30)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def running_collector(settings: Settings, app: Any = None) -> AsyncIterator[str]:
    """Yields the collector's base URL once it answers; stops it at exit."""
    await ensure_topics(settings)
    app = app or create_app(settings)
    async with serving(app, "collector", lifespan="on", **server_options(app)) as port:
        yield f"http://127.0.0.1:{port}"


async def read_topic(
    settings: Settings, expected: int, *, timeout_s: float = 30
) -> list[tuple[int, bytes, dict[str, Any]]]:
    """(partition, key, decoded value) of the clickstream topic's records (see
    :func:`tests.support.waits.read_records`)."""
    records = await read_records(
        settings, settings.clickstream_topic, expected, timeout_s=timeout_s
    )
    return [(r.partition, r.key, msgspec.json.decode(r.value)) for r in records]
