"""The contract between the batch consumer and a topic's stream processor.

The batch consumer owns Kafka, Redis and the atomic commit; a :class:`StreamLogic` says how
one topic's records become counter deltas. Each implementation is pure: what a batch needs
from the store (:meth:`PartitionLogic.needs`) is read for it and handed in
(:meth:`PartitionLogic.fill`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from kpistream.config.settings import Settings
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import Rerouted
from kpistream.contract.visitor import VisitorKey
from kpistream.schemas.decoder import EventDecoder, Rejection
from kpistream.streams.labels import LabelBudget


class PartitionLogic(Protocol):
    """State and rules for one partition. Not thread-safe; one batch at a time."""

    watermark_ms: int

    def load(self, state: dict[bytes, bytes], watermark_ms: int) -> dict[str, set[str]]:
        """Resume from stored state; returns the raw dimension values it may label."""

    def process(self, decoded: Iterable[Any], *, now_ms: int) -> BatchDelta:
        """Fold a batch of decoded events (or rejections, or re-routed markers) into one
        delta; ``now_ms`` is the wall clock the watermark may not pass. Never raises for bad
        events: they arrive as :class:`kpistream.schemas.decoder.Rejection` and are counted, and the
        ones it rejects itself are listed in ``delta.rejections``."""

    def advance(self, watermark_ms: int) -> BatchDelta:
        """Move the watermark of an idle partition forward (no-op if not forward)."""

    def needs(self, events: list[Any]) -> list[VisitorKey]:
        """The visitors processing these events needs from the store (may be none)."""

    def fill(self, loaded: dict[VisitorKey, bytes | None]) -> None:
        """What the store answered for :meth:`needs`."""

    def committed(self) -> None:
        """The last delta is in Redis."""

    def held(self) -> int:
        """How many state objects (sessions, cached visitors, accounts) it holds in memory."""

    def compact(self) -> None:
        """Re-create the state it holds as fresh objects, same content (after a flood)."""


class StreamLogic(Protocol):
    topic: str
    decoder: EventDecoder[Any]

    def ownership_key(self, event: Any) -> str:
        """What decides an event's owning partition (:mod:`kpistream.contract.routing`)."""

    def new_partition(self) -> PartitionLogic: ...

    def budget(self, dimension: str) -> LabelBudget: ...

    def budgets(self) -> dict[str, LabelBudget]:
        """Every bounded dimension's budget, by dimension."""

    def dimension_values(self, events: Iterable[Any]) -> dict[str, set[str]]:
        """Raw values of each bounded dimension in a batch, admitted before processing."""


def valid(decoded: Iterable[Any]) -> list[Any]:
    """The events of a decoded batch this partition processes (not rejected, not
    forwarded to another partition)."""
    return [e for e in decoded if e.__class__ not in _NOT_EVENTS]


#: exact classes (both are leaves): isinstance on a struct class is slow
_NOT_EVENTS = frozenset((Rejection, Rerouted))


def decoder_of(settings: Settings, events: Any, *, by_site: bool = True) -> EventDecoder[Any]:
    """A topic's decoder on the settings: event size, clock skew and, for events of a site
    (``by_site``), the site allowlist."""
    return EventDecoder(
        events,
        max_event_bytes=settings.max_event_bytes,
        max_future_skew_ms=settings.max_future_skew_s * 1000,
        site_allowlist=settings.site_allowlist if by_site else (),
    )
