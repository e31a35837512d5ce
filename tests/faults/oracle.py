"""The oracle: the KPI state a produced log must lead to, computed offline.

It reads back the log exactly as the broker holds it (per partition, in offset order), runs
it through the same pure processors in one pass, without Kafka consumers, Redis or batching,
and sums the counters. Faults (crashes, rebalances, duplicates, outages) live in the
distributed execution, so a faulty run must end in exactly this state.

HyperLogLogs are estimates and the batch-time histogram depends on batching: both are left
out of the comparison.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from kpistream.settings import Settings
from sinks import fields as F
from sinks.window_store import PartitionKeys
from streams.clickstream import ClickstreamLogic
from streams.logic import valid
from streams.processor import PartitionProcessor

#: Totals that depend on how records were batched, not on what they say.
BATCHING = (F.BATCH_BUCKET, F.BATCH_SUM_US, F.BATCH_COUNT)


@dataclass
class State:
    totals: Counter[str]
    minutes: Counter[tuple[int, str]]
    days: Counter[tuple[int, str]]

    def digest(self) -> str:
        dump = json.dumps(
            [sorted(self.totals.items()), sorted(self.minutes.items()), sorted(self.days.items())]
        )
        return hashlib.sha256(dump.encode()).hexdigest()


def _clean(totals: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in totals.items() if v and not k.startswith(BATCHING)})


async def read_log(settings: Settings) -> dict[int, list[bytes | None]]:
    """Every record of the clickstream topic, per partition, in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.clickstream_topic, p) for p in range(settings.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        log: dict[int, list[bytes | None]] = {tp.partition: [] for tp in partitions}
        while True:
            behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                log[tp.partition] += [r.value for r in records]
        return log
    finally:
        await consumer.stop()


def expected(settings: Settings, log: dict[int, list[bytes | None]], *, now_ms: int) -> State:
    logic = ClickstreamLogic(settings)
    totals: Counter[str] = Counter()
    minutes: Counter[tuple[int, str]] = Counter()
    days: Counter[tuple[int, str]] = Counter()
    decoded_log = {
        p: logic.decoder.decode_batch(v, clock_ms=lambda: now_ms) for p, v in log.items()
    }
    values: dict[str, set[str]] = {}
    for decoded in decoded_log.values():
        for name, found in logic.dimension_values(valid(decoded)).items():
            values.setdefault(name, set()).update(found)
    for name, found in values.items():  # budgets large enough: every value gets its label
        logic.budget(name).learn(found, full=False)
    for decoded in decoded_log.values():
        processor = logic.new_partition()
        assert isinstance(processor, PartitionProcessor)
        delta = processor.process(decoded)
        totals.update(delta.totals)
        minutes.update(delta.buckets)
        days.update(delta.days)
    return State(_clean(totals), +minutes, +days)


def stored(settings: Settings) -> State:
    """The state the pipeline left in Redis, summed over partitions."""
    client = redis.Redis.from_url(settings.redis)
    totals: Counter[str] = Counter()
    minutes: Counter[tuple[int, str]] = Counter()
    days: Counter[tuple[int, str]] = Counter()
    for raw_tag in client.smembers(f"{settings.redis_prefix}:partitions"):
        keys = PartitionKeys.from_tag(settings.redis_prefix, raw_tag.decode())
        if keys.topic != settings.clickstream_topic:
            continue
        totals.update({k.decode(): int(v) for k, v in client.hgetall(keys.key("totals")).items()})
        for kind, target in (("m", minutes), ("d", days)):
            for key in client.scan_iter(match=keys.key(f"{kind}:*"), count=1000):
                bucket = int(key.decode().rsplit(":", 1)[1])
                for name, value in client.hgetall(key).items():
                    target[(bucket, name.decode())] += int(value)
    return State(_clean(totals), +minutes, +days)
