"""Kafka's committed offsets, written every :data:`KAFKA_COMMIT_HINT_S` as a hint only:
lag tools read them, and they tell a Redis that lost its data (no epoch, no offset, but
Kafka remembers progress) from a new partition. The true position is in the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from kpistream.streams.ownership import Owned

log = logging.getLogger(__name__)

KAFKA_COMMIT_HINT_S = 5.0


class OffsetHint:
    def __init__(self, consumer: Any, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self._monotonic = monotonic
        self._last = 0.0

    async def commit(self, owned: Mapping[TopicPartition, Owned], *, force: bool = False) -> None:
        now = self._monotonic()
        if not owned or (not force and now - self._last < KAFKA_COMMIT_HINT_S):
            return
        self._last = now
        offsets = {tp: o.next_offset for tp, o in owned.items() if o.next_offset is not None}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # only a lag hint: the true position is in the store
            log.info("Kafka offset hint not committed (%s)", exc)
