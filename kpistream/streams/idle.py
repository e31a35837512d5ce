"""Time keeps moving when traffic stops: an idle partition's watermark follows the wall
clock minus the allowed lateness, so its sessions end and are decided. A partition with
records still to read is not idle, however long its last batch is ago (a backlog, a
stall): its records keep their event time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aiokafka import TopicPartition

from kpistream.config.settings import Settings
from kpistream.contract.delta import BatchDelta
from kpistream.streams.ownership import Owned


class IdleWatermark:
    def __init__(
        self,
        settings: Settings,
        clock_ms: Callable[[], int],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = settings.idle_after_s
        self.lateness_ms = settings.allowed_lateness_s * 1000
        self.clock_ms = clock_ms
        self._monotonic = monotonic

    def advance(
        self,
        owned: Mapping[TopicPartition, Owned],
        highwater: Callable[[TopicPartition], int | None],
    ) -> list[tuple[TopicPartition, Owned, BatchDelta]]:
        """Move each idle partition's watermark; returns the deltas to commit (those whose
        watermark moved), at most one per partition and ``idle_after_s``."""
        now_s = self._monotonic()
        moved = []
        for tp, held in list(owned.items()):
            if held.next_offset is None or now_s - held.last_records_s < self.idle_s:
                continue
            end = max(held.end_offset, highwater(tp) or 0)
            if end > held.next_offset or held.stalled_offset is not None:
                continue
            held.last_records_s = now_s  # at most one idle step per idle_after_s
            delta = held.processor.advance(self.clock_ms() - self.lateness_ms)
            if delta.watermark_ms:
                moved.append((tp, held, delta))
        return moved
