"""The Redis window store: per-partition state, bucketed counters and the atomic commit.

Key layout (``P`` is the configured prefix, ``{t:n}`` the hash tag of topic ``t`` partition
``n``; every key one atomic step touches carries the same tag, so the code runs unchanged on a
Redis Cluster):

=============================  ======  ====================================================
key                            type    holds
=============================  ======  ====================================================
``P:{t:n}:epoch``              string  owner epoch; a new owner INCRs it, fencing the old one
``P:{t:n}:meta``               hash    ``offset`` (next offset to read), ``watermark`` (ms)
``P:{t:n}:live``               hash    the owner's live view, rewritten about every second:
                                       ``end`` (log end offset; lag = end - ``offset``),
                                       ``stalled`` (1: a record batch cannot be read),
                                       ``stalled_offset``, ``at_ms`` (when written)
``P:{t:n}:state``              hash    keyed state of the partition's processor: open
                                       sessions, msgpack (site, visitor, sid) -> list; for
                                       the social topic, accounts
``P:{t:n}:gauges``             hash    current values that can go down (followers)
``P:{t:n}:totals``             hash    monotonic KPI counters (numerators, denominators)
``P:{t:n}:health``             hash    the service's own counters: events processed, late,
                                       duplicate, rejected by reason, forwarded, skipped
                                       offsets, the batch-time histogram
``P:{t:n}:m:<minute>``         hash    window counters of one event-time minute
``P:{t:n}:h:<hour>``           hash    the same counters per event-time hour
``P:{t:n}:d:<day>``            hash    long-window counters (leads, lead customers) per day
``P:{t:n}:u:m:<minute>:<site>`` HLL    visitors of a site in a minute (``u:h:<hour>:``: hour)
``P:{t:n}:v:<n>:<site>:<id>``  string  one visitor's state (first seen, lead, first purchase),
                                       TTL = the visitor retention
``P:partitions``               set     the ``t:n`` tags that have state (for the exporter)
``P:fenced_writes``            string  batches a stale owner tried to commit (rejected)
``P:state_resets``             string  partitions found without state (Redis lost its data)
                                       and rebuilt from the earliest retained offset
``P:{labels}:<dimension>``     zset    admitted label values of a bounded dimension, each
                                       scored with when a worker last saw it (ms)
``P:{labels}:refused:<dim>``   HLL     distinct values refused a label (budget full)
=============================  ======  ====================================================

Field names inside the hashes are defined in :mod:`kpistream.kpis.fields`. Buckets and sessions
expire (wall-clock TTL refreshed on write): no per-visitor state outlives the retention.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis

from kpistream.config.connections import AsyncRedis, SyncRedis
from kpistream.config.settings import Settings
from kpistream.contract.delta import BatchDelta
from kpistream.contract.keys import PartitionKeys, label_keys
from kpistream.contract.store import (
    Admission,
    AdmitRequest,
    Claim,
    Enrichment,
    Fenced,
    LiveStatus,
    OffsetGap,
    OffsetMismatch,
    StateLost,
)
from kpistream.contract.visitor import Visitor, VisitorKey, decode_visitor, encode_visitor
from kpistream.kpis import catalogue as K
from kpistream.kpis.series import label_values
from kpistream.kpis.windows import HOUR_MINUTES, day_of, window_cover, window_minutes


def _script(name: str) -> str:
    return resources.files("kpistream.sinks").joinpath(name).read_text()


COMMIT_LUA = _script("commit.lua")
CLAIM_LUA = _script("claim.lua")
ADMIT_LUA = _script("admit.lua")


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


class WindowStore:
    """Async writer used by the stream workers."""

    def __init__(
        self,
        client: AsyncRedis,
        *,
        prefix: str,
        bucket_ttl_s: int,
        day_ttl_s: int,
        session_ttl_s: int,
        visitor_ttl_s: int,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.bucket_ttl_s = bucket_ttl_s
        self.day_ttl_s = day_ttl_s
        self.session_ttl_s = session_ttl_s
        self.visitor_ttl_s = visitor_ttl_s
        self._commit = client.register_script(COMMIT_LUA)
        self._claim = client.register_script(CLAIM_LUA)
        self._admit = client.register_script(ADMIT_LUA)

    @classmethod
    def from_settings(cls, client: AsyncRedis, settings: Settings) -> WindowStore:
        return cls(
            client,
            prefix=settings.redis_prefix,
            bucket_ttl_s=settings.bucket_ttl_s,
            day_ttl_s=settings.day_ttl_s,
            session_ttl_s=settings.session_ttl_s,
            visitor_ttl_s=settings.visitor_ttl_s,
        )

    def keys(self, topic: str, partition: int) -> PartitionKeys:
        return PartitionKeys(self.prefix, topic, partition)

    async def claim(self, keys: PartitionKeys) -> Claim:
        await self.client.sadd(f"{self.prefix}:partitions", keys.tag)
        epoch, offset, watermark, flat, fresh = await self._claim(
            keys=[keys.key("epoch"), keys.key("meta"), keys.state]
        )
        return Claim(
            fresh=bool(int(fresh)),
            epoch=int(epoch),
            next_offset=int(offset) if offset else None,
            watermark_ms=int(watermark) if watermark else 0,
            state={_bytes(flat[i]): _bytes(flat[i + 1]) for i in range(0, len(flat), 2)},
        )

    async def admit(
        self,
        dimension: str,
        values: Iterable[str],
        *,
        max_values: int,
        now_ms: int,
        idle_ms: int = 0,
    ) -> Admission:
        """Refresh and admit ``values`` into the dimension's budget (one atomic step)."""
        keys = label_keys(self.prefix, dimension)
        members, freed = await self._admit(
            keys=list(keys), args=[max_values, now_ms, idle_ms, *sorted(values)]
        )
        return Admission({_text(m) for m in members}, int(freed))

    async def count_fenced(self) -> None:
        """One write rejected by the fence (outside any partition: it has no owner here)."""
        await self.client.incr(f"{self.prefix}:fenced_writes")

    async def count_state_reset(self) -> None:
        await self.client.incr(f"{self.prefix}:state_resets")

    async def report_live(self, statuses: dict[PartitionKeys, LiveStatus], *, now_ms: int) -> None:
        """Write each owned partition's live view (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for keys, status in statuses.items():
            stalled = status.stalled_offset
            pipe.hset(
                keys.key("live"),
                mapping={
                    "end": status.end_offset,
                    "stalled": 0 if stalled is None else 1,
                    "stalled_offset": "" if stalled is None else stalled,
                    "at_ms": now_ms,
                },
            )
        await pipe.execute()

    async def enrich(
        self,
        keys: PartitionKeys,
        admissions: Sequence[AdmitRequest],
        visitors: list[VisitorKey],
        *,
        now_ms: int,
        idle_ms: int,
    ) -> Enrichment:
        """One round trip: an admission script call per dimension (each atomic on its own)
        and one MGET for the visitors (only the partition's owner writes them: no race).
        On a cluster the label budgets and the partition live on different nodes, and
        redis-py's cluster pipeline refuses scripts: the calls go side by side instead."""
        if not admissions and not visitors:
            return Enrichment([], {})
        calls: list[tuple[list[str], list[str | int]]] = [
            (
                list(label_keys(self.prefix, request.dimension)),
                [request.max_values, now_ms, idle_ms, *sorted(request.values)],
            )
            for request in admissions
        ]
        wanted = [keys.visitor(v) for v in visitors]
        replies: list[Any]
        if isinstance(self.client, aioredis.RedisCluster):
            found: list[Awaitable[Any]] = [self._admit(keys=k, args=a) for k, a in calls]
            if wanted:
                found.append(self.client.mget(wanted))  # one slot: the partition's
            replies = list(await asyncio.gather(*found))
        else:
            pipe = self.client.pipeline(transaction=False)
            for k, a in calls:
                await self._admit(keys=k, args=a, client=pipe)
            if wanted:
                pipe.mget(wanted)
            replies = await pipe.execute()
        done = [
            Admission({_text(m) for m in members}, int(freed))
            for members, freed in replies[: len(admissions)]
        ]
        loaded: dict[VisitorKey, Visitor | None] = {}
        if visitors:
            for visitor, value in zip(visitors, replies[-1], strict=True):
                loaded[visitor] = None if value is None else decode_visitor(_bytes(value))
        return Enrichment(done, loaded)

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
    ) -> None:
        """Apply ``delta`` and move the stored offset from ``expected_offset`` to
        ``next_offset``. ``first_offset`` is the batch's first record (None: a batch without
        records); it must equal the expected offset plus the ``skipped`` offsets the caller
        confirmed empty, or nothing is written (:class:`OffsetGap`)."""
        if first_offset is None:
            first_offset = next_offset if expected_offset is None else expected_offset
        by_key: dict[str, Counter[str]] = defaultdict(Counter)
        ttls: dict[str, int] = {}
        for (minute, name), n in delta.buckets.items():
            if n:
                for key in (keys.minute(minute), keys.hour(minute // HOUR_MINUTES)):
                    by_key[key][name] += n
                    ttls[key] = self.bucket_ttl_s
        for (day, name), n in delta.days.items():
            if n:
                by_key[keys.day(day)][name] += n
                ttls[keys.day(day)] = self.day_ttl_s
        hlls: dict[str, set[str]] = defaultdict(set)
        for (minute, site), visitor_ids in delta.uniques.items():
            hlls[keys.uniques_minute(minute, site)] |= visitor_ids
            hlls[keys.uniques_hour(minute // HOUR_MINUTES, site)] |= visitor_ids
        bucket_keys = [k for k, counts in by_key.items() if any(counts.values())]
        visitor_keys = list(delta.visitors)
        args: list[Any] = [
            epoch,
            "" if expected_offset is None else expected_offset,
            next_offset,
            delta.watermark_ms,
            self.session_ttl_s,
            self.visitor_ttl_s,
            len(bucket_keys),
            len(hlls),
            len(visitor_keys),
            first_offset,
            skipped,
            _CHANGES(
                (
                    _flat(delta.totals),
                    _flat(delta.health),
                    _flat(delta.gauges),
                    [(ttls[key], _flat(by_key[key])) for key in bucket_keys],
                    [(self.bucket_ttl_s, list(members)) for members in hlls.values()],
                )
            ),
        ]
        args += (
            b"" if (visitor := delta.visitors[v]) is None else encode_visitor(visitor)
            for v in visitor_keys
        )
        args.append(len(delta.state_set))
        for state_key, encoded in delta.state_set.items():
            args += (state_key, encoded)
        args.append(len(delta.state_del))
        args += delta.state_del
        result = await self._commit(
            keys=[
                keys.key("epoch"),
                keys.key("meta"),
                keys.state,
                keys.key("totals"),
                keys.key("gauges"),
                keys.key("health"),
                *bucket_keys,
                *hlls,
                *(keys.visitor(v) for v in visitor_keys),
            ],
            args=args,
        )
        if result[0] == -1:
            raise Fenced(f"partition {keys.tag}: epoch {epoch} is stale (now {result[1]!r})")
        if result[0] == -2:
            raise OffsetMismatch(
                f"partition {keys.tag}: expected offset {expected_offset}, Redis has {result[1]!r}"
            )
        if result[0] == -3:
            raise StateLost(f"partition {keys.tag}: Redis has no state for it (no epoch)")
        if result[0] == -4:
            raise OffsetGap(
                f"partition {keys.tag}: the batch starts at offset {first_offset}, "
                f"the stored offset is {result[1]!r}"
            )


#: The batch's counters travel as one MessagePack argument (see commit.lua): one string for
#: the client to send and for Redis to parse, not thousands.
_CHANGES = msgspec.msgpack.Encoder().encode
#: Lua numbers are doubles: larger integers travel as text (HINCRBY takes either).
_EXACT = 2**53


def _flat(counts: Mapping[str, int]) -> list[str | int]:
    """The non-zero counts as ``[name, count, ...]``."""
    out: list[str | int] = []
    for name, n in counts.items():
        if n:
            out += (name, n if -_EXACT < n < _EXACT else str(n))
    return out


class WindowReader:
    """Synchronous reader used by the exporter at scrape time."""

    def __init__(self, client: SyncRedis, *, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def label_use(self, budgets: dict[str, int]) -> dict[str, LabelUse]:
        """Each budgeted dimension's size, admitted values and refused values."""
        pipe = self.client.pipeline(transaction=False)
        names = list(budgets)
        for name in names:
            members, refused = label_keys(self.prefix, name)
            pipe.zcard(members)
            _pfcount(pipe, refused)
        replies = pipe.execute()
        return {
            name: LabelUse(budgets[name], int(replies[2 * i]), int(replies[2 * i + 1]))
            for i, name in enumerate(names)
        }

    def snapshot(
        self,
        windows_min: dict[str, int],
        long_windows: dict[str, int] | None = None,
        label_budgets: dict[str, int] | None = None,
    ) -> StoreSnapshot:
        """Totals, each rolling window (minute precision) and each long window (day
        precision, day buckets only) ending at the newest watermark of any partition."""
        tags = sorted(_text(t) for t in self.client.smembers(f"{self.prefix}:partitions"))
        parts = [PartitionKeys.from_tag(self.prefix, t) for t in tags]
        pipe = self.client.pipeline(transaction=False)
        for p in parts:
            pipe.hgetall(p.key("totals"))
            pipe.hmget(p.key("meta"), "watermark", "offset")
            pipe.hgetall(p.key("gauges"))
            pipe.hmget(p.key("live"), "end", "stalled", "at_ms")
            pipe.hgetall(p.key("health"))
        # Two keys in two hash slots: one GET each (a cluster refuses such an MGET).
        pipe.get(f"{self.prefix}:fenced_writes")
        pipe.get(f"{self.prefix}:state_resets")
        *replies, fenced, resets = pipe.execute()
        totals: Counter[str] = Counter()
        gauges: Counter[str] = Counter()
        health: Counter[str] = Counter()
        watermark: int | None = None
        status: dict[str, PartitionStatus] = {}
        for i, p in enumerate(parts):
            _add(totals, replies[5 * i])
            _add(gauges, replies[5 * i + 2])
            _add(health, replies[5 * i + 4])
            wm, offset = replies[5 * i + 1]
            end, stalled, reported = replies[5 * i + 3]
            status[p.tag] = PartitionStatus(
                offset=_int(offset),
                watermark_ms=_int(wm),
                end_offset=_int(end),
                stalled=stalled is not None and int(stalled) == 1,
                reported_ms=_int(reported),
            )
            if wm is not None and (watermark is None or int(wm) > watermark):
                watermark = int(wm)
        labels = self.label_use(label_budgets or {})

        def made() -> StoreSnapshot:
            return StoreSnapshot(
                watermark,
                totals,
                windows,
                len(parts),
                uniques,
                gauges,
                fenced_writes=int(fenced or 0),
                state_resets=int(resets or 0),
                partition_status=status,
                labels=labels,
                health=health,
                long_windows=frozenset(long_windows or ()),
            )

        long_windows = long_windows or {}
        windows: dict[str, Counter[str]] = {
            name: Counter() for name in [*windows_min, *long_windows]
        }
        uniques: dict[str, Counter[str]] = {name: Counter() for name in windows_min}
        if watermark is None or not parts:
            return made()
        covers = {
            name: window_cover(*window_minutes(minutes, watermark))
            for name, minutes in windows_min.items()
        }
        last_day = day_of(watermark)
        day_ranges = {
            name: range(last_day - days + 1, last_day + 1) for name, days in long_windows.items()
        }
        sites = sorted(label_values(totals, K.SESSIONS, "site"))
        wanted: dict[str, int] = {}
        for p in parts:
            for minutes, hours in covers.values():
                for m in minutes:
                    wanted.setdefault(p.minute(m), len(wanted))
                for h in hours:
                    wanted.setdefault(p.hour(h), len(wanted))
            for days_range in day_ranges.values():
                for d in days_range:
                    wanted.setdefault(p.day(d), len(wanted))
        pipe = self.client.pipeline(transaction=False)
        for key in wanted:
            pipe.hgetall(key)
        # Visitors are keyed to one partition, so per-partition counts add up exactly.
        counted: list[tuple[str, str]] = []
        for name, (minutes, hours) in covers.items():
            for p in parts:
                for site in sites:
                    hll_keys = [p.uniques_minute(m, site) for m in minutes]
                    hll_keys += [p.uniques_hour(h, site) for h in hours]
                    _pfcount(pipe, *hll_keys)
                    counted.append((name, site))
        contents = pipe.execute()
        for name, (minutes, hours) in covers.items():
            counter = windows[name]
            for p in parts:
                for m in minutes:
                    _add(counter, contents[wanted[p.minute(m)]])
                for h in hours:
                    _add(counter, contents[wanted[p.hour(h)]])
        for name, days_range in day_ranges.items():
            for p in parts:
                for d in days_range:
                    _add(windows[name], contents[wanted[p.day(d)]])
        for (name, site), n in zip(counted, contents[len(wanted) :], strict=True):
            uniques[name][site] += int(n)
        return made()


def _pfcount(pipe: Any, *keys: str) -> None:
    """PFCOUNT into a pipeline. redis-py's cluster pipeline refuses ``pfcount`` (it could
    name keys of several slots); these keys always share one slot (a partition's, or the
    labels'), which the cluster routes as any single-slot command."""
    pipe.execute_command("PFCOUNT", *keys)


def _int(value: bytes | str | None) -> int | None:
    return None if value is None or value in (b"", "") else int(value)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _add(counter: Counter[str], mapping: dict[Any, Any]) -> None:
    for name, value in mapping.items():
        counter[_text(name)] += int(value)
