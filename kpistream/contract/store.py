"""What a stream worker needs of the state store, and what it may answer: the interface
:class:`kpistream.sinks.window_store.WindowStore` implements for Redis. The stream depends on
this, never on the store's module, so the two can change apart."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kpistream.contract.delta import BatchDelta
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.visitor import VisitorKey


class Fenced(Exception):
    """Another worker owns the partition now (its epoch is newer than ours)."""


class OffsetMismatch(Exception):
    """Redis holds another position than we expected (e.g. it restarted from an older snapshot)."""


class OffsetGap(OffsetMismatch):
    """The batch does not start at the stored offset: records in between were not counted."""


class StateLost(Exception):
    """The partition has no epoch in Redis: Redis came back without its data."""


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """The owner's live view of one partition (see the ``live`` key)."""

    end_offset: int
    stalled_offset: int | None  # where a batch that cannot be read sits; None: flowing


@dataclass(frozen=True, slots=True)
class Admission:
    members: set[str]  # every admitted value of the dimension now
    freed: int  # values removed for being unseen longer than the idle time


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    """Values to admit into (or refresh in) one dimension's label budget."""

    dimension: str
    values: set[str]
    max_values: int


@dataclass(slots=True)
class Enrichment:
    """What a batch needs from the store before it is folded, read in one round trip."""

    admissions: list[Admission]  # one per request, in the requests' order
    #: the records asked for, as stored (each processor decodes its own); None: none stored
    visitors: dict[VisitorKey, bytes | None]


@dataclass(slots=True)
class Claim:
    epoch: int
    next_offset: int | None
    watermark_ms: int
    state: dict[bytes, bytes]  # the partition's keyed state, decoded by its processor
    fresh: bool = False  # the partition had no epoch: new, or Redis lost its data


class PartitionStore(Protocol):
    """The state store as the worker uses it: claim a partition (fencing older owners),
    admit label values and load visitors (one round trip), commit a batch with its offset
    in one atomic step."""

    def keys(self, topic: str, partition: int) -> PartitionKeys: ...

    async def claim(self, keys: PartitionKeys) -> Claim: ...

    async def admit(
        self,
        dimension: str,
        values: Iterable[str],
        *,
        max_values: int,
        now_ms: int,
        idle_ms: int = 0,
    ) -> Admission: ...

    async def count_fenced(self) -> None: ...

    async def count_state_reset(self) -> None: ...

    async def report_live(
        self, statuses: dict[PartitionKeys, LiveStatus], *, now_ms: int
    ) -> None: ...

    async def enrich(
        self,
        keys: PartitionKeys,
        admissions: Sequence[AdmitRequest],
        visitors: list[VisitorKey],
        *,
        now_ms: int,
        idle_ms: int,
    ) -> Enrichment:
        """The label admissions and the visitors a batch needs, in one round trip."""

    async def commit(
        self,
        keys: PartitionKeys,
        *,
        epoch: int,
        expected_offset: int | None,
        next_offset: int,
        delta: BatchDelta,
        first_offset: int | None = None,
        skipped: int = 0,
    ) -> None: ...


#: Builds the store on a Redis client (``redis.asyncio.Redis``) with the settings:
#: ``WindowStore.from_settings``, passed in by whoever assembles a worker.
StoreFactory = Callable[[Any, Any], PartitionStore]
