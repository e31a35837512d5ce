"""The Redis window store's writer: per-partition state, bucketed counters and the atomic
commit (the reader: :mod:`kpistream.sinks.store_reader`; what it reads:
:mod:`kpistream.contract.read_model`).

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
``P:{t:n}:k:<day>``            hash    counters kept without expiry (the customer counters)
``P:{t:n}:u:m:<minute>:<site>`` HLL    visitors of a site in a minute (``u:h:<hour>:``: hour)
``P:{t:n}:v:<n>:<site>:<id>``  string  one visitor's state (first seen, lead, first purchase),
                                       TTL = the visitor retention; on the orders
                                       topic a customer's record, kept without expiry
``P:partitions``               set     the ``t:n`` tags that have state (for the exporter)
``P:fenced_writes``            string  batches a stale owner tried to commit (rejected)
``P:state_resets``             string  partitions found without state (Redis lost its data)
                                       and rebuilt from the earliest retained offset
``P:{labels}:<dimension>``     zset    admitted label values of a bounded dimension, each
                                       scored with when a worker last saw it (ms)
``P:{labels}:refused:<dim>``   HLL     distinct values refused a label (budget full)
=============================  ======  ====================================================

Field names inside the hashes are defined in :mod:`kpistream.kpis.fields`. Buckets and sessions
expire (wall-clock TTL refreshed on write): no per-visitor state outlives the retention. The
customer zone's records and counters (``k:``; a delta's ``records`` and ``kept``) are the
exception: a customer's history is what retention and churn are made of; erasure removes a
customer's record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from kpistream.config.connections import AsyncRedis
from kpistream.config.settings import Settings
from kpistream.contract.delta import BatchDelta
from kpistream.contract.keys import PartitionKeys, label_keys
from kpistream.contract.store import (
    Admission,
    AdmitRequest,
    Claim,
    Enrichment,
    LiveStatus,
)
from kpistream.contract.visitor import VisitorKey
from kpistream.sinks.commit_args import Lifetimes, Positions, arguments, refusal
from kpistream.sinks.redis_values import as_bytes, as_int, as_text


def _script(name: str) -> str:
    return resources.files("kpistream.sinks").joinpath(name).read_text()


COMMIT_LUA = _script("commit.lua")
CLAIM_LUA = _script("claim.lua")
ADMIT_LUA = _script("admit.lua")


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

    # -- what erasure checks (`kpistream forget`) ----------------------------------------------

    async def stored_offset(self, keys: PartitionKeys) -> int | None:
        """The next offset the partition's owner reads: what it has counted."""
        return as_int(await self.client.hget(keys.key("meta"), "offset"))

    async def state_keys(self, keys: PartitionKeys) -> list[bytes]:
        """The keys of the partition's keyed state (its open sessions)."""
        return [as_bytes(k) for k in await self.client.hkeys(keys.state)]

    async def has_visitor(self, keys: PartitionKeys, visitor: VisitorKey) -> bool:
        return bool(await self.client.exists(keys.visitor(visitor)))

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
            state={as_bytes(flat[i]): as_bytes(flat[i + 1]) for i in range(0, len(flat), 2)},
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
        return Admission({as_text(m) for m in members}, int(freed))

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
            Admission({as_text(m) for m in members}, int(freed))
            for members, freed in replies[: len(admissions)]
        ]
        loaded: dict[VisitorKey, bytes | None] = {}
        if visitors:
            for visitor, value in zip(visitors, replies[-1], strict=True):
                loaded[visitor] = None if value is None else as_bytes(value)
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
        script_keys, args = arguments(
            keys,
            delta,
            Positions(epoch, expected_offset, next_offset, first_offset, skipped),
            Lifetimes(self.session_ttl_s, self.visitor_ttl_s, self.bucket_ttl_s, self.day_ttl_s),
        )
        result = await self._commit(keys=script_keys, args=args)
        refused = refusal(
            result, keys.tag, epoch=epoch, expected=expected_offset, first=first_offset
        )
        if refused is not None:
            raise refused
