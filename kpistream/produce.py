"""Send events to Kafka: the lines of a source (:mod:`kpistream.sources`).

Each event goes to the topic of its stream by its ``type`` (:mod:`kpistream.streams.registry`:
clickstream or social), keyed by the stream's routing key (``visitor_id``, ``account``),
straight to the partition that owns it (:func:`kpistream.contract.routing.owner`), so workers
never need to forward it. A line that is not valid JSON is still sent, to the clickstream
topic, where the worker dead-letters it with a reason: nothing is lost on the way in.
"""

from __future__ import annotations

import operator
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from kpistream.config.connections import kafka_options
from kpistream.config.settings import Settings
from kpistream.contract.routing import owner, ownership_key
from kpistream.schemas.decoder import Rejection
from kpistream.streams.registry import FALLBACK, STREAMS, Stream, stream_of

_route_decoder = msgspec.json.Decoder()
#: The fields routing reads (each stream's ``routed_by`` and ``type``); the decoder skips
#: the others, unparsed.
_ROUTED = sorted({name for stream in STREAMS for name in stream.routed_by})
_Routing = msgspec.defstruct(
    "_Routing", [("type", str | None, None), *((name, str | None, None) for name in _ROUTED)]
)
_routing_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_Routing)


Routed = tuple[str, bytes | None, str | None]


def route(line: bytes, settings: Settings) -> Routed:
    """(topic, key, ownership key) of one raw event line, by the stream its ``type`` names
    (:mod:`kpistream.streams.registry`); the ownership key is None when the line has no
    usable one (the worker will dead-letter it)."""
    if not _routers or _routers[0][0] is not settings:
        _routers[:] = [(settings, router(settings))]
    return _routers[0][1](line)


#: The router of the last settings seen, kept by identity: callers that route line by line
#: (the benchmarks' producers) would otherwise build one per line.
_routers: list[tuple[Settings, Callable[[bytes], Routed]]] = []


def router(settings: Settings) -> Callable[[bytes], Routed]:
    """:func:`route` for these settings, with each event type's topic and routing fields
    looked up once (it runs for every event ``produce`` sends)."""

    def of(stream: Stream) -> tuple[str, Callable[[Any], tuple[Any, Any]]]:
        return stream.topic(settings), operator.attrgetter(*stream.routed_by)

    routes = {t: of(s) for s in STREAMS for t in s.types}
    fallback = of(FALLBACK)
    decode = _routing_decoder.decode
    bom = b"\xef\xbb\xbf"

    def route_line(line: bytes) -> Routed:
        line = line.removeprefix(bom)
        try:
            fast = decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            return _route_slowly(line, settings)
        topic, fields = routes.get(fast.type, fallback)
        owner_of, key = fields(fast)
        if key is None or owner_of is None:  # the fast decoder let only text or None through
            return topic, None if key is None else key.encode(), None
        return topic, key.encode(), ownership_key(owner_of, key)

    return route_line


def _routed(topic: str, owner_of: object, key: object) -> tuple[str, bytes | None, str | None]:
    if not isinstance(key, str) or not isinstance(owner_of, str):
        return topic, None if key is None else str(key).encode(), None
    return topic, key.encode(), ownership_key(owner_of, key)


def _route_slowly(line: bytes, settings: Settings) -> tuple[str, bytes | None, str | None]:
    """:func:`route` for a line whose routing fields are not all text (or not JSON)."""
    try:
        event: Any = _route_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return FALLBACK.topic(settings), None, None
    if not isinstance(event, dict):
        return FALLBACK.topic(settings), None, None
    stream = stream_of(event.get("type"))
    owner_field, key_field = stream.routed_by
    return _routed(stream.topic(settings), event.get(owner_field), event.get(key_field))


#: Records per produce request are bounded by bytes: large batches, few requests.
BATCH_BYTES = 512 * 1024
#: Batches in flight before waiting for the broker's acknowledgements.
IN_FLIGHT = 64


class Tally:
    """What a file held, by the workers' own decoders: valid events, and the rest by reason.
    Every line is still sent (the workers dead-letter the invalid ones with their reason);
    the tally is what ``kpistream produce`` tells its user."""

    def __init__(self, settings: Settings) -> None:
        self.decoders = {
            stream.topic(settings): stream.logic(settings).decoder for stream in STREAMS
        }
        self.now_ms = int(time.time() * 1000)
        self.valid = 0
        self.rejected: Counter[str] = Counter()

    def see(self, line: bytes, topic: str) -> None:
        verdict = self.decoders[topic].decode(line, now_ms=self.now_ms)
        if isinstance(verdict, Rejection):
            self.rejected[verdict.reason] += 1
        else:
            self.valid += 1

    def summary(self) -> str:
        invalid = sum(self.rejected.values())
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.rejected.items()))
        line = f"{self.valid} valid, {invalid} invalid"
        if invalid:
            line += f" ({reasons}; the workers dead-letter them with their reason)"
        return line


async def produce(
    settings: Settings,
    lines: Iterable[bytes] | AsyncIterator[bytes],
    *,
    tally: Tally | None = None,
) -> dict[str, int]:
    """Send every line; returns how many went to each topic. Lines of a file are appended to
    one record batch per partition (the client's C batch builder) and sent a batch at a
    time, in order per partition; a line without an owner, or too large for a batch, goes
    alone."""
    producer = AIOKafkaProducer(
        **kafka_options(settings),
        linger_ms=10,
        acks="all",
        max_batch_size=BATCH_BYTES,
        max_request_size=8 * 1024 * 1024,  # so a test can send a 5 MB poison message
    )
    await producer.start()
    counts: dict[str, int] = {}
    partitions: dict[str, int] = {}
    builders: dict[tuple[str, int], Any] = {}
    pending: list[Any] = []

    async def wait(limit: int) -> None:
        if len(pending) > limit:
            for future in pending:
                await future
            pending.clear()

    async def flush(topic: str, partition: int) -> None:
        batch = builders.pop((topic, partition), None)
        if batch is not None and batch.record_count():
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            await wait(IN_FLIGHT)

    route_line = router(settings)

    async def send(line: bytes) -> None:
        topic, key, owned_by = route_line(line)
        counts[topic] = counts.get(topic, 0) + 1
        if tally is not None:
            tally.see(line, topic)
        if topic not in partitions:
            partitions[topic] = len(await producer.partitions_for(topic))
        if owned_by is None:  # no owner: the worker dead-letters it, in any partition
            pending.append(await producer.send(topic, line, key=key))
            return
        partition = owner(owned_by, partitions[topic])
        slot = (topic, partition)
        batch = builders.get(slot)
        if batch is None:
            batch = builders[slot] = producer.create_batch()
        if batch.append(key=key, value=line, timestamp=None) is not None:
            return
        await flush(topic, partition)  # full: send it, then try a fresh one
        batch = builders[slot] = producer.create_batch()
        if batch.append(key=key, value=line, timestamp=None) is None:
            # Larger than a batch: alone, after what came before it on the partition.
            del builders[slot]
            pending.append(await producer.send(topic, line, key=key, partition=partition))

    try:
        if isinstance(lines, AsyncIterator):
            # A live source: each line goes as it comes (the client's linger batches them),
            # none waits in a half-full batch for lines that may come much later.
            async for line in lines:
                topic, key, owned_by = route_line(line)
                counts[topic] = counts.get(topic, 0) + 1
                if topic not in partitions:
                    partitions[topic] = len(await producer.partitions_for(topic))
                partition = None if owned_by is None else owner(owned_by, partitions[topic])
                pending.append(await producer.send(topic, line, key=key, partition=partition))
                await wait(10_000)
        else:
            for line in lines:
                await send(line)
        for topic, partition in list(builders):
            await flush(topic, partition)
        await wait(0)
    finally:
        await producer.stop()
    return counts
