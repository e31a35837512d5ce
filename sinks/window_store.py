"""The Redis window store: per-partition state, bucketed counters and the atomic commit.

Key layout (``P`` is the configured prefix, ``{t:n}`` the hash tag of topic ``t`` partition
``n``; every key one atomic step touches carries the same tag, so the code runs unchanged on a
Redis Cluster):

=============================  ======  ====================================================
key                            type    holds
=============================  ======  ====================================================
``P:{t:n}:epoch``              string  owner epoch; a new owner INCRs it, fencing the old one
``P:{t:n}:meta``               hash    ``offset`` (next offset to read), ``watermark`` (ms)
``P:{t:n}:sessions``           hash    open sessions: msgpack (site, visitor, sid) -> list
``P:{t:n}:totals``             hash    monotonic counters (KPI numerators/denominators,
                                       events processed/late/rejected, batch histogram)
``P:{t:n}:m:<minute>``         hash    window counters of one event-time minute
``P:{t:n}:h:<hour>``           hash    the same counters per event-time hour
``P:partitions``               set     the ``t:n`` tags that have state (for the exporter)
``P:labels:<dimension>``       set     admitted label values of a bounded dimension
=============================  ======  ====================================================

Field names inside the hashes are defined in :mod:`sinks.fields`. Buckets and sessions expire
(wall-clock TTL refreshed on write): no per-visitor state outlives the retention.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import redis.asyncio as aioredis

from sinks.buckets import HOUR_MINUTES, window_cover, window_minutes
from streams.sessionizer import Session, SessionKey, decode_key, decode_sessions, encode_key
from streams.sessionizer import encode_sessions as _encode_sessions


def _script(name: str) -> str:
    return resources.files("sinks").joinpath(name).read_text()


COMMIT_LUA = _script("commit.lua")
CLAIM_LUA = _script("claim.lua")
ADMIT_LUA = _script("admit.lua")


class Fenced(Exception):
    """Another worker owns the partition now (its epoch is newer than ours)."""


class OffsetMismatch(Exception):
    """Redis holds another position than we expected (e.g. it restarted from an older snapshot)."""


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    prefix: str
    topic: str
    partition: int

    @classmethod
    def from_tag(cls, prefix: str, tag: str) -> PartitionKeys:
        topic, _, partition = tag.rpartition(":")
        return cls(prefix, topic, int(partition))

    @property
    def tag(self) -> str:
        return f"{self.topic}:{self.partition}"

    def key(self, name: str) -> str:
        return f"{self.prefix}:{{{self.tag}}}:{name}"

    def minute(self, minute: int) -> str:
        return self.key(f"m:{minute}")

    def hour(self, hour: int) -> str:
        return self.key(f"h:{hour}")


@dataclass(slots=True)
class Claim:
    epoch: int
    next_offset: int | None
    watermark_ms: int
    sessions: dict[SessionKey, list[Session]]


@dataclass(slots=True)
class StoreSnapshot:
    """Global state summed over all partitions, as the exporter reads it."""

    watermark_ms: int | None
    totals: Counter[str]
    windows: dict[str, Counter[str]]
    partitions: int


class WindowStore:
    """Async writer used by the stream workers."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str, bucket_ttl_s: int, session_ttl_s: int
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.bucket_ttl_s = bucket_ttl_s
        self.session_ttl_s = session_ttl_s
        self._commit = client.register_script(COMMIT_LUA)
        self._claim = client.register_script(CLAIM_LUA)
        self._admit = client.register_script(ADMIT_LUA)

    def keys(self, topic: str, partition: int) -> PartitionKeys:
        return PartitionKeys(self.prefix, topic, partition)

    async def claim(self, keys: PartitionKeys) -> Claim:
        await self.client.sadd(f"{self.prefix}:partitions", keys.tag)
        epoch, offset, watermark, flat = await self._claim(
            keys=[keys.key("epoch"), keys.key("meta"), keys.key("sessions")]
        )
        sessions = {
            decode_key(flat[i]): decode_sessions(flat[i + 1]) for i in range(0, len(flat), 2)
        }
        return Claim(
            epoch=int(epoch),
            next_offset=int(offset) if offset else None,
            watermark_ms=int(watermark) if watermark else 0,
            sessions=sessions,
        )

    async def admit(self, dimension: str, values: Iterable[str], *, max_values: int) -> set[str]:
        members = await self._admit(
            keys=[f"{self.prefix}:labels:{dimension}"], args=[max_values, *sorted(values)]
        )
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    async def commit(
        self,
        keys: PartitionKeys,
        *,
        epoch: int,
        expected_offset: int | None,
        next_offset: int,
        watermark_ms: int,
        totals: Counter[str],
        buckets: Counter[tuple[int, str]],
        sessions: dict[SessionKey, list[Session]],
        touched: Iterable[SessionKey],
        evicted: Iterable[SessionKey],
    ) -> None:
        by_key: dict[str, Counter[str]] = defaultdict(Counter)
        for (minute, name), delta in buckets.items():
            if delta:
                by_key[keys.minute(minute)][name] += delta
                by_key[keys.hour(minute // HOUR_MINUTES)][name] += delta
        args: list[Any] = [
            epoch,
            "" if expected_offset is None else expected_offset,
            next_offset,
            watermark_ms,
            self.bucket_ttl_s,
            self.session_ttl_s,
        ]
        _pairs(args, totals)
        bucket_keys = list(by_key)
        for key in bucket_keys:
            _pairs(args, by_key[key])
        live = [k for k in touched if k in sessions]
        args.append(len(live))
        for session_key in live:
            args += (encode_key(session_key), _encode_sessions(sessions[session_key]))
        gone = list(evicted)
        args.append(len(gone))
        args += (encode_key(k) for k in gone)
        result = await self._commit(
            keys=[
                keys.key("epoch"),
                keys.key("meta"),
                keys.key("sessions"),
                keys.key("totals"),
                *bucket_keys,
            ],
            args=args,
        )
        if result[0] == -1:
            raise Fenced(f"partition {keys.tag}: epoch {epoch} is stale (now {result[1]!r})")
        if result[0] == -2:
            raise OffsetMismatch(
                f"partition {keys.tag}: expected offset {expected_offset}, Redis has {result[1]!r}"
            )


def _pairs(args: list[Any], counts: Counter[str]) -> None:
    items = [(k, v) for k, v in counts.items() if v]
    args.append(len(items))
    for name, delta in items:
        args += (name, delta)


class WindowReader:
    """Synchronous reader used by the exporter at scrape time."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def snapshot(self, windows_min: dict[str, int]) -> StoreSnapshot:
        tags = sorted(_text(t) for t in self.client.smembers(f"{self.prefix}:partitions"))
        parts = [PartitionKeys.from_tag(self.prefix, t) for t in tags]
        pipe = self.client.pipeline(transaction=False)
        for p in parts:
            pipe.hgetall(p.key("totals"))
            pipe.hget(p.key("meta"), "watermark")
        replies = pipe.execute()
        totals: Counter[str] = Counter()
        watermark: int | None = None
        for i in range(len(parts)):
            _add(totals, replies[2 * i])
            wm = replies[2 * i + 1]
            if wm is not None and (watermark is None or int(wm) > watermark):
                watermark = int(wm)
        windows: dict[str, Counter[str]] = {name: Counter() for name in windows_min}
        if watermark is None or not parts:
            return StoreSnapshot(watermark, totals, windows, len(parts))
        covers = {
            name: window_cover(*window_minutes(minutes, watermark))
            for name, minutes in windows_min.items()
        }
        wanted: dict[str, int] = {}
        for p in parts:
            for minutes, hours in covers.values():
                for m in minutes:
                    wanted.setdefault(p.minute(m), len(wanted))
                for h in hours:
                    wanted.setdefault(p.hour(h), len(wanted))
        pipe = self.client.pipeline(transaction=False)
        for key in wanted:
            pipe.hgetall(key)
        contents = pipe.execute()
        for name, (minutes, hours) in covers.items():
            counter = windows[name]
            for p in parts:
                for m in minutes:
                    _add(counter, contents[wanted[p.minute(m)]])
                for h in hours:
                    _add(counter, contents[wanted[p.hour(h)]])
        return StoreSnapshot(watermark, totals, windows, len(parts))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _add(counter: Counter[str], mapping: dict[Any, Any]) -> None:
    for name, value in mapping.items():
        counter[_text(name)] += int(value)
