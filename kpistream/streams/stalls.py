"""Record batches that cannot be read (a codec this install lacks, a corrupt batch): they
stall their own partition only.

aiokafka fails a whole fetch when one partition's batch cannot be read. :meth:`Stalls.isolate`
puts every partition back at its stored offset and reads each alone, record by record, so
the readable records before the bad batch are counted; the partition whose batch fails is
paused with a log line naming the offset, reported stalled, and tried again every
:data:`STALL_RETRY_S` (a corrupt fetch can be transient; a missing codec is not, and then
this is one log line per interval). The others flow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from aiokafka.structs import ConsumerRecord

from kpistream.streams.ownership import Owned

log = logging.getLogger(__name__)

#: A record batch this client cannot read: it must stall its own partition only.
UNREADABLE = (UnsupportedCodecError, CorruptRecordException)
#: A stalled partition is tried again this often.
STALL_RETRY_S = 30.0
#: How long reading one partition alone may wait for its fetch while looking for the
#: partition whose batch cannot be read.
PROBE_TIMEOUT_MS = 1000

Records = list[ConsumerRecord[bytes, bytes]]


class Stalls:
    """Finds, pauses and retries the partitions whose batches cannot be read. ``consumer``
    is the worker's aiokafka consumer (getmany, pause, resume, seek)."""

    def __init__(self, consumer: Any, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self._monotonic = monotonic

    async def isolate(
        self,
        owned: Callable[[], Mapping[TopicPartition, Owned]],
        *,
        seek: Callable[[TopicPartition, int | None], Awaitable[None]],
        handle: Callable[[TopicPartition, Records, Owned], Awaitable[int]],
        locked: Callable[[], Any],
        max_records: int,
    ) -> int:
        """Read every flowing partition alone after a fetch failed on an unreadable batch;
        returns the records handled. ``owned()`` is the worker's current view (a rebalance
        may change it meanwhile); ``locked()`` is the worker's batch lock, held while a
        partition is sought, handled or stalled."""
        async with locked():
            for tp, held in owned().items():
                if held.stalled_offset is None:
                    await seek(tp, held.next_offset)
        handled = 0
        for tp in list(owned()):
            found = owned().get(tp)
            if found is None or found.stalled_offset is not None:
                continue
            records: Records = []
            error: Exception | None = None
            try:  # one record at a time: the records before the bad batch come out first
                timeout_ms = PROBE_TIMEOUT_MS
                while len(records) < max_records:
                    got = await self.consumer.getmany(tp, timeout_ms=timeout_ms, max_records=1)
                    if not got:
                        break
                    records += got.get(tp, [])
                    timeout_ms = 0
            except UNREADABLE as exc:
                error = exc
            async with locked():
                if records:
                    handled += await handle(tp, records, found)
                if error is not None and owned().get(tp) is found:
                    self.stall(tp, found, error)
        return handled

    def stall(self, tp: TopicPartition, owned: Owned, error: Exception) -> None:
        owned.stalled_offset = owned.next_offset if owned.next_offset is not None else 0
        owned.stalled_at_s = self._monotonic()
        self.consumer.pause(tp)
        log.error(
            "partition %s stalled at offset %d: a record batch cannot be read (%s: %s); "
            "the other partitions go on, this one is retried every %.0fs. A missing codec: "
            "reinstall kpistream (its aiokafka extras bring snappy, lz4 and zstd)",
            owned.keys.tag,
            owned.stalled_offset,
            type(error).__name__,
            error,
            STALL_RETRY_S,
        )

    def retry(self, owned: Mapping[TopicPartition, Owned]) -> None:
        """Resume, from its stalled offset, each stalled partition whose retry is due."""
        now_s = self._monotonic()
        for tp, held in owned.items():
            if held.stalled_offset is not None and now_s - held.stalled_at_s >= STALL_RETRY_S:
                held.stalled_at_s = now_s
                self.consumer.resume(tp)
                self.consumer.seek(tp, held.stalled_offset)
