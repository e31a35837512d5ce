"""What the atomic commit (``commit.lua``) receives, built from a batch's delta: its counters
grouped by bucket key, its visitors per HyperLogLog, and the refusals the script answers."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from kpistream.contract.delta import BatchDelta
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.store import Fenced, OffsetGap, OffsetMismatch, StateLost
from kpistream.contract.visitor import encode_visitor
from kpistream.kpis.windows import HOUR_MINUTES

#: The batch's counters travel as one MessagePack argument (see commit.lua): one string for
#: the client to send and for Redis to parse, not thousands.
CHANGES = msgspec.msgpack.Encoder().encode
#: Lua numbers are doubles: larger integers travel as text (HINCRBY takes either).
_EXACT = 2**53


def flat(counts: Mapping[str, int]) -> list[str | int]:
    """The non-zero counts as ``[name, count, ...]``."""
    out: list[str | int] = []
    for name, n in counts.items():
        if n:
            out += (name, n if -_EXACT < n < _EXACT else str(n))
    return out


@dataclass(slots=True)
class Buckets:
    """A delta's bucket counters by key (minute and hour of each minute count, day of each
    day count), each key's TTL, and the visitor ids of each HyperLogLog key."""

    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    ttls: dict[str, int] = field(default_factory=dict)
    hlls: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @property
    def keys(self) -> list[str]:
        """The bucket keys with something to add."""
        return [k for k, counts in self.counts.items() if any(counts.values())]


def buckets(
    keys: PartitionKeys, delta: BatchDelta, *, bucket_ttl_s: int, day_ttl_s: int
) -> Buckets:
    out = Buckets()
    for (minute, name), n in delta.buckets.items():
        if n:
            for key in (keys.minute(minute), keys.hour(minute // HOUR_MINUTES)):
                out.counts[key][name] += n
                out.ttls[key] = bucket_ttl_s
    for (day, name), n in delta.days.items():
        if n:
            out.counts[keys.day(day)][name] += n
            out.ttls[keys.day(day)] = day_ttl_s
    for (day, name), n in delta.kept.items():
        if n:
            out.counts[keys.kept(day)][name] += n
            out.ttls[keys.kept(day)] = 0  # kept: never expires
    for (minute, site), visitor_ids in delta.uniques.items():
        out.hlls[keys.uniques_minute(minute, site)] |= visitor_ids
        out.hlls[keys.uniques_hour(minute // HOUR_MINUTES, site)] |= visitor_ids
    return out


def refusal(
    result: list[object], tag: str, *, epoch: int, expected: int | None, first: int
) -> Exception | None:
    """What the script's answer means: None when the commit was applied."""
    code = result[0]
    if code == -1:
        return Fenced(f"partition {tag}: epoch {epoch} is stale (now {result[1]!r})")
    if code == -2:
        return OffsetMismatch(
            f"partition {tag}: expected offset {expected}, Redis has {result[1]!r}"
        )
    if code == -3:
        return StateLost(f"partition {tag}: Redis has no state for it (no epoch)")
    if code == -4:
        return OffsetGap(
            f"partition {tag}: the batch starts at offset {first}, "
            f"the stored offset is {result[1]!r}"
        )
    return None


class Positions(NamedTuple):
    """The commit's fence and offsets (see :meth:`WindowStore.commit`)."""

    epoch: int
    expected: int | None
    next: int
    first: int
    skipped: int


class Lifetimes(NamedTuple):
    """TTLs in seconds of open sessions, visitors, minute and hour buckets, day buckets."""

    session_s: int
    visitor_s: int
    bucket_s: int
    day_s: int


def arguments(
    keys: PartitionKeys, delta: BatchDelta, at: Positions, ttl: Lifetimes
) -> tuple[list[str], list[Any]]:
    """The script's keys and arguments, in the order commit.lua reads them."""
    grouped = buckets(keys, delta, bucket_ttl_s=ttl.bucket_s, day_ttl_s=ttl.day_s)
    bucket_keys = grouped.keys
    visitor_keys = list(delta.visitors)
    record_keys = list(delta.records)
    args: list[Any] = [
        at.epoch,
        "" if at.expected is None else at.expected,
        at.next,
        delta.watermark_ms,
        ttl.session_s,
        ttl.visitor_s,
        len(bucket_keys),
        len(grouped.hlls),
        len(visitor_keys),
        at.first,
        at.skipped,
        CHANGES(
            (
                flat(delta.totals),
                flat(delta.health),
                flat(delta.gauges),
                [(grouped.ttls[key], flat(grouped.counts[key])) for key in bucket_keys],
                [(ttl.bucket_s, list(members)) for members in grouped.hlls.values()],
                len(record_keys),
            )
        ),
    ]
    args += (
        b"" if (visitor := delta.visitors[v]) is None else encode_visitor(visitor)
        for v in visitor_keys
    )
    args += (b"" if (record := delta.records[r]) is None else record for r in record_keys)
    args.append(len(delta.state_set))
    for state_key, encoded in delta.state_set.items():
        args += (state_key, encoded)
    args.append(len(delta.state_del))
    args += delta.state_del
    script_keys = [
        keys.key("epoch"),
        keys.key("meta"),
        keys.state,
        keys.key("totals"),
        keys.key("gauges"),
        keys.key("health"),
        *bucket_keys,
        *grouped.hlls,
        *(keys.visitor(v) for v in visitor_keys),
        *(keys.visitor(r) for r in record_keys),
    ]
    return script_keys, args
