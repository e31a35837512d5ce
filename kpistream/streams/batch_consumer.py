"""The hot path: an aiokafka batch consumer inside the faust app, the loop and nothing else.

faust's per-message stream machinery tops out near 7,000 events/s on a 2-core machine (the
raw batch path reaches 200,000 and more), so a stream is consumed in batches straight from
aiokafka: fetch up to ``batch_max_records``, run each partition's batch through the steps of
:mod:`kpistream.streams.steps` (decode, forward, enrich, fold, dead-letter, one atomic
commit of delta and next offset). One partition's batches never run concurrently and its
offset only moves after its batch is in the store.

The loop's collaborators, each in its module of ``kpistream.streams``: ``ownership`` (claim,
fence, seek: position and ownership live in the store), ``gaps``, ``stalls`` (unreadable
batches), ``live_view``, ``idle`` (watermarks), ``offset_hint``, ``memory``, ``retry``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from kpistream.config.connections import AsyncRedis, async_redis_client
from kpistream.config.settings import Settings
from kpistream.contract.store import PartitionStore, StoreFactory
from kpistream.streams import clients, gaps, steps
from kpistream.streams.admission import LabelAdmission
from kpistream.streams.clickstream import ClickstreamLogic
from kpistream.streams.deadletter import Redactor
from kpistream.streams.idle import IdleWatermark
from kpistream.streams.live_view import LiveView
from kpistream.streams.logic import StreamLogic
from kpistream.streams.memory import Reclaimer
from kpistream.streams.offset_hint import OffsetHint
from kpistream.streams.ownership import Owned, Ownership, recovery
from kpistream.streams.retry import Backoff, pause
from kpistream.streams.stalls import UNREADABLE, Stalls

log = logging.getLogger(__name__)


class BatchConsumer:
    """Consume the clickstream topic in batches and keep the Redis window store current."""

    def __init__(
        self,
        settings: Settings,
        logic: StreamLogic | None = None,
        *,
        store: StoreFactory,
        group_id: str | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        client_id: str = "kpistream-worker",
    ) -> None:
        self.settings = settings
        self.logic: StreamLogic = logic or ClickstreamLogic(settings)
        self.group_id = group_id or settings.consumer_group
        self.clock_ms = clock_ms
        self.client_id = client_id
        self.topic = self.logic.topic
        #: Unexpected errors the loop survived; tests fail when it is not empty.
        self.errors: list[BaseException] = []
        self.redis: AsyncRedis | None = None
        self.open_store = store
        self.store: PartitionStore | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._failures: dict[TopicPartition, Backoff] = {}
        self._ownership: Ownership | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._live_task: asyncio.Task[None] | None = None
        self.reclaimer = Reclaimer()
        #: The batch's steps (see :mod:`kpistream.streams.steps`), built at start.
        self.pipeline: steps.Pipeline | None = None
        #: The loop's collaborators, built at start.
        self.stalls: Stalls | None = None
        self.idle = IdleWatermark(settings, clock_ms)
        self.hint: OffsetHint | None = None

    @property
    def owned(self) -> dict[TopicPartition, Owned]:
        """The partitions this worker owns now (see :mod:`kpistream.streams.ownership`)."""
        return self._ownership.owned if self._ownership is not None else {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self.redis = async_redis_client(s)
        self.store = self.open_store(self.redis, s)
        self.producer = clients.producer(s, f"{self.client_id}-dlq")
        await self.producer.start()
        self.consumer = clients.batch_consumer(s, self.group_id, self.client_id)
        admission = LabelAdmission(s, self.logic, self.store, self.clock_ms)
        self._ownership = Ownership(
            s, self.logic, self.store, self.consumer, admission, self._stopping
        )
        self.pipeline = steps.Pipeline(
            self.logic,
            self.store,
            self.producer,
            admission,
            Redactor.from_settings(s),
            s.deadletter_topic,
            self.clock_ms,
        )
        self.stalls = Stalls(self.consumer)
        self.hint = OffsetHint(self.consumer)
        live = LiveView(self.consumer, self.store, lambda: self.owned, self.clock_ms, self.errors)
        self.consumer.subscribe([self.topic], listener=clients.Rebalance(self.assign, self.revoke))
        await self.consumer.start()
        self._live_task = asyncio.create_task(live.run(self._stopping))

    async def stop(self) -> None:
        self._stopping.set()
        if self._live_task is not None:
            await self._live_task
        async with self._lock:  # let the batch in flight finish its atomic step
            await self._commit_hint(force=True)
            # Holding the lock, run() is at most waiting in getmany(), which ignores its
            # timeout while a rebalance is in progress: end that wait instead of hanging.
            if self._run_task is not None and self._run_task is not asyncio.current_task():
                self._run_task.cancel()
        if self.consumer is not None:
            await self.consumer.stop()  # calls revoke(), which takes the lock itself
        if self.producer is not None:
            await self.producer.stop()
        if self.redis is not None:
            await self.redis.aclose()

    async def run(self) -> None:
        self._run_task = asyncio.current_task()
        try:
            await self._loop(Backoff())
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
            # stop() ended a getmany() that was waiting for a rebalance: a clean end.

    async def _loop(self, backoff: Backoff) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll_once(timeout_ms=200)
                backoff.reset()
                continue
            except KafkaError as exc:  # the broker went away: aiokafka reconnects, we wait
                delay = backoff.next()
                log.warning("Kafka at %s: %s; retrying in %.1fs", self.settings.kafka, exc, delay)
            except Exception as exc:  # a bug must not end the stream; tests fail on self.errors
                delay = backoff.next()
                log.exception("consume loop failed; retrying in %.1fs", delay)
                self.errors.append(exc)
            await pause(delay, self._stopping)

    async def poll_once(self, *, timeout_ms: int) -> int:
        """Fetch one batch and apply it; returns the number of records handled."""
        assert self.consumer is not None
        owners_at_fetch = dict(self.owned)
        try:
            batches = await self.consumer.getmany(
                timeout_ms=timeout_ms, max_records=self.settings.batch_max_records
            )
        except UNREADABLE:
            assert self.stalls is not None
            handled = await self.stalls.isolate(
                lambda: self.owned,
                seek=self._seek,
                handle=self._handle,
                locked=lambda: self._lock,
                max_records=self.settings.batch_max_records,
            )
        else:
            async with self._lock:
                # The partitions' batches run side by side: one's Redis and Kafka round trips
                # overlap another's folding (each partition's batches stay in order: the
                # next fetch waits for all of them).
                done = await asyncio.gather(
                    *(
                        self._handle(tp, records, owners_at_fetch.get(tp))
                        for tp, records in batches.items()
                    ),
                    return_exceptions=True,
                )
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
            handled = sum(n for n in done if isinstance(n, int))
        async with self._lock:
            await self._advance_idle()
            assert self.stalls is not None
            self.stalls.retry(self.owned)
            await self._commit_hint()
        owned = list(self.owned.values())
        if self.reclaimer.observe(sum(o.processor.held() for o in owned)):
            async with self._lock:
                for o in owned:
                    o.processor.compact()
            self.reclaimer.trim()
        return handled

    # -- partitions --------------------------------------------------------------------------

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        async with self._lock:
            for tp in partitions:
                await self._claim(tp)

    async def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        async with self._lock:
            await self._commit_hint(force=True)
            for tp in partitions:
                self.owned.pop(tp, None)

    async def _claim(self, tp: TopicPartition) -> None:
        assert self._ownership is not None
        await self._ownership.claim(tp)

    async def _seek(self, tp: TopicPartition, offset: int | None) -> None:
        assert self._ownership is not None
        await self._ownership.seek(tp, offset)

    # -- the batch ---------------------------------------------------------------------------

    async def _handle(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        fetched_by: Owned | None,
    ) -> int:
        owned = self.owned.get(tp)
        if owned is None:
            return 0
        if owned is not fetched_by:
            # The partition was (re)claimed while this batch was in flight: its records may
            # not start at the claimed offset. Drop them and fetch again from there.
            await self._seek(tp, owned.next_offset)
            return 0
        verdict = gaps.check(records, owned.next_offset, owned.gap_seen, owned.keys.tag)
        if verdict.reread is not None:
            owned.gap_seen = verdict.reread
            await self._seek(tp, owned.next_offset)
            return 0
        if not verdict.records:
            return 0
        assert self.consumer is not None and self.pipeline is not None
        partitions = len(self.consumer.partitions_for_topic(tp.topic) or ())
        try:
            await self.pipeline(tp, partitions, owned, verdict.records, verdict.skipped)
        except Exception as exc:
            if not await self._recover(tp, owned, exc):
                await self._failed(tp, owned, exc)
            return 0
        owned.gap_seen = None
        owned.last_records_s = time.monotonic()
        self._failures.pop(tp, None)
        return len(verdict.records)

    async def _failed(self, tp: TopicPartition, owned: Owned, exc: Exception) -> None:
        """A batch failed for a reason nothing here expects (a bug): its partition is
        claimed again (its state reloaded from the store) after a growing wait. A bug must
        not kill the worker; tests fail on ``self.errors``."""
        delay = self._failures.setdefault(tp, Backoff()).next()
        log.exception(
            "partition %s: batch failed; reloading its state in %.1fs", owned.keys.tag, delay
        )
        self.errors.append(exc)
        if not await pause(delay, self._stopping):
            await self._claim(tp)

    async def _recover(self, tp: TopicPartition, owned: Owned, exc: Exception) -> bool:
        """React to a commit the store refused or could not take; False for anything else."""
        reaction = recovery(exc, owned.keys.tag)
        if reaction == "fence":
            assert self._ownership is not None
            await self._ownership.fence(tp)
        elif reaction == "claim":
            await self._claim(tp)
        return reaction is not None

    async def _advance_idle(self) -> None:
        """Commit what the idle partitions' moved watermarks decided
        (:mod:`kpistream.streams.idle`)."""
        assert self.consumer is not None and self.pipeline is not None
        for tp, owned, delta in self.idle.advance(self.owned, self.consumer.highwater):
            assert owned.next_offset is not None  # an idle partition has read something
            try:
                await self.pipeline.commit(owned, delta, owned.next_offset)
            except Exception as exc:
                if not await self._recover(tp, owned, exc):
                    raise

    async def _commit_hint(self, *, force: bool = False) -> None:
        if self.hint is not None:
            await self.hint.commit(self.owned, force=force)
