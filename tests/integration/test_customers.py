"""The customer KPIs on the real components: orders produced by a client we did not write
(librdkafka), out of order, one of them twice, counted by the orders stream's worker into
Redis, read back as the report will read them: docs/kpis.md's worked example, exactly."""

from __future__ import annotations

import json

from kpistream.config.connections import redis_client
from kpistream.contract import health as H
from kpistream.kpis import calendar as C
from kpistream.kpis.customers import kpis, read_kept
from kpistream.runtime import ensure_topics
from kpistream.streams.registry import ORDERS
from tests.support.waits import wait_for_totals


def text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def line(order_id: str, customer: str, day: str, value: float, *products: str) -> bytes:
    return json.dumps(
        {
            "type": "order",
            "order_id": order_id,
            "ts": C.day_start_ms(C.parse("day", day), C.zone("UTC")) + 3_600_000,
            "site": "shop",
            "customer_id": customer,
            "value": value,
            "currency": "EUR",
            "items": [{"item_id": p, "category": p} for p in products],
        }
    ).encode()


async def test_the_worked_example_from_a_foreign_producer(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka import Producer

    settings = settings_factory(customer_horizon_days=30, partitions=4)
    await ensure_topics(settings)
    await workers(settings, logic=ORDERS.logic(settings), group_id=ORDERS.group(settings))
    lines = [
        line("c3", "c-C", "2026-02-17", 70, "shoes"),
        line("a2", "c-A", "2026-02-20", 20, "shoes"),
        line("b1", "c-B", "2026-01-10", 30, "shoes"),
        line("c1", "c-C", "2026-02-03", 50, "shoes"),
        line("a1", "c-A", "2026-01-05", 10, "shoes"),
        line("c2", "c-C", "2026-02-03", 60, "socks"),
        line("b2", "c-B", "2026-01-25", 40, "hats"),
        line("c1", "c-C", "2026-02-03", 50, "shoes"),  # the same order again
    ]
    producer = Producer({"bootstrap.servers": settings.kafka, "compression.type": "zstd"})
    for i, value in enumerate(lines):
        # Keyed by nothing we chose: the worker forwards what lands on another partition.
        producer.produce(settings.orders_topic, value, key=f"k{i}".encode())
    assert producer.flush(30) == 0
    await wait_for_totals(settings, {H.PROCESSED: 7, H.DUPLICATE: 1})
    client = redis_client(settings)
    kept: dict[tuple[int, str], int] = {}
    for key in client.scan_iter(f"{settings.redis_prefix}:{{{settings.orders_topic}:*}}:k:*"):
        day = int(text(key).rsplit(":", 1)[1])
        for name, n in client.hgetall(key).items():
            kept[day, text(name)] = kept.get((day, text(name)), 0) + int(n)
    feb = kpis(read_kept(kept, "shop"), "month", C.parse("month", "2026-02"))
    c = feb.counts
    assert (c.start, c.new, c.reactivated, c.lost, c.end) == (2, 1, 1, 2, 2)
    assert (feb.retention_rate, feb.churn_rate, feb.upselling_ratio) == (0.5, 1.0, 0.5)
    assert feb.average_order_value == {"EUR": 50.0} and feb.purchase_frequency == 2.0
    record_keys = list(
        client.scan_iter(f"{settings.redis_prefix}:{{{settings.orders_topic}:*}}:v:*")
    )
    assert len(record_keys) == 3 and all(client.ttl(k) == -1 for k in record_keys)
