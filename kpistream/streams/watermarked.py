"""What every partition processor shares: the watermark, lateness and idle advance.

The watermark is the newest accepted event time, but never ahead of the wall clock at the
batch (``now_ms``): one client with a fast clock (an event accepted within the future skew)
must not make honest events of the same partition late. Replays of old data never meet the
cap, so they give the numbers live processing gave.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, TypeGuard, TypeVar

from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import Rerouted
from kpistream.kpis import fields
from kpistream.schemas.decoder import Rejection

E = TypeVar("E")


class WatermarkedProcessor:
    """Base of the partition processors. Subclasses implement :meth:`_settle`."""

    def __init__(self, *, allowed_lateness_ms: int) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self.watermark_ms = 0

    def screen(
        self, event: E | Rejection | Rerouted, watermark_ms: int | None, health: Counter[str]
    ) -> TypeGuard[E]:
        """Count a rejection, a re-routed event or an event later than the allowed lateness
        behind ``watermark_ms`` (None: a stream where nothing is late); True when the event
        goes on to be processed."""
        if isinstance(event, Rejection):
            health[fields.field(H.REJECTED, event.reason)] += 1
            return False
        if isinstance(event, Rerouted):
            health[H.REROUTED] += 1
            return False
        if watermark_ms is None:
            return True
        ts: int = getattr(event, "ts")  # noqa: B009 - every event struct has `ts`
        if ts < watermark_ms - self.allowed_lateness_ms:
            health[H.LATE] += 1
            return False
        return True

    @staticmethod
    def repeated(delta: BatchDelta, index: int, event_id: str, same_content: bool) -> None:
        """An event whose ``event_id`` was counted before: a retry with the same content
        counts as a duplicate; other content is rejected (dead-lettered by the caller)."""
        if same_content:
            delta.health[H.DUPLICATE] += 1
            return
        rejection = conflicting(event_id)
        delta.health[fields.field(H.REJECTED, rejection.reason)] += 1
        delta.rejections.append((index, rejection))

    def advance(self, watermark_ms: int) -> BatchDelta:
        """Move the watermark of an idle partition forward and settle what that decides."""
        delta = BatchDelta()
        if watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
            self._settle(delta, set())
        return delta

    def committed(self) -> None:
        """The last delta is in Redis."""

    def _settle(self, delta: BatchDelta, touched: set[Any]) -> None:
        """Write the touched keys' state into the delta and decide what the watermark ends."""
        raise NotImplementedError


def conflicting(event_id: str) -> Rejection:
    """An ``event_id`` already counted, now with other content: not a retry."""
    return Rejection(
        "conflicting_duplicate",
        f"event_id {event_id!r} was already counted with other content; "
        "give every distinct event its own id",
        "$.event_id",
    )
