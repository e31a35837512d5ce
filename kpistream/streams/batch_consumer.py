"""The clickstream hot path: an aiokafka batch consumer inside the faust app.

faust's per-message stream machinery tops out near 7,000 events/s on a 2-core machine
(against the embedded broker; the raw batch path reaches 200,000 and more), so the
clickstream is consumed in batches straight from aiokafka: fetch up to ``batch_max_records``,
decode with msgspec, fold into pre-aggregated deltas per partition, dead-letter the rejects,
then apply each partition's delta and next offset in one atomic Redis step (Lua). Partitions
are handled one after another in a single task, so one partition is never processed
concurrently and its offset only moves after its batch is in Redis.

Each partition batch goes through the steps of :mod:`kpistream.streams.steps` (decode,
forward, enrich, fold, dead-letter, commit); ownership (claim, fence, re-claim) is
:mod:`kpistream.streams.ownership`, label admission :mod:`kpistream.streams.admission`, and
every retry waits by :class:`kpistream.streams.retry.Backoff`; unreadable batches are
:mod:`kpistream.streams.stalls`, the live view :mod:`kpistream.streams.live_view`, idle
watermarks :mod:`kpistream.streams.idle`, Kafka's offset hint
:mod:`kpistream.streams.offset_hint`, memory :mod:`kpistream.streams.memory`. This module is
the loop that runs them, and the gap check of each batch.

Position and ownership live in Redis, not in Kafka: on assignment the worker bumps the
partition's epoch (fencing any previous owner) and seeks to the offset stored there. Kafka's
committed offset is written every few seconds as a hint for lag tools, and tells a Redis
that lost its data (no epoch, no offset, but Kafka remembers progress) from a new partition.

What the worker refuses to trust:

- **Gaps.** A batch must start at the stored offset. aiokafka drops what one ``getmany``
  drained of other partitions when a record batch of one partition cannot be read, though it
  moved their positions; so a batch that starts later is re-read from the stored offset, and
  a gap is accepted (and counted as skipped) only when the second read confirms the broker
  has nothing there (transaction markers, compaction, retention).
- **Unreadable batches.** A batch that cannot be read (a codec this install lacks, a corrupt
  batch) stalls only its own partition: each partition is read alone to find it, it is paused
  with a log line naming its offset and reported stalled, retried every
  ``STALL_RETRY_S``, and the rest flow.
- **Producers' partitioning.** An event on a partition that does not own it is forwarded
  to its owner before the batch commits (:mod:`kpistream.contract.routing`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from kpistream.config.connections import AsyncRedis, async_redis_client, kafka_options
from kpistream.config.settings import Settings
from kpistream.contract.store import (
    Fenced,
    OffsetMismatch,
    PartitionStore,
    StateLost,
    StoreFactory,
)
from kpistream.streams import steps
from kpistream.streams.admission import LabelAdmission
from kpistream.streams.clickstream import ClickstreamLogic
from kpistream.streams.deadletter import Redactor
from kpistream.streams.idle import IdleWatermark
from kpistream.streams.live_view import LiveView
from kpistream.streams.logic import StreamLogic, valid
from kpistream.streams.memory import Reclaimer
from kpistream.streams.offset_hint import OffsetHint
from kpistream.streams.ownership import REDIS_UNAVAILABLE, Owned, Ownership
from kpistream.streams.retry import Backoff, pause
from kpistream.streams.stalls import UNREADABLE, Stalls

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


#: How long the broker may hold a fetch that found nothing (aiokafka's default is 500 ms).
FETCH_MAX_WAIT_MS = 100


class BatchConsumer:
    """Consume the clickstream topic in batches and keep the Redis window store current."""

    def __init__(
        self,
        settings: Settings,
        logic: StreamLogic | None = None,
        *,
        store: StoreFactory,
        group_id: str | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        client_id: str = "kpistream-worker",
    ) -> None:
        self.settings = settings
        self.logic: StreamLogic = logic or ClickstreamLogic(settings)
        self.group_id = group_id or settings.consumer_group
        self.clock_ms = clock_ms
        self.client_id = client_id
        self.topic = self.logic.topic
        self.decoder = self.logic.decoder
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
        self.redact = Redactor.from_settings(settings)
        #: The batch's steps (see :mod:`kpistream.streams.steps`), built at start.
        self.admission: LabelAdmission | None = None
        self.forward: steps.Forward | None = None
        self.enrich: steps.Enrich | None = None
        self.dead_letters: steps.DeadLetters | None = None
        #: The atomic step; a fault test may wrap it (tests/faults/faulty_worker.py).
        self.commit: steps.Commit | None = None
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
        self.producer = AIOKafkaProducer(
            **kafka_options(s), client_id=f"{self.client_id}-dlq", linger_ms=5, acks="all"
        )
        await self.producer.start()
        rebalance_ms = s.rebalance_timeout_s * 1000
        self.consumer = AIOKafkaConsumer(
            **kafka_options(s),
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max_records,
            # A batch of max_poll_records small events is a few MB; let one fetch carry it.
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            # A broker that holds an empty fetch until the wait ends (not until data comes)
            # would add up to this much to every event's latency.
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            rebalance_timeout_ms=rebalance_ms,
            session_timeout_ms=max(6000, 2 * rebalance_ms),
            heartbeat_interval_ms=1000,
        )
        self.admission = LabelAdmission(s, self.logic, self.store, self.clock_ms)
        self._ownership = Ownership(
            s, self.logic, self.store, self.consumer, self.admission, self._stopping
        )
        self.forward = steps.Forward(self.producer, self.logic.ownership_key)
        self.enrich = steps.Enrich(self.logic, self.admission, self.store, self.clock_ms)
        self.dead_letters = steps.DeadLetters(self.producer, self.redact, s.deadletter_topic)
        self.commit = steps.Commit(self.store)
        self.stalls = Stalls(self.consumer)
        self.hint = OffsetHint(self.consumer)
        live = LiveView(self.consumer, self.store, lambda: self.owned, self.clock_ms, self.errors)
        self.consumer.subscribe([self.topic], listener=_Listener(self))
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
            await self._loop()
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
            # stop() ended a getmany() that was waiting for a rebalance: a clean end.

    async def _loop(self) -> None:
        backoff = Backoff()
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

    async def _fence(self, tp: TopicPartition) -> None:
        assert self._ownership is not None
        await self._ownership.fence(tp)

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
        skipped = 0
        if owned.next_offset is not None:
            records = [r for r in records if r.offset >= owned.next_offset]
            if records and records[0].offset > owned.next_offset:
                seen = (owned.next_offset, records[0].offset)
                if owned.gap_seen != seen:
                    log.warning(
                        "partition %s: a batch starts at offset %d, after the stored offset "
                        "%d; re-reading from %d to count what lies between",
                        owned.keys.tag,
                        seen[1],
                        seen[0],
                        seen[0],
                    )
                    owned.gap_seen = seen
                    await self._seek(tp, owned.next_offset)
                    return 0
                skipped = seen[1] - seen[0]
                log.info(
                    "partition %s: offsets %d..%d hold no records (transaction markers, "
                    "compaction or retention); skipped",
                    owned.keys.tag,
                    seen[0],
                    seen[1] - 1,
                )
        if not records:
            return 0
        try:
            await self._apply(tp, owned, records, skipped)
        except Exception as exc:
            if await self._recover(tp, owned, exc):
                return 0
            # A bug must not kill the worker; tests fail on self.errors.
            delay = self._failures.setdefault(tp, Backoff()).next()
            log.exception(
                "partition %s: batch failed; reloading its state in %.1fs", owned.keys.tag, delay
            )
            self.errors.append(exc)
            if not await pause(delay, self._stopping):
                await self._claim(tp)
            return 0
        self._failures.pop(tp, None)
        return len(records)

    async def _recover(self, tp: TopicPartition, owned: Owned, exc: Exception) -> bool:
        """React to a commit Redis refused or could not take; False for anything else."""
        if isinstance(exc, Fenced):
            log.warning("%s; another worker owns it now, pausing it here", exc)
            await self._fence(tp)
        elif isinstance(exc, StateLost):
            log.warning("%s; claiming it anew", exc)
            await self._claim(tp)
        elif isinstance(exc, (OffsetMismatch, *REDIS_UNAVAILABLE)):
            log.warning("partition %s: %s; reloading its state from Redis", owned.keys.tag, exc)
            await self._claim(tp)
        else:
            return False
        return True

    async def _apply(
        self,
        tp: TopicPartition,
        owned: Owned,
        records: list[ConsumerRecord[bytes, bytes]],
        skipped: int = 0,
    ) -> None:
        """The batch's steps, in order (:mod:`kpistream.streams.steps`)."""
        assert self.consumer is not None and self.forward is not None
        assert self.enrich is not None and self.dead_letters is not None
        started = time.perf_counter()
        now_ms = self.clock_ms()
        decoded = steps.decode(self.decoder, records, now_ms)
        partitions = len(self.consumer.partitions_for_topic(tp.topic) or ())
        sends = await self.forward(tp, partitions, records, decoded)
        events = valid(decoded)
        await self.enrich(owned, events)
        delta = steps.fold(owned, decoded, now_ms)
        sends += await self.dead_letters(tp, records, decoded, delta)
        if sends:  # forwarded and dead-lettered before the offset moves past them
            await asyncio.gather(*sends)
        delta.health.update(steps.batch_health(time.perf_counter() - started, skipped))
        assert self.commit is not None
        await self.commit(
            owned, delta, records[-1].offset + 1, first_offset=records[0].offset, skipped=skipped
        )
        owned.gap_seen = None
        owned.last_records_s = time.monotonic()

    async def _advance_idle(self) -> None:
        """Commit what the idle partitions' moved watermarks decided
        (:mod:`kpistream.streams.idle`)."""
        assert self.consumer is not None and self.commit is not None
        for tp, owned, delta in self.idle.advance(self.owned, self.consumer.highwater):
            assert owned.next_offset is not None  # an idle partition has read something
            try:
                await self.commit(owned, delta, owned.next_offset)
            except Exception as exc:
                if not await self._recover(tp, owned, exc):
                    raise

    async def _commit_hint(self, *, force: bool = False) -> None:
        if self.hint is not None:
            await self.hint.commit(self.owned, force=force)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: BatchConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.consumer.revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.consumer.assign(assigned)
