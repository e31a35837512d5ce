"""The log end offset of every partition, read from the broker by the exporter itself.

Lag is the log end minus the offset stored with the counted state. The worker reports the
end it sees, but a stopped worker reports nothing, and its last report read lag 0 while
events piled up. So the exporter asks the broker, in a thread of its own (the HTTP server's
scrapes never wait on Kafka), every :data:`REFRESH_S`; a read older than :data:`STALE_S`
counts as none (``kpistream_kafka_up`` 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from kpistream.config.connections import kafka_options
from kpistream.config.settings import Settings

log = logging.getLogger(__name__)

#: Lag moves at the pace of scrapes (15 s by default): a read every 2 s is fresh for any of
#: them, and one metadata and one ListOffsets request per read cost the broker nothing.
REFRESH_S = 2.0
#: How long a read waits for the fetch that tells the high watermark (the broker answers an
#: empty fetch after ``fetch_max_wait_ms``, 100 ms here).
FETCH_WAIT_MS = 500
#: A read older than this (the broker gone, the thread stuck) is not served.
STALE_S = 15.0

Ends = dict[tuple[str, int], int]


class LogEnds:
    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._ends: Ends = {}
        self._read_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LogEnds:
        self._thread = threading.Thread(target=self._run, name="log-ends", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def read(self) -> Ends | None:
        """The newest ends, unless older than :data:`STALE_S` (or never read)."""
        with self._lock:
            if self._read_at is None or self._monotonic() - self._read_at > STALE_S:
                return None
            return dict(self._ends)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        consumer: AIOKafkaConsumer | None = None
        failing = False
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = AIOKafkaConsumer(
                        **kafka_options(self.settings),
                        group_id=None,
                        enable_auto_commit=False,
                        request_timeout_ms=5000,
                        fetch_max_wait_ms=100,
                    )
                    await asyncio.wait_for(consumer.start(), 10)
                ends = await asyncio.wait_for(self._read(consumer), 10)
                with self._lock:
                    self._ends, self._read_at = ends, self._monotonic()
                if failing:
                    log.info("log ends: the broker answers again")
                failing = False
            except (KafkaError, OSError, TimeoutError) as exc:
                if not failing:  # one line per outage, not one per attempt
                    log.warning("log ends: cannot read them from Kafka (%s)", type(exc).__name__)
                failing = True
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                    consumer = None
            await asyncio.to_thread(self._stop.wait, REFRESH_S)
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> Ends:
        await consumer.topics()  # fresh metadata: partitions added since are seen
        partitions = [
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        ends = await consumer.end_offsets(partitions)
        # Some brokers (Tansu) answer ListOffsets with the last batch's first offset + 1, not
        # the log end; a fetch from there answers the true high watermark. It reads at most
        # the last batch of each partition, thrown away.
        if set(consumer.assignment()) != set(partitions):
            consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, ends[tp])
        await consumer.getmany(timeout_ms=FETCH_WAIT_MS)
        return {
            (tp.topic, tp.partition): max(int(ends[tp]), consumer.highwater(tp) or 0)
            for tp in partitions
        }
