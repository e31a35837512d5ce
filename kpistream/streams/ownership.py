"""Which partitions this worker owns, and since when.

Ownership lives in the store, not in Kafka: claiming a partition bumps its epoch there
(fencing any previous owner, whose next commit is refused) and returns the stored offset and
state, where the worker seeks and resumes. A commit refused as fenced means another worker
owns the partition now: it is paused here until a rebalance gives it back. A partition the
store has no epoch for, while this worker or Kafka's committed offset knows of progress, is a
store that lost its data: it is rebuilt from the earliest offset the topic retains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Literal

import redis.exceptions
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from kpistream.config.connections import redacted
from kpistream.config.settings import Settings
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.store import Fenced, OffsetMismatch, PartitionStore, StateLost
from kpistream.streams.admission import LabelAdmission
from kpistream.streams.logic import PartitionLogic, StreamLogic
from kpistream.streams.retry import Backoff, pause

log = logging.getLogger(__name__)

#: Redis errors that mean "not now" (down, restarting, loading its AOF): wait and reload.
#: Redis cannot take the step now; the partition is claimed again once it can. On a cluster
#: also: no node reachable to learn the slot map from (RedisClusterException), the cluster
#: down while a replica takes over a dead master, and TRYAGAIN while a slot migrates.
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.RedisClusterException,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
)


@dataclass(slots=True)
class Owned:
    keys: PartitionKeys
    epoch: int
    next_offset: int | None
    processor: PartitionLogic
    last_records_s: float  # monotonic time records last arrived (or the claim)
    #: (stored offset, first offset) of a batch that started after the stored offset: seen
    #: once, the partition is re-read; seen again, the gap is real
    gap_seen: tuple[int, int] | None = None
    #: offset of the first record not counted while a batch cannot be read; None: flowing
    stalled_offset: int | None = None
    stalled_at_s: float = 0.0
    #: the log end last seen (fetch high watermark or ListOffsets)
    end_offset: int = 0


class Ownership:
    """The owned partitions, claimed from and fenced by the store."""

    def __init__(
        self,
        settings: Settings,
        logic: StreamLogic,
        store: PartitionStore,
        consumer: AIOKafkaConsumer,
        admission: LabelAdmission,
        stopping: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.logic = logic
        self.store = store
        self.consumer = consumer
        self.admission = admission
        #: Set when the worker stops: a claim waiting for Redis gives up instead of holding
        #: the worker (and its shutdown) forever.
        self.stopping = stopping
        self.owned: dict[TopicPartition, Owned] = {}

    async def claim(self, tp: TopicPartition) -> None:
        """Take ownership from the store (retrying through outages) and seek to its
        position; rebuild a partition whose state the store lost."""
        keys = self.store.keys(tp.topic, tp.partition)
        before = self.owned.get(tp)
        backoff = Backoff()
        while True:
            try:
                claim = await self.store.claim(keys)
                if claim.fresh and await self.had_progress(tp, before):
                    log.warning(
                        "partition %s: Redis has no state for it (it came back empty); "
                        "rebuilding from the earliest offset the topic retains",
                        keys.tag,
                    )
                    await self.admission.readmit()
                    await self.store.count_state_reset()
                processor = self.logic.new_partition()
                # Ending a loaded session labels it: learn labels other workers admitted.
                await self.admission.admit_all(processor.load(claim.state, claim.watermark_ms))
                break
            except REDIS_UNAVAILABLE as exc:
                delay = backoff.next()
                log.warning(
                    "Redis unreachable at %s (%s); retrying partition %s in %.1fs",
                    redacted(self.settings.redis),
                    exc,
                    keys.tag,
                    delay,
                )
                if await pause(delay, self.stopping):  # the worker stops: this task ends here
                    raise asyncio.CancelledError(f"stopping while claiming {keys.tag}") from exc
        self.owned[tp] = Owned(keys, claim.epoch, claim.next_offset, processor, time.monotonic())
        # It may have been paused here: an older epoch fenced, or a stalled batch.
        self.consumer.resume(tp)
        await self.seek(tp, claim.next_offset)
        log.info(
            "partition %s: epoch %d, resuming at offset %s",
            keys.tag,
            claim.epoch,
            claim.next_offset if claim.next_offset is not None else "earliest",
        )

    async def had_progress(self, tp: TopicPartition, before: Owned | None) -> bool:
        if before is not None and before.next_offset is not None:
            return True
        try:
            return await self.consumer.committed(tp) is not None
        except KafkaError:
            return False

    async def fence(self, tp: TopicPartition) -> None:
        """Stop touching a partition another worker owns (until a rebalance gives it back),
        and count the rejected write where every worker's count is summed."""
        self.owned.pop(tp, None)
        self.consumer.pause(tp)
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            await self.store.count_fenced()

    async def seek(self, tp: TopicPartition, offset: int | None) -> None:
        if offset is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, offset)


def recovery(exc: Exception, tag: str) -> Literal["fence", "claim"] | None:
    """How the loop recovers from a commit the store refused or could not take (logged
    here): pause a partition another worker owns now (``fence``), reload the state of one
    whose store lost it, moved on, or cannot take the step now (``claim``); None for
    anything else."""
    if isinstance(exc, Fenced):
        log.warning("%s; another worker owns it now, pausing it here", exc)
        return "fence"
    if isinstance(exc, StateLost):
        log.warning("%s; claiming it anew", exc)
        return "claim"
    if isinstance(exc, (OffsetMismatch, *REDIS_UNAVAILABLE)):
        log.warning("partition %s: %s; reloading its state from Redis", tag, exc)
        return "claim"
    return None
