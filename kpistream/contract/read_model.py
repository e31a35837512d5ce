"""The read model: what the exporter, the live tables, `kpistream labels` and reports read
of the stored state, whatever store holds it (:mod:`kpistream.sinks.store_reader` reads it
from Redis)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LabelUse:
    """One dimension's budget as the exporter and `kpistream labels` read it."""

    budget: int
    admitted: int
    refused: int  # distinct values refused a label (HyperLogLog estimate)


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    offset: int | None
    watermark_ms: int | None
    end_offset: int | None
    stalled: bool
    reported_ms: int | None = None  # when the owner last wrote its live view (wall clock)

    @property
    def lag(self) -> int:
        """Records behind the log end (the broker's, read by the exporter, or else the
        owner's last report) minus the stored offset."""
        if self.end_offset is None:
            return 0
        return max(0, self.end_offset - (self.offset or 0))


@dataclass(slots=True)
class StoreSnapshot:
    """Global state summed over all partitions, as the exporter reads it."""

    watermark_ms: int | None
    totals: Counter[str]
    windows: dict[str, Counter[str]]
    partitions: int
    #: window -> site -> distinct visitors (HyperLogLog estimate)
    uniques: dict[str, Counter[str]] = field(default_factory=dict)
    gauges: Counter[str] = field(default_factory=Counter)
    fenced_writes: int = 0
    state_resets: int = 0
    #: per partition tag: its stored offset, watermark and the owner's live view
    partition_status: dict[str, PartitionStatus] = field(default_factory=dict)
    labels: dict[str, LabelUse] = field(default_factory=dict)
    #: the service's own counters (:mod:`kpistream.contract.health`)
    health: Counter[str] = field(default_factory=Counter)
    #: which of ``windows`` are long windows (day buckets: only long-window counts)
    long_windows: frozenset[str] = frozenset()


class KpiReader(Protocol):
    """Reads the summed state; blocking (a scrape's thread), raises the store's errors."""

    def snapshot(
        self,
        windows_min: dict[str, int],
        long_windows: dict[str, int] | None = None,
        label_budgets: dict[str, int] | None = None,
    ) -> StoreSnapshot: ...

    def label_use(self, budgets: dict[str, int]) -> dict[str, LabelUse]: ...
