"""The owner's live view of its partitions (log end, stall), written to the store every
:data:`LIVE_EVERY_S` beside the batch loop: ListOffsets waits behind the consumer's long-poll
fetch on the same connection (up to half a second), which the batch loop must not. The
exporter reads it (and the broker's log ends itself) for lag and for ``kpistream_worker_up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from kpistream.contract.keys import PartitionKeys
from kpistream.contract.store import LiveStatus, PartitionStore
from kpistream.streams.ownership import REDIS_UNAVAILABLE, Owned
from kpistream.streams.retry import pause

log = logging.getLogger(__name__)

#: Within one Prometheus scrape interval, at one pipelined Redis call per second.
LIVE_EVERY_S = 1.0
#: ListOffsets may take this long before a report goes without it.
LIST_OFFSETS_TIMEOUT_S = 2.0


class LiveView:
    def __init__(
        self,
        consumer: Any,
        store: PartitionStore,
        owned: Callable[[], Mapping[TopicPartition, Owned]],
        clock_ms: Callable[[], int],
        errors: list[BaseException],
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.owned = owned
        self.clock_ms = clock_ms
        #: the worker's survived errors (tests fail when it is not empty)
        self.errors = errors

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.report()
            except Exception as exc:  # a bug must not end the reports; tests fail on errors
                log.exception("live report failed")
                self.errors.append(exc)
            await pause(LIVE_EVERY_S, stopping)

    async def report(self) -> None:
        """Write each owned partition's log end and stall, paused and stalled partitions
        included. The log end is the largest of the position, the last fetch's high
        watermark and ListOffsets (on some brokers, Tansu among them, ListOffsets answers
        the start of the last record batch + 1; fetches see the true end)."""
        owned = dict(self.owned())
        if not owned:
            return
        try:
            listed = await asyncio.wait_for(
                self.consumer.end_offsets(list(owned)), LIST_OFFSETS_TIMEOUT_S
            )
        except (KafkaError, TimeoutError):
            listed = {}
        statuses: dict[PartitionKeys, LiveStatus] = {}
        for tp, o in owned.items():
            position = o.next_offset or 0
            ends = [position, self.consumer.highwater(tp) or 0, listed.get(tp) or 0, o.end_offset]
            o.end_offset = max(ends)
            statuses[o.keys] = LiveStatus(o.end_offset, o.stalled_offset)
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            await self.store.report_live(statuses, now_ms=self.clock_ms())
