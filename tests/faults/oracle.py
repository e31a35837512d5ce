"""The oracle: the KPI state a produced log must lead to, computed offline.

It reads back the log exactly as the broker holds it (per partition, in offset order), runs
it through the same pure processors in one pass, without Kafka consumers, Redis or batching,
and sums the counters. Faults (crashes, rebalances, duplicates, outages) live in the
distributed execution, so a faulty run must end in exactly this state.

Both streams are judged: the clickstream (sessions, carts, visitors) and the social topic
(engagement, impressions, follower gauges). HyperLogLogs are estimates, and the batch-time
histogram and the lag gauge depend on batching: they are left out of the comparison.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from kpistream.config.connections import redis_client
from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.routing import REROUTED, is_forwarded, misplaced
from kpistream.streams.logic import StreamLogic, valid
from kpistream.streams.registry import STREAMS
from tests.support.waits import counted

#: Health counters that depend on how records were batched and fetched, not on what they
#: say: the batch-time histogram.
BATCHING = (H.BATCH_BUCKET, H.BATCH_SUM_US, H.BATCH_COUNT)


#: A partition of one of the two topics.
Part = tuple[str, int]


def text(raw: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; its type says bytes or str)."""
    return raw.decode() if isinstance(raw, bytes) else raw


@dataclass
class State:
    totals: Counter[str] = field(default_factory=Counter)
    minutes: Counter[tuple[int, str]] = field(default_factory=Counter)
    days: Counter[tuple[int, str]] = field(default_factory=Counter)
    gauges: Counter[str] = field(default_factory=Counter)  # summed over partitions
    #: the service's own counters, without the batch-time histogram
    health: Counter[str] = field(default_factory=Counter)

    def digest(self) -> str:
        dump = json.dumps(
            [
                sorted(self.totals.items()),
                sorted(self.minutes.items()),
                sorted(self.days.items()),
                sorted(self.gauges.items()),
                sorted(self.health.items()),
            ]
        )
        return hashlib.sha256(dump.encode()).hexdigest()

    def cleaned(self) -> State:
        timeless = Counter({k: v for k, v in self.health.items() if not k.startswith(BATCHING)})
        return State(+self.totals, +self.minutes, +self.days, self.gauges, +timeless)


def logics(settings: Settings) -> dict[str, StreamLogic]:
    """Each topic's stream logic, as the worker runs it."""
    return {stream.topic(settings): stream.logic(settings) for stream in STREAMS}


def _partition_keys(settings: Settings) -> list[PartitionKeys]:
    """Keys of every partition of the two topics that has state in Redis."""
    client = redis_client(settings)
    tags = [text(raw) for raw in client.smembers(f"{settings.redis_prefix}:partitions")]
    every = [PartitionKeys.from_tag(settings.redis_prefix, tag) for tag in tags]
    return [keys for keys in every if keys.topic in logics(settings)]


def stored_offsets(settings: Settings) -> dict[Part, int]:
    """Each partition's next offset as Redis holds it (partitions never committed: absent)."""
    client = redis_client(settings)
    offsets = {
        (k.topic, k.partition): client.hget(k.key("meta"), "offset")
        for k in _partition_keys(settings)
    }
    return {part: int(offset) for part, offset in offsets.items() if offset is not None}


async def wait_consumed(settings: Settings, *, timeout_s: float = 90) -> Log:
    """Wait until Redis holds every partition's end offset: the whole log is committed.
    Returns the log it waited for. The log can grow meanwhile (workers forward misplaced
    events to their owners), so it is read again whenever the stored offsets pass it."""
    log = await read_log(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        ends = {part: end for part, end in log.ends.items() if end}
        offsets = await asyncio.to_thread(stored_offsets, settings)
        if offsets == ends:
            return log
        assert loop.time() < deadline, f"stored offsets {offsets} never reached {ends}"
        if any(offset >= ends.get(part, 0) for part, offset in offsets.items()):
            log = await read_log(settings)
        else:
            await asyncio.sleep(0.2)


def accounted(state: State) -> int:
    """Events the state has counted: processed, duplicate, late or rejected."""
    return counted(state.health)


async def assert_exact(settings: Settings, *, now_ms: int) -> State:
    """The faulty run's verdict: the whole log is committed (stored offsets = end offsets),
    every produced event is counted once as processed, duplicate, late or rejected, and the
    stored state equals the oracle's counter for counter, follower gauges included. Returns
    the stored state."""
    log = await wait_consumed(settings)
    got = stored(settings)
    produced = sum(len(values) for values in log.values())
    assert accounted(got) == produced, (accounted(got), produced, got.health)
    # And partition by partition: produced = processed + duplicate + late + rejected +
    # forwarded, so no partition's offset moved past a record it did not count.
    client = redis_client(settings)
    for keys in _partition_keys(settings):
        health = {text(k): int(v) for k, v in client.hgetall(keys.key("health")).items()}
        part = (keys.topic, keys.partition)
        assert counted(health) == len(log[part]), (part, counted(health), len(log[part]))
    want = expected(settings, log, now_ms=now_ms)
    assert got.totals == want.totals, _diff(got.totals, want.totals)
    assert got.health == want.health, _diff(got.health, want.health)
    assert got.minutes == want.minutes and got.days == want.days
    assert got.gauges == want.gauges, _diff(got.gauges, want.gauges)
    return got


def _diff(got: Counter[str], want: Counter[str]) -> dict[str, tuple[int, int]]:
    return {k: (got[k], want[k]) for k in set(got) | set(want) if got[k] != want[k]}


class Log(dict[Part, list[bytes | None]]):
    """Record values per partition in offset order, each partition's end offset, and which
    records a worker forwarded there (:mod:`kpistream.contract.routing`)."""

    ends: dict[Part, int]
    forwarded: dict[Part, list[bool]]


async def read_log(settings: Settings) -> Log:
    """Every record of the two topics, per partition, in offset order.

    The end of each partition is the high watermark of the fetch responses: Tansu answers
    ListOffsets(latest) with the base offset of the last record batch + 1, short of the real
    end whenever the producer batched records (so ``end_offsets()`` is only a lower bound, and
    0 only for an empty partition)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # fetches metadata: the topic's real partitions, not settings'
        partitions = [
            TopicPartition(topic, p)
            for topic in logics(settings)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        lower = await consumer.end_offsets(partitions)
        log = Log({(tp.topic, tp.partition): [] for tp in partitions})
        log.forwarded = {part: [] for part in log}

        async def behind(tp: TopicPartition) -> bool:
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
            return position < lower[tp] or (high is not None and position < high)

        while [tp for tp in partitions if await behind(tp)]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                log[tp.topic, tp.partition] += [r.value for r in records]
                log.forwarded[tp.topic, tp.partition] += [is_forwarded(r.headers) for r in records]
        log.ends = {(tp.topic, tp.partition): await consumer.position(tp) for tp in partitions}
        return log
    finally:
        await consumer.stop()


def expected(settings: Settings, log: dict[Part, list[bytes | None]], *, now_ms: int) -> State:
    """The state ``log`` leads to: each partition processed in one pass, in offset order.
    An event on a partition that does not own it counts as re-routed there (its forwarded
    copy, later in the owner's log, counts as the event); a ``log`` that is not a
    :class:`Log` has no forwarded records."""
    state = State()
    forwarded = log.forwarded if isinstance(log, Log) else {}
    for topic, logic in logics(settings).items():
        decoder = logic.decoder
        decoded_log: dict[int, list[Any]] = {
            partition: decoder.decode_batch(values, clock_ms=lambda: now_ms)
            for (in_topic, partition), values in log.items()
            if in_topic == topic
        }
        for partition, decoded in decoded_log.items():
            flags = forwarded.get((topic, partition)) or [False] * len(decoded)
            moved = misplaced(
                decoded,
                flags,
                partition=partition,
                partitions=len(decoded_log),
                key=logic.ownership_key,
            )
            for index, _ in moved:
                decoded[index] = REROUTED
        values: dict[str, set[str]] = {}
        for decoded in decoded_log.values():
            for name, found in logic.dimension_values(valid(decoded)).items():
                values.setdefault(name, set()).update(found)
        for name, found in values.items():  # budgets large enough: every value gets its label
            logic.budget(name).learn(found, full=False)
        for decoded in decoded_log.values():
            delta = logic.new_partition().process(decoded, now_ms=now_ms)
            state.totals.update(delta.totals)
            state.health.update(delta.health)
            state.minutes.update(delta.buckets)
            state.days.update(delta.days)
            state.gauges.update(delta.gauges)  # one partition's latest values, summed
    return state.cleaned()


def stored(settings: Settings) -> State:
    """The state the pipeline left in Redis, summed over partitions."""
    client = redis_client(settings)
    state = State()
    for keys in _partition_keys(settings):
        for name, target in (
            ("totals", state.totals),
            ("gauges", state.gauges),
            ("health", state.health),
        ):
            target.update({text(k): int(v) for k, v in client.hgetall(keys.key(name)).items()})
        for kind, buckets in (("m", state.minutes), ("d", state.days)):
            for key in client.scan_iter(match=keys.key(f"{kind}:*"), count=1000):
                bucket = int(text(key).rsplit(":", 1)[1])
                for counter, value in client.hgetall(key).items():
                    buckets[(bucket, text(counter))] += int(value)
    return state.cleaned()
