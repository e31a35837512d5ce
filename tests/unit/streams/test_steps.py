"""Each step of a partition batch alone, with a recording producer and store (the real
broker and Redis are in tests/integration and tests/faults)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.routing import FORWARDED_HEADER, REROUTED, owner, ownership_key
from kpistream.contract.store import Admission, AdmitRequest, Enrichment
from kpistream.contract.visitor import Visitor, VisitorKey, encode_visitor
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import field
from kpistream.schemas.decoder import Rejection
from kpistream.streams import steps
from kpistream.streams.admission import LabelAdmission
from kpistream.streams.clickstream import ClickstreamLogic
from kpistream.streams.deadletter import Redactor
from kpistream.streams.logic import valid
from kpistream.streams.ownership import Owned

TP = TopicPartition("clickstream", 0)
NOW_MS = 1_763_800_200_000


def record(offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Any:
    return ConsumerRecord(
        "clickstream",
        0,
        offset,
        0,
        0,
        b"k",
        value,
        None,
        len(b"k"),
        len(value),
        headers or [],
    )


def view(visitor: str, n: int = 0) -> bytes:
    return json.dumps(
        {
            "type": "page_view",
            "event_id": f"e-{visitor}-{n}",
            "ts": NOW_MS - 60_000,
            "site": "shop",
            "visitor_id": visitor,
            "path": "/",
        }
    ).encode()


class Producer:
    """Records what would be sent; each send's acknowledgement is an awaitable."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []

    async def send(self, topic: str, value: bytes, **options: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value, options))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Store:
    def __init__(self) -> None:
        self.commits: list[dict[str, Any]] = []
        self.enriched: list[tuple[list[AdmitRequest], list[VisitorKey]]] = []

    async def enrich(
        self,
        keys: PartitionKeys,
        admissions: list[AdmitRequest],
        visitors: list[VisitorKey],
        **clock: int,
    ) -> Enrichment:
        """Admits every value; knows visitor "old" (first seen a day earlier)."""
        self.enriched.append((admissions, visitors))
        old = encode_visitor(Visitor(NOW_MS - 86_400_000))
        known = {v: old if v[1] == "old" else None for v in visitors}
        return Enrichment([Admission(set(r.values), 0) for r in admissions], known)

    async def commit(self, keys: PartitionKeys, **step: Any) -> None:
        self.commits.append({"keys": keys, **step})


def logic() -> ClickstreamLogic:
    return ClickstreamLogic(Settings())


def owned(partition: Any) -> Owned:
    return Owned(PartitionKeys("kpi", "clickstream", 0), 3, 10, partition, 0.0)


def test_decode_gives_an_event_or_a_reason_per_record() -> None:
    got = steps.decode(logic().decoder, [record(0, view("a")), record(1, b"{nope")], NOW_MS)
    assert got[0].visitor_id == "a"
    assert isinstance(got[1], Rejection) and got[1].reason == "malformed_json"


async def test_forward_sends_what_another_partition_owns_and_marks_it() -> None:
    visitors = [f"v{i}" for i in range(8)]
    theirs = [v for v in visitors if owner(ownership_key("shop", v), 4) != 0]
    assert theirs and len(theirs) < len(visitors)  # some stay, some go
    records = [record(i, view(v)) for i, v in enumerate(visitors)]
    records.append(record(8, view(theirs[0], 1), [(FORWARDED_HEADER, b"x")]))  # came once
    producer = Producer()
    stream = logic()
    decoded = steps.decode(stream.decoder, records, NOW_MS)
    sends = await steps.Forward(producer, stream.ownership_key)(TP, 4, records, decoded)
    assert len(sends) == len(theirs) == len(producer.sent)
    assert [decoded[i] is REROUTED for i in range(9)] == [v in theirs for v in visitors] + [False]
    first = producer.sent[0][2]
    assert first["headers"] == [(FORWARDED_HEADER, b"clickstream/0/%d" % visitors.index(theirs[0]))]
    assert await steps.Forward(producer, stream.ownership_key)(TP, 1, records, decoded) == []


async def test_dead_letters_carry_the_reason_and_where_the_record_was() -> None:
    records = [record(40, view("a")), record(41, b"{nope")]
    decoded = steps.decode(logic().decoder, records, NOW_MS)
    delta = BatchDelta()
    delta.rejections.append((0, Rejection("conflicting_duplicate", "reused id", "$.event_id")))
    producer = Producer()
    redact = Redactor.from_settings(Settings())
    sends = await steps.DeadLetters(producer, redact, "dlq")(TP, records, decoded, delta)
    assert len(sends) == 2
    letters = [json.loads(value) for _, value, _ in producer.sent]
    assert [(x["reason"], x["offset"]) for x in letters] == [
        ("malformed_json", 41),
        ("conflicting_duplicate", 40),
    ]
    assert {topic for topic, _, _ in producer.sent} == {"dlq"}


def test_batch_health_is_one_histogram_observation_and_the_skipped_offsets() -> None:
    health = steps.batch_health(0.003, skipped=2)
    assert health[field(H.BATCH_BUCKET, "0.0025")] == 0
    assert health[field(H.BATCH_BUCKET, "0.005")] == 1 and health[field(H.BATCH_BUCKET, "5.0")] == 1
    assert health[H.BATCH_COUNT] == 1 and health[H.BATCH_SUM_US] == 3000
    assert health[H.SKIPPED] == 2
    assert steps.batch_health(0.003, skipped=0)[H.SKIPPED] == 0


async def test_enrich_asks_the_store_once_for_labels_and_visitors() -> None:
    stream, store = logic(), Store()
    admission = LabelAdmission(Settings(), stream, store, lambda: NOW_MS)  # type: ignore[arg-type]
    enrich = steps.Enrich(stream, admission, store, lambda: NOW_MS)  # type: ignore[arg-type]
    o = owned(stream.new_partition())
    events = valid(
        steps.decode(stream.decoder, [record(0, view("a")), record(1, view("old"))], NOW_MS)
    )
    await enrich(o, events)
    [(asked, visitors)] = store.enriched  # one round trip
    assert {r.dimension: r.values for r in asked} == {
        "site": {"shop"},
        "landing_page": {"/"},
        "channel": {"direct"},
    }
    assert sorted(visitors) == [("shop", "a"), ("shop", "old")]
    assert stream.budget("site").admitted == {"shop"}
    delta = steps.fold(o, events, NOW_MS)  # every label decided, the visitors known
    assert delta.totals[field(K.NEW_VISITORS.code, "shop")] == 1  # "old" is not new
    await enrich(o, events)
    assert len(store.enriched) == 1  # decided and cached: nothing to ask


async def test_fold_keeps_kpis_and_health_apart() -> None:
    stream = logic()
    decoded = steps.decode(stream.decoder, [record(0, view("a")), record(1, b"{")], NOW_MS)
    for name, found in stream.dimension_values(valid(decoded)).items():  # what enrich admits
        stream.budget(name).learn(found, full=False)
    delta = steps.fold(owned(stream.new_partition()), decoded, NOW_MS)
    assert delta.health[H.PROCESSED] == 1 and delta.health[field(H.REJECTED, "malformed_json")]
    assert delta.totals[field("s", "shop")] == 1
    assert not any(name.startswith("_") for name in delta.totals)


async def test_commit_moves_the_position_only_after_the_store_took_the_step() -> None:
    store = Store()
    o = owned(logic().new_partition())
    o.stalled_offset = 10
    delta = BatchDelta(totals=Counter({"x": 1}))
    await steps.Commit(store)(o, delta, 15, first_offset=12, skipped=2)  # type: ignore[arg-type]
    assert store.commits == [
        {
            "keys": o.keys,
            "epoch": 3,
            "expected_offset": 10,
            "next_offset": 15,
            "delta": delta,
            "first_offset": 12,
            "skipped": 2,
        }
    ]
    assert o.next_offset == 15 and o.stalled_offset is None

    class Refusing(Store):
        async def commit(self, keys: PartitionKeys, **step: Any) -> None:
            raise RuntimeError("fenced")

    try:
        await steps.Commit(Refusing())(o, delta, 20)
    except RuntimeError:
        pass
    assert o.next_offset == 15  # refused: the position stays
