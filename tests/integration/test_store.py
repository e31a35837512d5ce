"""The store's atomic step against a real redis-server: every part of a delta lands where
the key layout says, with exact values (the changes travel as one MessagePack argument, and
integers beyond a Lua double's exact range as text)."""

from __future__ import annotations

from collections import Counter

import redis.asyncio as aioredis

from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.visitor import Visitor, decode_visitor
from kpistream.sinks.window_store import WindowStore

MINUTE = 29_396_670  # an event-time minute; its hour is MINUTE // 60
HUGE = 2**60 + 1  # beyond 2^53: a double would round it


async def test_one_step_writes_every_part_of_the_delta_exactly(settings_factory) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory()
    client = aioredis.Redis.from_url(settings.redis)
    store = WindowStore.from_settings(client, settings)
    keys = store.keys(settings.clickstream_topic, 0)
    claim = await store.claim(keys)
    gone = ("shop", "erased")
    delta = BatchDelta(
        buckets=Counter({(MINUTE, "pv\x1fshop"): 3, (MINUTE + 1, "pv\x1fshop"): -1}),
        totals=Counter({"pv\x1fshop": 2, "rev\x1fshop\x1fEUR": HUGE, "zero": 0}),
        health=Counter({H.PROCESSED: 5, H.LATE: 1}),
        days=Counter({(20_414, "ld\x1fshop"): 1}),
        uniques={(MINUTE, "shop"): {"a", "b"}},
        state_set={b"k1": b"\x00\xffsession"},
        visitors={("shop", "a"): Visitor(123, lead_ms=456), gone: None},
        gauges={"fo\x1fx\x1facme": 1000},
        watermark_ms=MINUTE * 60_000,
    )
    await client.set(keys.visitor(gone), b"old")
    await client.hset(keys.state, b"k0", b"before")
    delta.state_del = {b"k0"}
    await store.commit(keys, epoch=claim.epoch, expected_offset=None, next_offset=9, delta=delta)

    async def hash_of(key: str) -> dict[bytes | str, bytes | str]:
        return dict(await client.hgetall(key))

    assert await hash_of(keys.key("totals")) == {
        b"pv\x1fshop": b"2",
        b"rev\x1fshop\x1fEUR": str(HUGE).encode(),
    }
    assert await hash_of(keys.key("health")) == {b"_processed": b"5", b"_late": b"1"}
    assert await hash_of(keys.key("gauges")) == {b"fo\x1fx\x1facme": b"1000"}
    assert await hash_of(keys.minute(MINUTE)) == {b"pv\x1fshop": b"3"}
    assert await hash_of(keys.minute(MINUTE + 1)) == {b"pv\x1fshop": b"-1"}
    assert await hash_of(keys.hour(MINUTE // 60)) == {b"pv\x1fshop": b"2"}
    assert await hash_of(keys.day(20_414)) == {b"ld\x1fshop": b"1"}
    assert 0 < await client.ttl(keys.minute(MINUTE)) <= settings.bucket_ttl_s
    assert await client.pfcount(keys.uniques_minute(MINUTE, "shop")) == 2
    assert await client.pfcount(keys.uniques_hour(MINUTE // 60, "shop")) == 2
    assert await hash_of(keys.state) == {b"k1": b"\x00\xffsession"}  # k0 deleted
    stored = await client.get(keys.visitor(("shop", "a")))
    assert isinstance(stored, bytes) and decode_visitor(stored) == Visitor(123, lead_ms=456)
    assert await client.exists(keys.visitor(gone)) == 0
    assert await client.hmget(keys.key("meta"), "offset", "watermark") == [
        b"9",
        str(MINUTE * 60_000).encode(),
    ]
    # Counts add up across steps, the huge one exactly.
    again = BatchDelta(totals=Counter({"rev\x1fshop\x1fEUR": HUGE}), watermark_ms=1)
    await store.commit(keys, epoch=claim.epoch, expected_offset=9, next_offset=10, delta=again)
    assert await client.hget(keys.key("totals"), "rev\x1fshop\x1fEUR") == str(2 * HUGE).encode()
    await client.aclose()


async def test_kept_records_and_counters_never_expire_and_erase(settings_factory) -> None:  # type: ignore[no-untyped-def]
    """The customer family's records and day counters: stored without expiry beside the
    expiring ones of the same step, read back as stored, an erased record deleted."""
    settings = settings_factory()
    client = aioredis.Redis.from_url(settings.redis)
    store = WindowStore.from_settings(client, settings)
    keys = store.keys("orders", 0)
    claim = await store.claim(keys)
    erased = ("shop", "c-gone")
    await client.set(keys.visitor(erased), b"old")
    delta = BatchDelta(
        records={("shop", "c-1"): b"\x93\x81\x01\x01\x90\x90", erased: None},
        kept=Counter({(20_514, "cu_sn\x1fshop"): 1, (20_544, "cu_e\x1fshop"): 1}),
        days=Counter({(20_514, "ld\x1fshop"): 1}),
        visitors={("shop", "v"): Visitor(1)},
        watermark_ms=1,
    )
    await store.commit(keys, epoch=claim.epoch, expected_offset=None, next_offset=3, delta=delta)
    assert await client.get(keys.visitor(("shop", "c-1"))) == b"\x93\x81\x01\x01\x90\x90"
    assert await client.ttl(keys.visitor(("shop", "c-1"))) == -1  # no expiry
    assert await client.exists(keys.visitor(erased)) == 0
    assert await client.hgetall(keys.kept(20_514)) == {b"cu_sn\x1fshop": b"1"}
    assert await client.hgetall(keys.kept(20_544)) == {b"cu_e\x1fshop": b"1"}
    assert await client.ttl(keys.kept(20_514)) == -1
    assert 0 < await client.ttl(keys.day(20_514)) <= settings.day_ttl_s
    assert 0 < await client.ttl(keys.visitor(("shop", "v"))) <= settings.visitor_ttl_s
    found = await store.enrich(keys, [], [("shop", "c-1"), ("shop", "c-2")], now_ms=1, idle_ms=1)
    assert found.visitors == {("shop", "c-1"): b"\x93\x81\x01\x01\x90\x90", ("shop", "c-2"): None}
    await client.aclose()
