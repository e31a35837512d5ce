"""The steps of one partition batch, in the order :class:`BatchConsumer` runs them:

1. **decode** the records (msgspec; a rejection instead of an event for bad input),
2. **forward** the events another partition owns to it (:mod:`kpistream.contract.routing`),
3. **enrich**: admit the batch's label values and load the visitors it needs,
4. **fold** the events into one delta (the partition's processor),
5. **dead-letter** the rejections, with their reasons,
6. **commit** the delta and the next offset in one atomic step of the store.

Forwarded events and dead letters are acknowledged by Kafka before the commit moves the
offset past them. Service health (batch time, skipped offsets) travels in ``delta.health``,
apart from the KPI counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import FORWARDED_HEADER, REROUTED, is_forwarded, misplaced
from kpistream.contract.store import Enrichment, PartitionStore
from kpistream.kpis import fields
from kpistream.schemas.decoder import EventDecoder, Rejection
from kpistream.streams.admission import LabelAdmission, Pending
from kpistream.streams.deadletter import Redactor
from kpistream.streams.logic import StreamLogic, valid
from kpistream.streams.ownership import Owned

log = logging.getLogger(__name__)

Records = Sequence[ConsumerRecord[bytes, bytes]]


def decode(decoder: EventDecoder[Any], records: Records, now_ms: int) -> list[Any]:
    """Each record's event, or the reason it is not one."""
    return decoder.decode_batch([r.value for r in records], clock_ms=lambda: now_ms)


class Forward:
    """Sends a batch's events that another partition owns to their owner, in offset order,
    and marks them re-routed in the decoded batch."""

    def __init__(self, producer: AIOKafkaProducer, ownership_key: Callable[[Any], str]) -> None:
        self.producer = producer
        self.ownership_key = ownership_key

    async def __call__(
        self, tp: TopicPartition, partitions: int, records: Records, decoded: list[Any]
    ) -> list[Awaitable[Any]]:
        if partitions < 2:
            return []
        moved = misplaced(
            decoded,
            [is_forwarded(r.headers) for r in records],
            partition=tp.partition,
            partitions=partitions,
            key=self.ownership_key,
        )
        sends: list[Awaitable[Any]] = []
        for index, target in moved:  # in offset order, so the owner sees them in that order
            record = records[index]
            origin = f"{tp.topic}/{tp.partition}/{record.offset}".encode()
            sends.append(
                await self.producer.send(
                    tp.topic,
                    record.value,
                    key=record.key,
                    partition=target,
                    headers=[(FORWARDED_HEADER, origin)],
                )
            )
            decoded[index] = REROUTED
        return sends


class Enrich:
    """What folding a batch needs from the store, in one round trip: its label values
    admitted (each dimension's admission atomic on its own) and its visitors loaded."""

    def __init__(
        self,
        logic: StreamLogic,
        admission: LabelAdmission,
        store: PartitionStore,
        clock_ms: Callable[[], int],
    ) -> None:
        self.logic = logic
        self.admission = admission
        self.store = store
        self.clock_ms = clock_ms

    async def __call__(self, owned: Owned, events: list[Any]) -> None:
        needed = owned.processor.needs(events)
        values = self.logic.dimension_values(events)
        async with self.admission.lock:  # no other admission between asking and learning
            asked = self.admission.pending(values)
            if asked:
                found = await self._fetch(owned, asked, needed)
                self.admission.learn(asked, found.admissions)
        if not asked:
            if not needed:
                return
            found = await self._fetch(owned, [], needed)
        owned.processor.fill(found.visitors)

    async def _fetch(self, owned: Owned, asked: list[Pending], needed: list[Any]) -> Enrichment:
        return await self.store.enrich(
            owned.keys,
            [pending.request for pending in asked],
            needed,
            now_ms=self.clock_ms(),
            idle_ms=self.admission.idle_ms,
        )


def fold(owned: Owned, decoded: list[Any], now_ms: int) -> BatchDelta:
    """The partition's processor folds the batch into one delta."""
    return owned.processor.process(decoded, now_ms=now_ms)


class DeadLetters:
    """Sends each rejected record, redacted, with its reason, to the dead-letter topic."""

    def __init__(self, producer: AIOKafkaProducer, redact: Redactor, topic: str) -> None:
        self.producer = producer
        self.redact = redact
        self.topic = topic

    async def __call__(
        self, tp: TopicPartition, records: Records, decoded: list[Any], delta: BatchDelta
    ) -> list[Awaitable[Any]]:
        rejected = [(i, item) for i, item in enumerate(decoded) if item.__class__ is Rejection]
        sends: list[Awaitable[Any]] = []
        for index, rejection in [*rejected, *delta.rejections]:
            record = records[index]
            payload = self.redact.dead_letter(
                rejection,
                value=record.value,
                topic=tp.topic,
                partition=tp.partition,
                offset=record.offset,
            )
            sends.append(await self.producer.send(self.topic, payload))
        return sends


def batch_health(elapsed_s: float, skipped: int) -> Counter[str]:
    """The batch-time histogram's increments, and the offsets skipped before the batch."""
    health: Counter[str] = Counter()
    for le in H.BATCH_BUCKETS_S:
        if elapsed_s <= le:
            health[fields.field(H.BATCH_BUCKET, repr(le))] += 1
    health[H.BATCH_SUM_US] += int(elapsed_s * 1_000_000)
    health[H.BATCH_COUNT] += 1
    if skipped:
        health[H.SKIPPED] += skipped
    return health


class Commit:
    """The atomic step: the delta and the next offset into the store, fenced by the epoch
    and checked against the stored offset; then the partition's own position moves."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store

    async def __call__(
        self,
        owned: Owned,
        delta: BatchDelta,
        next_offset: int,
        *,
        first_offset: int | None = None,
        skipped: int = 0,
    ) -> None:
        await self.store.commit(
            owned.keys,
            epoch=owned.epoch,
            expected_offset=owned.next_offset,
            next_offset=next_offset,
            delta=delta,
            first_offset=first_offset,
            skipped=skipped,
        )
        owned.next_offset = next_offset
        if owned.stalled_offset is not None and next_offset > owned.stalled_offset:
            log.info("partition %s flows again from offset %d", owned.keys.tag, next_offset)
            owned.stalled_offset = None
        owned.processor.committed()


class Pipeline:
    """A partition batch's steps, in order. ``commit`` is the atomic step; a fault test may
    wrap it (tests/faults/faulty_worker.py)."""

    def __init__(
        self,
        logic: StreamLogic,
        store: PartitionStore,
        producer: AIOKafkaProducer,
        admission: LabelAdmission,
        redact: Redactor,
        deadletter_topic: str,
        clock_ms: Callable[[], int],
    ) -> None:
        self.decoder = logic.decoder
        self.clock_ms = clock_ms
        self.forward = Forward(producer, logic.ownership_key)
        self.enrich = Enrich(logic, admission, store, clock_ms)
        self.dead_letters = DeadLetters(producer, redact, deadletter_topic)
        self.commit = Commit(store)

    async def __call__(
        self,
        tp: TopicPartition,
        partitions: int,
        owned: Owned,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        skipped: int = 0,
    ) -> None:
        """Run the steps on one batch of a partition of ``partitions``."""
        started = time.perf_counter()
        now_ms = self.clock_ms()
        decoded = decode(self.decoder, records, now_ms)
        sends = await self.forward(tp, partitions, records, decoded)
        await self.enrich(owned, valid(decoded))
        delta = fold(owned, decoded, now_ms)
        sends += await self.dead_letters(tp, records, decoded, delta)
        if sends:  # forwarded and dead-lettered before the offset moves past them
            await asyncio.gather(*sends)
        delta.health.update(batch_health(time.perf_counter() - started, skipped))
        await self.commit(
            owned, delta, records[-1].offset + 1, first_offset=records[0].offset, skipped=skipped
        )
