"""What one batch of one partition changes, applied to Redis in one atomic step."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kpistream.contract.visitor import Visitor, VisitorKey
from kpistream.schemas.decoder import Rejection


@dataclass(slots=True)
class BatchDelta:
    """Everything one batch changes, pre-aggregated so Redis sees each field once."""

    buckets: Counter[tuple[int, str]] = field(default_factory=Counter)  # (minute, field)
    totals: Counter[str] = field(default_factory=Counter)
    #: service health (events processed, late, duplicate, rejected, batch time ...), apart
    #: from the KPI counters; stored beside them in the totals hash
    health: Counter[str] = field(default_factory=Counter)
    days: Counter[tuple[int, str]] = field(default_factory=Counter)  # (day, field)
    #: visitor ids per (minute, site label), for the unique-visitor HyperLogLogs
    uniques: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    #: the partition's keyed state (open sessions, accounts): encoded values to store, and
    #: fields to delete, written in the same atomic step
    state_set: dict[bytes, bytes] = field(default_factory=dict)
    state_del: set[bytes] = field(default_factory=set)
    visitors: dict[VisitorKey, Visitor | None] = field(default_factory=dict)  # None: erase
    #: records kept without expiry (a customer's), encoded by their processor; None: erase
    records: dict[VisitorKey, bytes | None] = field(default_factory=dict)
    #: day counters kept without expiry (the customer counters): (day, field)
    kept: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: current values that can go down (an account's followers), replaced, not added
    gauges: dict[str, int] = field(default_factory=dict)
    watermark_ms: int = 0
    #: events the processor rejected (index in the batch, why), for the dead-letter topic
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)
