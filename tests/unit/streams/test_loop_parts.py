"""The batch loop's collaborators alone: stalls, the idle watermark, the offset hint, the
live view, the gap check and the recovery from a refused commit, on a fake consumer and store
with the clock injected (no sleeping)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.exceptions
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, UnsupportedCodecError
from aiokafka.structs import ConsumerRecord

from kpistream.config.settings import load
from kpistream.contract.delta import BatchDelta
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.store import Fenced, LiveStatus, OffsetMismatch, StateLost
from kpistream.streams import gaps
from kpistream.streams.idle import IdleWatermark
from kpistream.streams.live_view import LiveView
from kpistream.streams.offset_hint import KAFKA_COMMIT_HINT_S, OffsetHint
from kpistream.streams.ownership import Owned, recovery
from kpistream.streams.stalls import STALL_RETRY_S, Stalls

A, B = TopicPartition("clicks", 0), TopicPartition("clicks", 1)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Processor:
    """Moves its watermark to whatever it is asked."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def advance(self, watermark_ms: int) -> BatchDelta:
        self.asked.append(watermark_ms)
        return BatchDelta(watermark_ms=watermark_ms)


def owned(tp: TopicPartition, next_offset: int | None, last_s: float = 0.0) -> Owned:
    keys = PartitionKeys("t", tp.topic, tp.partition)
    return Owned(keys, 1, next_offset, Processor(), last_s)  # type: ignore[arg-type]


class Consumer:
    """The calls a collaborator makes, recorded; fetches served from ``records``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.records: dict[TopicPartition, list[Any]] = {}
        self.unreadable: set[TopicPartition] = set()
        self.high: dict[TopicPartition, int] = {}
        self.listed: dict[TopicPartition, int] | Exception = {}
        self.committed: list[dict[TopicPartition, int]] = []
        self.refuse_commit = False

    def pause(self, tp: TopicPartition) -> None:
        self.calls.append(("pause", tp))

    def resume(self, tp: TopicPartition) -> None:
        self.calls.append(("resume", tp))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", tp, offset))

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)

    async def getmany(self, tp: TopicPartition, *, timeout_ms: int, max_records: int) -> Any:
        waiting = self.records.get(tp, [])
        if waiting:
            return {tp: [waiting.pop(0)]}
        if tp in self.unreadable:
            raise UnsupportedCodecError("no such codec")
        return {}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if isinstance(self.listed, Exception):
            raise self.listed
        return self.listed

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse_commit:
            raise KafkaConnectionError("gone")
        self.committed.append(offsets)


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("clicks", 0, offset, 0, 0, None, b"{}", None, 0, 2, [])


def test_a_stalled_partition_is_paused_and_retried_when_due() -> None:
    consumer, clock = Consumer(), Clock()
    stalls = Stalls(consumer, monotonic=clock)
    held = {A: owned(A, 42)}
    stalls.stall(A, held[A], UnsupportedCodecError("zstd"))
    assert held[A].stalled_offset == 42 and consumer.calls == [("pause", A)]
    clock.now += STALL_RETRY_S - 0.001
    stalls.retry(held)
    assert consumer.calls == [("pause", A)]  # not yet
    clock.now += 0.001
    stalls.retry(held)
    assert consumer.calls[1:] == [("resume", A), ("seek", A, 42)]


async def test_isolation_counts_what_comes_before_the_bad_batch_and_stalls_only_it() -> None:
    consumer = Consumer()
    consumer.records = {A: [record(5), record(6)], B: [record(10)]}
    consumer.unreadable = {B}
    held = {A: owned(A, 5), B: owned(B, 10)}
    sought: list[tuple[TopicPartition, int | None]] = []
    handled: dict[TopicPartition, list[int]] = {}

    async def seek(tp: TopicPartition, offset: int | None) -> None:
        sought.append((tp, offset))

    async def handle(tp: TopicPartition, records: list[Any], _: Owned) -> int:
        handled[tp] = [r.offset for r in records]
        return len(records)

    lock = asyncio.Lock()
    total = await Stalls(consumer).isolate(
        lambda: held, seek=seek, handle=handle, locked=lambda: lock, max_records=100
    )
    assert sought == [(A, 5), (B, 10)]  # every flowing partition back at its offset
    assert total == 3 and handled == {A: [5, 6], B: [10]}
    assert held[A].stalled_offset is None and held[B].stalled_offset == 10
    assert ("pause", B) in consumer.calls and ("pause", A) not in consumer.calls


def test_only_a_quiet_partition_with_nothing_to_read_follows_the_clock() -> None:
    settings = load({"idle_after_s": 5, "allowed_lateness_s": 120}, env={})
    clock = Clock(100.0)
    idle = IdleWatermark(settings, lambda: 1_000_000, monotonic=clock)
    quiet, recent, backlog, never = (
        owned(A, 7, 90.0),
        owned(B, 7, 99.0),
        owned(A, 7),
        owned(B, None),
    )
    stalled = owned(B, 7, 0.0)
    stalled.stalled_offset = 7
    high = {A: 9}
    got = idle.advance({A: quiet, B: recent}, lambda tp: None)
    assert [(tp, delta.watermark_ms) for tp, _, delta in got] == [(A, 1_000_000 - 120_000)]
    assert quiet.last_records_s == 100.0 and recent.processor.asked == []  # type: ignore[attr-defined]
    assert idle.advance({A: quiet}, lambda tp: None) == []  # once per idle_after_s
    for other in (backlog, never, stalled):
        assert idle.advance({A: other}, high.get) == []


async def test_the_offset_hint_is_written_every_few_seconds_and_never_fails_the_loop() -> None:
    consumer, clock = Consumer(), Clock()
    hint = OffsetHint(consumer, monotonic=clock)
    held = {A: owned(A, 3), B: owned(B, None)}
    await hint.commit(held)
    await hint.commit(held)
    assert consumer.committed == [{A: 3}]
    clock.now += KAFKA_COMMIT_HINT_S
    held[A].next_offset = 8
    await hint.commit(held)
    await hint.commit(held, force=True)
    assert consumer.committed == [{A: 3}, {A: 8}, {A: 8}]
    consumer.refuse_commit = True
    await hint.commit(held, force=True)  # logged, not raised


class Store:
    def __init__(self) -> None:
        self.reports: list[dict[PartitionKeys, LiveStatus]] = []

    async def report_live(self, statuses: dict[PartitionKeys, LiveStatus], *, now_ms: int) -> None:
        self.reports.append(statuses)


async def test_the_live_view_reports_the_largest_end_seen() -> None:
    consumer, store = Consumer(), Store()
    held = {A: owned(A, 10), B: owned(B, 4)}
    held[B].stalled_offset = 4
    consumer.high = {A: 12}
    consumer.listed = {A: 11, B: 6}
    view = LiveView(consumer, store, lambda: held, lambda: 0, [])  # type: ignore[arg-type]
    await view.report()
    assert store.reports[-1] == {
        held[A].keys: LiveStatus(12, None),
        held[B].keys: LiveStatus(6, 4),
    }
    consumer.listed = KafkaConnectionError("gone")  # without ListOffsets: what it saw
    consumer.high = {}
    await view.report()
    assert store.reports[-1][held[A].keys] == LiveStatus(12, None)


def records_at(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [record(offset) for offset in offsets]


def test_a_batch_at_the_stored_offset_is_applied_whole() -> None:
    verdict = gaps.check(records_at(5, 6, 7), 5, None, "clicks/0")
    assert [r.offset for r in verdict.records] == [5, 6, 7]
    assert (verdict.skipped, verdict.reread) == (0, None)


def test_records_before_the_stored_offset_are_dropped_as_counted() -> None:
    verdict = gaps.check(records_at(3, 4, 5, 6), 5, None, "clicks/0")
    assert [r.offset for r in verdict.records] == [5, 6]


def test_a_gap_is_read_again_once_then_counted_as_skipped() -> None:
    first = gaps.check(records_at(8, 9), 5, None, "clicks/0")
    assert (first.records, first.reread) == ([], (5, 8))
    second = gaps.check(records_at(8, 9), 5, first.reread, "clicks/0")
    assert [r.offset for r in second.records] == [8, 9]
    assert (second.skipped, second.reread) == (3, None)
    other = gaps.check(records_at(7, 9), 5, first.reread, "clicks/0")  # not the same gap
    assert other.reread == (5, 7)


def test_a_partition_without_a_position_takes_what_comes() -> None:
    verdict = gaps.check(records_at(40), None, None, "clicks/0")
    assert [r.offset for r in verdict.records] == [40]


@pytest.mark.parametrize(
    ("exc", "reaction"),
    [
        (Fenced("partition clicks/0 fenced"), "fence"),
        (StateLost("partition clicks/0 lost its state"), "claim"),
        (OffsetMismatch("partition clicks/0 moved"), "claim"),
        (redis.exceptions.ConnectionError("down"), "claim"),
        (ValueError("a bug"), None),
    ],
)
def test_recovery_from_what_the_store_refused(exc: Exception, reaction: str | None) -> None:
    assert recovery(exc, "clicks/0") == reaction
