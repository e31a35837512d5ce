"""Events to Kafka, acknowledged before the request is answered, with a bounded backlog.

A request's events are handed to aiokafka's producer, each to the partition that owns its
visitor (:func:`kpistream.contract.routing.owner`), and the request waits for Kafka's
acknowledgement (``acks=all``: every in-sync replica has it) for at most
``KPISTREAM_COLLECTOR_ACK_TIMEOUT_S``.
Events handed over and not yet acknowledged are the backlog; it never exceeds
``KPISTREAM_COLLECTOR_QUEUE``: a request that would overflow it is answered 503 with
``Retry-After`` at once, and one whose acknowledgement does not come in time is answered 503
too (its events may still arrive; a retry carries the same ``event_id`` and the worker
deduplicates it). So nothing is dropped silently and nothing grows without bound.

Producer tuning: ``linger_ms=5`` lets concurrent requests share one produce request (a
tracker event is ~300 bytes; one request per event would cost the broker more than the
event), ``compression_type="lz4"`` (the cheapest codec per byte on the collector's core;
every codec is read by the workers), ``max_batch_size=256 KiB``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from kpistream.config.connections import kafka_options
from kpistream.config.settings import Settings
from kpistream.contract.routing import owner, ownership_key


class Backlogged(Exception):
    """The backlog is full, or Kafka did not acknowledge in time: answer 503."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class Sender:
    def __init__(self, settings: Settings, *, observe: Any = None) -> None:
        self.settings = settings
        self.topic = settings.clickstream_topic
        self.capacity = settings.collector_queue
        self.timeout_s = settings.collector_ack_timeout_s
        self.backlog = 0
        self.partitions = 0
        self.observe = observe  # called with each acknowledged send's latency in seconds
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            **kafka_options(self.settings),
            acks="all",
            linger_ms=5,
            compression_type="lz4",
            max_batch_size=256 * 1024,
            request_timeout_ms=max(10_000, int(self.timeout_s * 2000)),
        )
        await producer.start()
        try:
            self.partitions = len(await producer.partitions_for(self.topic))
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    @property
    def ready(self) -> bool:
        return self.producer is not None

    async def send(self, events: Sequence[tuple[str, str, bytes]]) -> None:
        """Send ``(site, visitor_id, value)`` events; returns once Kafka has them all."""
        if not events:
            return
        producer = self.producer
        if producer is None:
            raise Backlogged("kafka_unavailable", 5)
        if self.backlog + len(events) > self.capacity:
            raise Backlogged("queue_full", 1)
        self.backlog += len(events)
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        handed = 0

        def settled(_: object) -> None:
            self.backlog -= 1

        try:
            async with asyncio.timeout(self.timeout_s):
                for site, visitor_id, value in events:
                    partition = owner(ownership_key(site, visitor_id), self.partitions)
                    future = await producer.send(
                        self.topic, value, key=visitor_id.encode(), partition=partition
                    )
                    handed += 1
                    future.add_done_callback(settled)
                    futures.append(future)
                await asyncio.gather(*futures)
        except TimeoutError:
            raise Backlogged("kafka_timeout", 5) from None
        finally:
            self.backlog -= len(events) - handed  # never handed over: not in the backlog
        if self.observe is not None:
            self.observe(time.perf_counter() - started)
