"""Send events to Kafka: JSON lines from a file, or the simulator's output.

Each event goes to the clickstream or social topic by its ``type``, keyed by ``visitor_id``
(clickstream) or ``account`` (social) so a visitor's events stay in one partition, as
sessionization needs. A line that is not valid JSON is still sent, to the clickstream topic,
where the worker dead-letters it with a reason: nothing is lost on the way in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from kpistream.settings import Settings
from schemas.events import SOCIAL_TYPES, type_name

SOCIAL = frozenset(type_name(t) for t in SOCIAL_TYPES)
_route_decoder = msgspec.json.Decoder()


def route(line: bytes, settings: Settings) -> tuple[str, bytes | None]:
    """(topic, key) of one raw event line."""
    try:
        event: Any = _route_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return settings.clickstream_topic, None
    if not isinstance(event, dict):
        return settings.clickstream_topic, None
    if event.get("type") in SOCIAL:
        account = event.get("account")
        return settings.social_topic, str(account).encode() if account is not None else None
    visitor = event.get("visitor_id")
    return settings.clickstream_topic, str(visitor).encode() if visitor is not None else None


def file_lines(path: Path) -> Iterable[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            line = line.strip()
            if line:
                yield line


async def produce(
    settings: Settings, lines: Iterable[bytes] | AsyncIterator[bytes]
) -> dict[str, int]:
    """Send every line; returns how many went to each topic."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka,
        linger_ms=10,
        acks="all",
        max_request_size=8 * 1024 * 1024,  # so a test can send a 5 MB poison message
    )
    await producer.start()
    counts: dict[str, int] = {}
    try:
        pending = []

        async def send(line: bytes) -> None:
            topic, key = route(line, settings)
            pending.append(await producer.send(topic, line, key=key))
            counts[topic] = counts.get(topic, 0) + 1
            if len(pending) >= 10_000:
                for future in pending:
                    await future
                pending.clear()

        if isinstance(lines, AsyncIterator):
            async for line in lines:
                await send(line)
        else:
            for line in lines:
                await send(line)
        for future in pending:
            await future
    finally:
        await producer.stop()
    return counts


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
