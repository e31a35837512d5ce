"""Producers we did not write: librdkafka (confluent-kafka) with every codec and its own
partitioners, and a worker whose install cannot read a codec (issue 9)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer

from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.routing import owner, ownership_key
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.produce import produce, route
from kpistream.runtime import ensure_topics, spawn, stop
from tests.faults import oracle
from tests.faults.common import LINES, WORKER, now_ms, settings_for, website_only, worker_env
from tests.support.known_events import Samples, samples
from tests.support.stack import start_streams
from tests.support.waits import counted, scrape_text, wait_for_totals, wait_until

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
#: How librdkafka places records: keyed by visitor_id with its default partitioner (CRC32 of
#: the key), unkeyed (a random partition), and a random key per record hashed like the Java
#: client does (murmur2).
PLACEMENTS = {
    "keyed": "consistent_random",
    "unkeyed": "random",
    "random-key": "murmur2_random",
}


def five_visitors(site: str, base_ms: int) -> list[dict[str, Any]]:
    """a: 2 page views, cart, purchase 10 EUR.  b: page view, cart (abandoned).  c: one page
    view (a bounce).  d: 3 page views.  e: page view, ad click, purchase 5 EUR.
    -> 5 sessions, 8 page views, 1 bounce, carts 1 completed + 1 abandoned, 2 orders 15 EUR,
    purchase conversion 2/5, pages per session 1.6."""
    out: list[dict[str, Any]] = []

    def add(kind: str, at_s: float, visitor: str, **fields: Any) -> None:
        event_id = f"{site}-{visitor}-{len(out)}"
        ts = base_ms + int(at_s * 1000)
        out.append({"event_id": event_id, "type": kind, "ts": ts, "site": site, **fields})
        out[-1]["visitor_id"] = visitor

    add("page_view", 0, "a", path="/")
    add("page_view", 1, "a", path="/pricing")
    add("add_to_cart", 2, "a", item_id="sku-1")
    add("purchase", 3, "a", value=10.0, currency="EUR")
    add("page_view", 1, "b", path="/")
    add("add_to_cart", 2, "b", item_id="sku-2")
    add("page_view", 2, "c", path="/")
    add("page_view", 0, "d", path="/")
    add("page_view", 2, "d", path="/a")
    add("page_view", 4, "d", path="/b")
    add("page_view", 3, "e", path="/")
    add("click", 4, "e", item_kind="ad", item_id="ad-1")
    add("purchase", 5, "e", value=5.0, currency="EUR")
    return out


def expected(site: str) -> Samples:
    s, w = ("site", site), ("window", "24h")
    return {
        ("kpi_sessions_total", (s,)): 5,
        ("kpi_page_views_total", (s,)): 8,
        ("kpi_non_bounced_sessions_total", (s,)): 4,
        ("kpi_carts_completed_total", (s,)): 1,
        ("kpi_carts_abandoned_total", (s,)): 1,
        ("kpi_orders_total", (("currency", "EUR"), s)): 2,
        ("kpi_revenue_total", (("currency", "EUR"), s)): 15,
        ("kpi_conversions_total", (("goal", "purchase"), s)): 2,
        ("kpi_new_visitors_total", (s,)): 5,
        ("kpi_bounce_rate", (s, w)): 0.2,
        ("kpi_pages_per_session", (s, w)): 1.6,
        ("kpi_cart_abandonment_rate", (s, w)): 0.5,
        ("kpi_conversion_rate", (("goal", "purchase"), s, w)): 0.4,
        ("kpi_unique_visitors", (s, w)): 5,
    }


def closers(settings: Settings, ts_ms: int) -> list[bytes]:
    """One page view per clickstream partition, owned by it, at ``ts_ms``."""
    out: dict[int, bytes] = {}
    i = 0
    while len(out) < settings.partitions:
        event = {"event_id": f"c{i}", "type": "page_view", "ts": ts_ms, "site": "later"}
        event.update(visitor_id=f"c{i}", path="/")
        target = owner(ownership_key("later", f"c{i}"), settings.partitions)
        out.setdefault(target, json.dumps(event).encode())
        i += 1
    return list(out.values())


def librdkafka(settings: Settings, **config: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka,
            # Several records per compressed batch, as a real collector sends them.
            "linger.ms": 20,
            "batch.num.messages": 8,
            **config,
        }
    )


def flush(producer: Producer) -> None:
    assert producer.flush(30) == 0, "librdkafka could not deliver every record"


async def test_librdkafka_with_every_codec_and_partitioner_gives_exact_kpis(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """Fifteen sites, each fed the same five visitors by librdkafka with one codec (none,
    gzip, snappy, lz4, zstd) and one placement (keyed by visitor with librdkafka's CRC32,
    unkeyed, random keys hashed with murmur2). The worker forwards every event that landed
    on a partition that does not own it, and every site's KPIs are exactly the hand-computed
    ones: 5 sessions, not 9 to 18; completed carts; 1.6 pages per session.

    Each visitor's events span 5 s, well within the allowed lateness (120 s), so forwarded
    events that reach their owner out of order are still on time. Once everything is
    consumed, one later event per partition (sent by kpistream to its owner) moves every
    watermark past the sessions' gap and lateness, which decides them."""
    settings = settings_for(settings_factory, max_sites=50)
    await ensure_topics(settings)
    await start_streams(workers, settings)
    base = now_ms() - 2 * 3_600_000
    sites = {}
    for codec in CODECS:
        for placement, partitioner in PLACEMENTS.items():
            site = f"{codec}-{placement}"
            producer = librdkafka(settings, **{"compression.type": codec}, partitioner=partitioner)
            for event in five_visitors(site, base):
                key = {
                    "keyed": event["visitor_id"].encode(),
                    "unkeyed": None,
                    "random-key": uuid.uuid4().bytes,
                }[placement]
                producer.produce(settings.clickstream_topic, json.dumps(event).encode(), key=key)
            sites[site] = producer
    for producer in sites.values():
        await asyncio.to_thread(flush, producer)
    await oracle.wait_consumed(settings)  # forwarded copies included
    later = base + (settings.session_gap_s + 2 * settings.allowed_lateness_s) * 1000
    await produce(settings, closers(settings, later))
    await wait_for_totals(
        settings, {fields.field(K.ENDED.code, site): 5 for site in sites}, timeout_s=60
    )
    log = await oracle.wait_consumed(settings)
    got = samples(await scrape_text(settings))
    for site in sites:
        for key, value in expected(site).items():
            assert got.get(key) == value, (key, got.get(key), value)
    # Every record of the log counted once: each original processed or forwarded, each
    # forwarded copy processed; none late, duplicate or rejected.
    health = oracle.stored(settings).health
    produced = 13 * len(sites) + settings.partitions
    forwarded = sum(sum(flags) for flags in log.forwarded.values())
    assert health[H.PROCESSED] == produced
    assert health[H.REROUTED] == forwarded > produced // 2  # most land on a foreign partition
    assert counted(health) == sum(len(values) for values in log.values()) == produced + forwarded
    assert got[("kpistream_events_rerouted_total", ())] == forwarded


#: A package that shadows cramjam, so this worker's aiokafka has no snappy, lz4 or zstd.
NO_CODECS = 'raise ImportError("hidden by the test: this install has no snappy, lz4 or zstd")\n'


async def test_a_batch_the_worker_cannot_read_stalls_only_its_own_partition(  # type: ignore[no-untyped-def]
    settings_factory, workers, tmp_path: Path
) -> None:
    """Partition 0 of three gets zstd batches from librdkafka; the worker's install cannot
    read zstd. The other partitions are counted to their end and no stored offset ever
    passes a record that was not counted; partition 0 is reported stalled at offset 0 (log
    line, `kpistream_partition_stalled`), its lag is live and grows with new records. A
    worker that can read zstd then counts everything: the state is exactly the oracle's."""
    settings = settings_for(settings_factory, partitions=3, batch_max_records=50)
    await ensure_topics(settings)
    by_owner: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for line in website_only(LINES):
        _, _, owned_by = route(line, settings)
        assert owned_by is not None
        by_owner[owner(owned_by, 3)].append(line)
    zstd = librdkafka(settings, **{"compression.type": "zstd"})
    plain = librdkafka(settings)
    first = by_owner[0][:-10]
    for line in first:
        zstd.produce(settings.clickstream_topic, line, partition=0)
    for partition in (1, 2):
        for line in by_owner[partition]:
            plain.produce(settings.clickstream_topic, line, partition=partition)
    await asyncio.to_thread(flush, zstd)
    await asyncio.to_thread(flush, plain)
    shim = tmp_path / "shim" / "cramjam"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(NO_CODECS)
    log_path = tmp_path / "worker.log"
    env = worker_env(settings, PYTHONPATH=str(tmp_path / "shim"))
    worker = spawn(WORKER, log_path=log_path, env=env)
    topic = settings.clickstream_topic
    client = redis.Redis.from_url(settings.redis)
    try:
        ends = {1: len(by_owner[1]), 2: len(by_owner[2])}

        def others_done() -> bool:
            offsets = oracle.stored_offsets(settings)
            return all(offsets.get((topic, p)) == end for p, end in ends.items())

        await wait_until("partitions 1 and 2 are counted to their end", others_done)
        for partition, end in ends.items():
            keys = PartitionKeys(settings.redis_prefix, topic, partition)
            stored = client.hgetall(keys.key("health"))
            counters = {oracle.text(k): int(v) for k, v in stored.items()}
            assert counted(counters) == end, (partition, counters)
        assert (topic, 0) not in oracle.stored_offsets(settings)

        async def health() -> Samples:
            return samples(await scrape_text(settings))

        def at(name: str, partition: int) -> tuple[str, tuple[tuple[str, str], ...]]:
            return (name, (("partition", str(partition)), ("topic", topic)))

        async def stalled_with_lag(lag: int) -> bool:
            got = await health()
            return (
                got.get(at("kpistream_partition_stalled", 0)) == 1
                and got.get(at("kpistream_partition_lag_records", 0)) == lag
                and got.get(at("kpistream_partition_stalled", 1)) == 0
                and got.get(at("kpistream_partition_lag_records", 1)) == 0
            )

        await wait_until(
            f"partition 0 stalled with lag {len(first)}", lambda: stalled_with_lag(len(first))
        )
        assert f"partition {topic}:0 stalled at offset 0" in log_path.read_text()
        for line in by_owner[0][-10:]:  # more arrive: the lag grows, live
            zstd.produce(topic, line, partition=0)
        await asyncio.to_thread(flush, zstd)
        await wait_until("the lag of partition 0 grows", lambda: stalled_with_lag(len(by_owner[0])))
    finally:
        stop(worker)
    # The same log, read by a worker that has the codec: every record, exactly.
    await start_streams(workers, settings)
    await oracle.assert_exact(settings, now_ms=now_ms())
    got = samples(await scrape_text(settings))
    assert got[("kpistream_partition_stalled", (("partition", "0"), ("topic", topic)))] == 0
