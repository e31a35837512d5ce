"""``kpistream forget``: erase one customer-zone visitor everywhere its state lives.

The erasure travels as a ``forget`` event to the partition that owns the visitor, so it is
carried out in order with that visitor's events by the one worker that holds them: its open
sessions (with their dedupe ids) are ended and deleted and its visitor record is deleted, in
memory and in Redis, in the same atomic step as the partition's offset. Replaying the topic
replays the erasure too. Aggregates (counters, HyperLogLogs) hold no personal data and stay.
Running it again finds nothing and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaProducer

from kpistream.collector.privacy import customer_id
from kpistream.config.connections import async_redis_client, kafka_options
from kpistream.config.settings import Settings
from kpistream.contract.routing import owner, ownership_key
from kpistream.sinks.window_store import WindowStore
from kpistream.streams.sessionizer import decode_key


@dataclass
class Erasure:
    partition: int
    offset: int
    applied: bool
    sessions_left: int
    record_left: bool


def stored_id(settings: Settings, site: str, visitor: str) -> str:
    """The id the pipeline holds for a customer-zone visitor (``c-...`` is taken as is)."""
    if visitor.startswith("c-"):
        return visitor
    if not settings.id_secret:
        raise ValueError(
            "KPISTREAM_ID_SECRET is needed to find a customer-zone visitor by its own id "
            "(or pass the stored id, c-...)"
        )
    return customer_id(settings.id_secret, site, visitor)


async def forget(settings: Settings, site: str, visitor_id: str, *, wait_s: float) -> Erasure:
    now_ms = int(time.time() * 1000)
    event = {
        "type": "forget",
        "event_id": uuid.uuid4().hex,
        "ts": now_ms,
        "site": site,
        "visitor_id": visitor_id,
    }
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
    await producer.start()
    try:
        topic = settings.clickstream_topic
        n = len(await producer.partitions_for(topic))
        partition = owner(ownership_key(site, visitor_id), n)
        meta = await producer.send_and_wait(
            topic, msgspec.json.encode(event), key=visitor_id.encode(), partition=partition
        )
    finally:
        await producer.stop()
    client = async_redis_client(settings)
    store = WindowStore.from_settings(client, settings)
    keys = store.keys(settings.clickstream_topic, partition)
    try:
        deadline = time.monotonic() + wait_s
        applied = False
        while True:
            stored = await store.stored_offset(keys)
            if stored is not None and stored > meta.offset:
                applied = True
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        left = [k for k in await store.state_keys(keys) if decode_key(k)[:2] == (site, visitor_id)]
        record = await store.has_visitor(keys, (site, visitor_id))
    finally:
        await client.aclose()
    return Erasure(partition, meta.offset, applied, len(left), record)
