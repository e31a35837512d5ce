"""The batch consumer on the real broker and Redis, read back through the real exporter."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from kpistream.contract import health as H
from kpistream.produce import produce
from kpistream.runtime import ensure_topics, free_port
from kpistream.sinks.exporter import serve
from tests.support import known_events as K
from tests.support.stack import require_binary
from tests.support.waits import get, scrape_text, wait_for_events, wait_until


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
    snapshot = reader.snapshot(settings.window_minutes())
    totals = snapshot.totals
    assert snapshot.health[H.PROCESSED] == 2
    assert totals["s\x1fa"] == 1 and totals["s\x1fb"] == 1
    # the impression-only session of "a" ended: a bounce (no page view, no interaction)
    assert totals["end\x1fa"] == 1 and totals["nb\x1fa"] == 0


async def test_lag_grows_on_metrics_while_no_worker_runs(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    """The lag is the broker's log end minus the stored offsets, read by the exporter: with
    the worker stopped it grows by every event produced (it read 0 before: the worker wrote
    it), and kpistream_worker_up falls to 0."""
    settings = settings_factory(partitions=2)
    await ensure_topics(settings)
    port = free_port()
    exporter = serve(settings, port=port)

    def views(first: int, n: int) -> list[bytes]:
        return [
            json.dumps(
                {
                    "event_id": f"lag{i}",
                    "type": "page_view",
                    "ts": K.T + i,
                    "site": "shop",
                    "visitor_id": f"v{i % 17}",
                    "path": "/",
                }
            ).encode()
            for i in range(first, first + n)
        ]

    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def metrics(**want: float) -> Any:
        async def check() -> bool:
            nonlocal seen
            seen = K.samples(await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics"))
            return all(seen.get((name, ())) == value for name, value in want.items())

        return check

    try:
        worker = await workers(settings)
        await produce(settings, views(0, 40))
        await wait_for_events(settings, 40)
        await wait_until(
            "no lag while the worker runs",
            metrics(kpistream_consumer_lag_records=0, kpistream_worker_up=1, kpistream_kafka_up=1),
            timeout_s=30,
            detail=lambda: str(seen.get(("kpistream_consumer_lag_records", ()))),
        )
        await worker.stop()
        await produce(settings, views(40, 25))
        await wait_until(
            "the lag counts every event produced since, and no worker is up",
            metrics(kpistream_consumer_lag_records=25, kpistream_worker_up=0),
            timeout_s=60,
            detail=lambda: str(
                [
                    seen.get((n, ()))
                    for n in ("kpistream_consumer_lag_records", "kpistream_worker_up")
                ]
            ),
        )
    finally:
        await asyncio.to_thread(exporter.shutdown)
