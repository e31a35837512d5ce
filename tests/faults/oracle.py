"""The oracle: the KPI state a produced log must lead to, computed offline.

It reads back the log exactly as the broker holds it (per partition, in offset order), runs
it through the same pure processors in one pass, without Kafka consumers, Redis or batching,
and sums the counters. Faults (crashes, rebalances, duplicates, outages) live in the
distributed execution, so a faulty run must end in exactly this state.

HyperLogLogs are estimates and the batch-time histogram depends on batching: both are left
out of the comparison.
"""

from __future__ import annotations

import asyncio
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
from tests.integration.waits import counted

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


def _partition_keys(settings: Settings) -> list[PartitionKeys]:
    """Keys of every clickstream partition that has state in Redis."""
    client = redis.Redis.from_url(settings.redis)
    tags = [raw.decode() for raw in client.smembers(f"{settings.redis_prefix}:partitions")]
    every = [PartitionKeys.from_tag(settings.redis_prefix, tag) for tag in tags]
    return [keys for keys in every if keys.topic == settings.clickstream_topic]


def stored_offsets(settings: Settings) -> dict[int, int]:
    """Each partition's next offset as Redis holds it (partitions never committed: absent)."""
    client = redis.Redis.from_url(settings.redis)
    offsets = {k.partition: client.hget(k.key("meta"), "offset") for k in _partition_keys(settings)}
    return {p: int(offset) for p, offset in offsets.items() if offset is not None}


async def wait_consumed(settings: Settings, *, timeout_s: float = 90) -> Log:
    """Wait until Redis holds every partition's end offset: the whole log is committed.
    Returns the log it waited for."""
    log = await read_log(settings)
    ends = {p: end for p, end in log.ends.items() if end}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (offsets := await asyncio.to_thread(stored_offsets, settings)) != ends:
        assert loop.time() < deadline, f"stored offsets {offsets} never reached {ends}"
        await asyncio.sleep(0.2)
    return log


def accounted(state: State) -> int:
    """Events the state has counted: processed, duplicate, late or rejected."""
    return counted(state.totals)


async def assert_exact(settings: Settings, *, now_ms: int) -> State:
    """The faulty run's verdict: the whole log is committed (stored offsets = end offsets),
    every produced event is counted once as processed, duplicate, late or rejected, and the
    stored state equals the oracle's counter for counter. Returns the stored state."""
    log = await wait_consumed(settings)
    got = stored(settings)
    produced = sum(len(values) for values in log.values())
    assert accounted(got) == produced, (accounted(got), produced, got.totals)
    want = expected(settings, log, now_ms=now_ms)
    assert got.totals == want.totals, _diff(got.totals, want.totals)
    assert got.minutes == want.minutes and got.days == want.days
    return got


def _diff(got: Counter[str], want: Counter[str]) -> dict[str, tuple[int, int]]:
    return {k: (got[k], want[k]) for k in set(got) | set(want) if got[k] != want[k]}


class Log(dict[int, list[bytes | None]]):
    """Record values per partition in offset order, and each partition's end offset."""

    ends: dict[int, int]


async def read_log(settings: Settings) -> Log:
    """Every record of the clickstream topic, per partition, in offset order.

    The end of each partition is the high watermark of the fetch responses: Tansu answers
    ListOffsets(latest) with the base offset of the last record batch + 1, short of the real
    end whenever the producer batched records (so ``end_offsets()`` is only a lower bound, and
    0 only for an empty partition)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        topic = settings.clickstream_topic
        await consumer.topics()  # fetches metadata: the topic's real partitions, not settings'
        found = consumer.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        lower = await consumer.end_offsets(partitions)
        log = Log({tp.partition: [] for tp in partitions})

        async def behind(tp: TopicPartition) -> bool:
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
            return position < lower[tp] or (high is not None and position < high)

        while [tp for tp in partitions if await behind(tp)]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                log[tp.partition] += [r.value for r in records]
        log.ends = {tp.partition: await consumer.position(tp) for tp in partitions}
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
    for keys in _partition_keys(settings):
        totals.update({k.decode(): int(v) for k, v in client.hgetall(keys.key("totals")).items()})
        for kind, target in (("m", minutes), ("d", days)):
            for key in client.scan_iter(match=keys.key(f"{kind}:*"), count=1000):
                bucket = int(key.decode().rsplit(":", 1)[1])
                for name, value in client.hgetall(key).items():
                    target[(bucket, name.decode())] += int(value)
    return State(_clean(totals), +minutes, +days)
