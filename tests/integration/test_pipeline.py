"""The batch consumer on the real broker and Redis, read back through the real exporter."""

from __future__ import annotations

import asyncio
import json
import subprocess

from kpistream.produce import produce
from kpistream.runtime import ensure_topics, free_port, start_redis
from tests.support import known_events as K
from tests.support.stack import require_binary
from tests.support.waits import (
    read_dead_letters,
    scrape_samples,
    scrape_text,
    wait_for_events,
)


async def test_known_events_give_exact_kpis_on_metrics(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory()
    await ensure_topics(settings)
    await workers(settings)
    await produce(settings, K.lines())
    await wait_for_events(settings, len(K.lines()))
    text = await scrape_text(settings)
    got = K.samples(text)
    K.assert_matches(got)
    for key in K.ABSENT:
        assert key not in got, key
    promtool = require_binary("promtool", "prometheus")
    check = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0 and check.stdout == check.stderr == b"", check


async def test_invalid_events_go_to_the_dead_letter_topic_and_the_stream_goes_on(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    settings = settings_factory(partitions=1)
    await ensure_topics(settings)
    await workers(settings)
    poison = [
        b"\xff\xfe not utf-8",
        b'{"type":"page_view","ts":NaN}',
        b'{"event_id":"e","type":"page_view","ts":"1763800000000","site":"s","visitor_id":"v","path":"/"}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"x":"' + b"y" * 5_000_000 + b'"}',
    ]
    good = [json.dumps(e).encode() for e in K.EVENTS[:4]]
    await produce(settings, [good[0], *poison[:3], good[1], *poison[3:], *good[2:]])
    reader = await wait_for_events(settings, len(poison) + len(good))
    totals = reader.snapshot(settings.window_minutes()).totals
    assert totals["_processed"] == len(good)
    assert totals["_rej\x1fmalformed_json"] == 2
    assert totals["_rej\x1fwrong_type"] == 1
    assert totals["_rej\x1fnot_an_object"] == 1
    assert totals["_rej\x1ftoo_large"] == 1
    letters = await read_dead_letters(settings, len(poison))
    by_offset = {d["offset"]: d for d in letters}
    assert [by_offset[o]["reason"] for o in sorted(by_offset)] == [
        "malformed_json",
        "malformed_json",
        "wrong_type",
        "not_an_object",
        "too_large",
    ]
    first = by_offset[min(by_offset)]
    assert first["payload_base64"] and first["topic"] == settings.clickstream_topic
    assert by_offset[sorted(by_offset)[2]]["payload"] == poison[2].decode()
    assert by_offset[sorted(by_offset)[2]]["field"] == "$.ts"
    big = by_offset[max(by_offset)]
    assert big["payload_truncated"] is True and len(big["payload"]) == 64 * 1024


async def test_a_restarted_worker_resumes_sessions_from_redis(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    """A fresh worker picks up the open sessions (and their sites' labels) the last one left."""
    settings = settings_factory(partitions=1)
    await ensure_topics(settings)
    t = K.T
    quiet = {
        "event_id": "q1",
        "type": "impression",
        "ts": t,
        "site": "a",
        "visitor_id": "x",
        "item_kind": "ad",
        "item_id": "i",
    }
    first = await workers(settings)
    await produce(settings, [json.dumps(quiet).encode()])
    await wait_for_events(settings, 1)
    await first.stop()
    # This worker learned the site labels before another worker admitted "a" (a rebalance
    # then hands it a partition with an open session of "a", and a batch of known sites).
    await workers(settings, lambda w: w.logic.budget("site").learn({"b"}, full=False))
    later = {
        "event_id": "l1",
        "type": "page_view",
        "ts": t + 3_600_000,
        "site": "b",
        "visitor_id": "y",
        "path": "/",
    }
    await produce(settings, [json.dumps(later).encode()])  # site "a" is not in this batch
    reader = await wait_for_events(settings, 2)
    totals = reader.snapshot(settings.window_minutes()).totals
    assert totals["_processed"] == 2
    assert totals["s\x1fa"] == 1 and totals["s\x1fb"] == 1
    # the impression-only session of "a" ended without a page view: never a bounce
    assert totals["nb\x1fa"] == 1


async def test_redis_killed_and_restarted_from_its_aof_gives_exact_kpis(  # type: ignore[no-untyped-def]
    settings_factory, workers, tmp_path
) -> None:
    """State and offsets roll back together; the worker waits, reloads, re-seeks, and the
    numbers come out exact."""
    port = free_port()
    server = start_redis(tmp_path, port, persist=True)
    settings = settings_factory(redis=server.address, partitions=2)
    await ensure_topics(settings)
    lines = K.lines()
    try:
        await workers(settings)
        await produce(settings, lines[:10])
        await wait_for_events(settings, 10)
        server.process.kill()  # kill -9: no shutdown save; the AOF holds what it fsynced
        server.process.wait()
        await produce(settings, lines[10:])  # the worker retries with backoff meanwhile
        await asyncio.sleep(1.0)
        server = start_redis(tmp_path, port, persist=True, password=server.password)
        await wait_for_events(settings, len(lines), timeout_s=60)
        K.assert_matches(await scrape_samples(settings))
    finally:
        server.stop()
