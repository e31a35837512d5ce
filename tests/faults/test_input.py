"""Faults in the input: duplicates, poison, disorder, lateness, session edges (issue 4)."""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from typing import Any

import msgspec
import redis

from kpistream.contract import health as H
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.produce import produce
from kpistream.runtime import ensure_topics
from kpistream.sources import encode
from tests.faults import oracle
from tests.faults.common import LINES, START_MS, now_ms, settings_for
from tests.support.stack import start_streams
from tests.support.waits import read_dead_letters

decode = msgspec.json.Decoder(dict[str, Any]).decode


def dedupe(log: oracle.Log) -> dict[oracle.Part, list[bytes | None]]:
    """The log as if every event had been delivered once (independent of the processor's
    own dedupe, which the oracle would otherwise share with the pipeline)."""
    out: dict[oracle.Part, list[bytes | None]] = {}
    for partition, values in log.items():
        seen: set[str | None] = set()
        kept = []
        for value in values:
            event_id = decode(value or b"{}").get("event_id")
            if event_id not in seen:
                seen.add(event_id)
                kept.append(value)
        out[partition] = kept
    return out


async def test_every_event_delivered_twice_is_counted_once(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(settings_factory)
    await ensure_topics(settings)
    await start_streams(workers, settings)
    await produce(settings, LINES + LINES)
    log = await oracle.wait_consumed(settings)
    want = oracle.expected(settings, dedupe(log), now_ms=now_ms())
    got = oracle.stored(settings)
    assert oracle.accounted(got) == 2 * len(LINES)
    assert got.health.pop(H.DUPLICATE) == len(LINES)
    assert want.health[H.PROCESSED] == len(LINES)
    assert got == want


#: Each poison kind and the reason its dead letter must give: bytes, invalid UTF-8, NaN and
#: Infinity are not JSON; the deep array and `null` are not objects; a null `type` is no
#: known type; a number sent as a string is the wrong type (on either topic).
POISON = [
    (bytes(range(256)), "malformed_json"),  # random bytes
    (b'{"event_id":"\xff\xfe","type":"page_view"}', "malformed_json"),  # invalid UTF-8
    (b'{"x":"' + b"y" * 5_000_000 + b'"}', "too_large"),  # 5 MB
    (b"[" * 10_000 + b"]" * 10_000, "not_an_object"),  # nested 10,000 levels deep
    (
        b'{"event_id":"n","type":"page_view","ts":NaN,"site":"s","visitor_id":"v","path":"/"}',
        "malformed_json",
    ),
    (
        b'{"event_id":"i","type":"page_view","ts":Infinity,"site":"s","visitor_id":"v","path":"/"}',
        "malformed_json",
    ),
    (
        b'{"event_id":"s","type":"page_view","ts":"1763800000000","site":"s","visitor_id":"v",'
        b'"path":"/"}',
        "wrong_type",
    ),
    (
        b'{"event_id":null,"type":null,"ts":null,"site":null,"visitor_id":null,"path":null}',
        "unknown_type",
    ),
    (b"null", "not_an_object"),
    (
        b'{"event_id":"f","type":"followers_snapshot","ts":1763800000000,"network":"instagram",'
        b'"account":"brand-0","followers":"5000"}',
        "wrong_type",
    ),
]


async def test_poison_mixed_in_is_dead_lettered_and_leaves_the_state_untouched(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    settings = settings_for(settings_factory)
    await ensure_topics(settings)
    await start_streams(workers, settings)
    step = len(LINES) // len(POISON)
    mixed = [
        line for i, (p, _) in enumerate(POISON) for line in (*LINES[i * step : (i + 1) * step], p)
    ]
    mixed += LINES[len(POISON) * step :]
    await produce(settings, mixed)
    log = await oracle.wait_consumed(settings)
    got = oracle.stored(settings)
    assert oracle.accounted(got) == len(mixed)
    rejected = {
        k.split(fields.SEP)[1]: v for k, v in got.health.items() if k.startswith(H.REJECTED)
    }
    assert rejected == Counter(reason for _, reason in POISON)
    # Each poison record is on the dead-letter topic once, with its reason, pointing back to
    # where it sits in the log.
    letters = await read_dead_letters(settings, len(POISON))
    assert len(letters) == len(POISON)
    found = {}
    letter_of = {}
    for letter in letters:
        source = log[letter["topic"], letter["partition"]][letter["offset"]]
        found[source] = letter["reason"]
        letter_of[source] = letter
    assert found == dict(POISON)
    # What a letter carries: text when the payload was UTF-8 (with the failing field's
    # path), base64 when not, and at most 64 KiB of it.
    binary = letter_of[bytes(range(256))]
    assert base64.b64decode(binary["payload_base64"]) == bytes(range(256))
    as_text = POISON[6][0]
    assert letter_of[as_text]["payload"] == as_text.decode()
    assert letter_of[as_text]["field"] == "$.ts"
    big = letter_of[POISON[2][0]]
    assert big["payload_truncated"] is True and len(big["payload"]) == 64 * 1024
    poison = {p for p, _ in POISON}
    # The valid events alone give exactly the state of a run without poison.
    clean = {part: [v for v in values if v not in poison] for part, values in log.items()}
    want = oracle.expected(settings, clean, now_ms=now_ms())
    got.health = +Counter({k: v for k, v in got.health.items() if not k.startswith(H.REJECTED)})
    assert got == want


def page_view(event_id: str, visitor: str, ts_ms: int) -> bytes:
    return encode(
        {
            "event_id": event_id,
            "type": "page_view",
            "ts": ts_ms,
            "site": "shop.example",
            "visitor_id": visitor,
            "path": "/",
        }
    )


async def test_shuffled_within_the_lateness_equals_in_order_and_extremes_are_counted(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """Each visitor's events arrive in random order (all within the 120 s lateness of each
    other); the state equals the in-order oracle. One event far older than the lateness is
    counted late, one beyond the future skew is rejected."""
    rng = random.Random(5)
    by_key: dict[str, list[bytes]] = {}  # by visitor, or by social account
    for line in LINES:
        event = decode(line)
        by_key.setdefault(event.get("visitor_id") or event["account"], []).append(line)
    shuffled = []
    for events in by_key.values():
        rng.shuffle(events)
        shuffled += events
    visitor = "v-late"
    late = page_view("too-late", visitor, START_MS - 3_600_000)
    future = page_view("future", "v-future", now_ms() + 3_600_000)
    in_order = settings_for(settings_factory)
    await ensure_topics(in_order)
    await produce(in_order, LINES)
    want = oracle.expected(in_order, await oracle.read_log(in_order), now_ms=now_ms())
    settings = settings_for(settings_factory)
    await ensure_topics(settings)
    await start_streams(workers, settings)
    await produce(settings, [*shuffled, late, future])
    await oracle.wait_consumed(settings)
    got = oracle.stored(settings)
    assert oracle.accounted(got) == len(LINES) + 2
    assert got.health.pop(H.LATE) == 1
    assert got.health.pop(fields.field(H.REJECTED, "ts_in_future")) == 1
    assert got == want


MINUTE_MS = 60_000


async def test_session_gap_edges_and_a_bridging_late_event(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    """Gaps of 29:59 and exactly 30:00 continue a session, 30:00.001 starts a new one; an
    event that arrives late between two sessions of a visitor joins the earlier one (sessions
    never merge, because counters never go down). Hand-computed, and equal to the oracle."""
    t = START_MS
    gap = 30 * MINUTE_MS
    events = [
        page_view("a1", "a", t),
        page_view("a2", "a", t + gap - 1000),  # 29:59 later: same session
        page_view("b1", "b", t),
        page_view("b2", "b", t + gap),  # 30:00 later: same session
        page_view("c1", "c", t),
        page_view("c2", "c", t + gap + 1),  # 30:00.001 later: a new session
        page_view("d1", "d", t),
        page_view("d2", "d", t + 40 * MINUTE_MS),  # a new session
        page_view("d3", "d", t + 20 * MINUTE_MS),  # late, within 20 minutes of both
    ]
    # One partition and batches of one: the bridge arrives after both sessions exist.
    settings = settings_for(
        settings_factory, partitions=1, batch_max_records=1, allowed_lateness_s=3600
    )
    await ensure_topics(settings)
    await start_streams(workers, settings)
    await produce(settings, events)
    got = await oracle.assert_exact(settings, now_ms=now_ms())
    site = "shop.example"
    assert got.health[H.PROCESSED] == 9
    assert got.totals[fields.field(K.PAGE_VIEWS.code, site)] == 9
    assert got.totals[fields.field(K.SESSIONS.code, site)] == 6  # a 1, b 1, c 2, d 2
    # non-bounced: a, b, and d's first session (d1 + d3); bounces: both of c, d2's session
    assert got.totals[fields.field(K.NON_BOUNCED.code, site)] == 3


async def test_a_fast_client_clock_does_not_make_honest_events_late(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """With the defaults (future skew 300 s, lateness 120 s), one event stamped now+290 s
    is accepted, and the 20 honest events after it on the same partition are all counted:
    the watermark stops at the wall clock. One stamped now+400 s is rejected."""
    settings = settings_for(settings_factory, partitions=1)
    await ensure_topics(settings)
    await start_streams(workers, settings)
    now = now_ms()
    events = [page_view("ahead", "v-fast", now + 290_000)]
    events += [page_view(f"h{i}", f"v{i}", now - 1000 + i) for i in range(20)]
    events.append(page_view("beyond", "v-far", now + 400_000))
    await produce(settings, events)
    got = await oracle.assert_exact(settings, now_ms=now_ms())
    assert got.health[H.PROCESSED] == 21
    assert got.health[H.LATE] == 0
    assert got.health[fields.field(H.REJECTED, "ts_in_future")] == 1


async def test_personal_data_is_rejected_and_never_stored(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    """An e-mail address or an IP address as visitor_id is rejected (pii_id); dead letters
    carry no e-mail, IP address or name, wherever they were in the payload; no Redis key or
    value holds them."""
    settings = settings_for(settings_factory, partitions=1)
    await ensure_topics(settings)
    await start_streams(workers, settings)
    t = now_ms() - 60_000
    secrets = ("jane.doe@example.com", "203.0.113.9", "2001:db8::7", "Jane Doe")
    email_id = decode(page_view("p1", "jane.doe@example.com", t))
    ip_id = decode(page_view("p2", "203.0.113.9", t))
    no_site = {**decode(page_view("p3", "v1", t)), "ip": "2001:db8::7", "name": "Jane Doe"}
    del no_site["site"]
    note = {**decode(page_view("p4", "v2", t)), "type": "teleport", "note": "jane.doe@example.com"}
    await produce(settings, [encode(e) for e in (email_id, ip_id, no_site, note)])
    got = await oracle.assert_exact(settings, now_ms=now_ms())
    assert got.health[fields.field(H.REJECTED, "pii_id")] == 2
    letters = await read_dead_letters(settings, 4)
    assert sorted(letter["reason"] for letter in letters) == [
        "missing_field",
        "pii_id",
        "pii_id",
        "unknown_type",
    ]
    text = json.dumps(letters)
    for secret in secrets:
        assert secret not in text, secret
    client = redis.Redis.from_url(settings.redis)
    for key in client.scan_iter(match=f"{settings.redis_prefix}*"):
        dump = key + repr(client.dump(key)).encode()
        for secret in secrets:
            assert secret.encode() not in dump, (key, secret)
