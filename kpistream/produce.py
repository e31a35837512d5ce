"""Send events to Kafka: JSON lines from a file, or the simulator's output.

Each event goes to the clickstream or social topic by its ``type``, keyed by ``visitor_id``
(clickstream) or ``account`` (social), straight to the partition that owns it
(:func:`kpistream.contract.routing.owner`), so workers never need to forward it. A line that is
not valid JSON is still sent, to the clickstream topic, where the worker dead-letters it with a
reason: nothing is lost on the way in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from kpistream.config.connections import kafka_options
from kpistream.config.settings import Settings
from kpistream.contract.routing import owner, ownership_key
from kpistream.schemas.events import SOCIAL_TYPES, type_name

SOCIAL = frozenset(type_name(t) for t in SOCIAL_TYPES)
_route_decoder = msgspec.json.Decoder()


def route(line: bytes, settings: Settings) -> tuple[str, bytes | None, str | None]:
    """(topic, key, ownership key) of one raw event line; the ownership key is None when
    the line has no usable one (the worker will dead-letter it)."""
    try:
        event: Any = _route_decoder.decode(line.removeprefix(b"\xef\xbb\xbf"))
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return settings.clickstream_topic, None, None
    if not isinstance(event, dict):
        return settings.clickstream_topic, None, None
    if event.get("type") in SOCIAL:
        topic, owner_of, key = settings.social_topic, event.get("network"), event.get("account")
    else:
        topic, owner_of, key = (
            settings.clickstream_topic,
            event.get("site"),
            event.get("visitor_id"),
        )
    if not isinstance(key, str) or not isinstance(owner_of, str):
        return topic, None if key is None else str(key).encode(), None
    return topic, key.encode(), ownership_key(owner_of, key)


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
        **kafka_options(settings),
        linger_ms=10,
        acks="all",
        max_request_size=8 * 1024 * 1024,  # so a test can send a 5 MB poison message
    )
    await producer.start()
    counts: dict[str, int] = {}
    try:
        pending = []

        partitions: dict[str, int] = {}

        async def send(line: bytes) -> None:
            topic, key, owned_by = route(line, settings)
            if topic not in partitions:
                partitions[topic] = len(await producer.partitions_for(topic))
            partition = None if owned_by is None else owner(owned_by, partitions[topic])
            pending.append(await producer.send(topic, line, key=key, partition=partition))
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
