"""Replay determinism and scrapes during writes (issue 4)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.produce import produce
from kpistream.runtime import ensure_topics, free_port
from kpistream.sinks.exporter import serve
from tests.faults import oracle
from tests.faults.common import LINES, accounts, now_ms, settings_for
from tests.support.known_events import samples
from tests.support.stack import start_streams
from tests.support.waits import get, wait_until


@pytest.mark.slow
async def test_replay_is_identical_across_workers_batch_sizes_and_clocks(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """The same log, processed once by 1 worker with batches of 7 and once by 3 workers with
    batches of 1,000 and a wall clock an hour ahead, leaves byte-identical KPI state."""
    one = settings_for(settings_factory, batch_max_records=7)
    await ensure_topics(one)
    await produce(one, LINES)
    await start_streams(workers, one)
    await oracle.wait_consumed(one)
    # Same topics, another consumer group and Redis prefix: a replay of the same log.
    three = msgspec.structs.replace(
        one,
        batch_max_records=1000,
        redis_prefix=one.redis_prefix + "b",
        consumer_group=one.consumer_group + "b",
    )
    later = lambda: now_ms() + 3_600_000  # noqa: E731
    for _ in range(3):
        await start_streams(workers, three, clock_ms=later)
    await oracle.wait_consumed(three)
    first, second = oracle.stored(one), oracle.stored(three)
    assert first.digest() == second.digest()
    # Both streams are in the hash: follower gauges and engagement of all six accounts.
    assert len(first.gauges) == 6 and all(first.gauges.values()), first.gauges
    assert {k for k in first.totals if k.startswith(K.LIKES.code)} == {
        fields.field(K.LIKES.code, network, account) for network, account, _ in accounts(6)
    }
    assert first == await oracle.assert_exact(one, now_ms=now_ms())


#: The ratios bounded by 0..1.
UNIT_RATIOS = {q.metric for q in K.QUOTIENTS if q.unit == "ratio" and q.high == 1}


async def test_fifty_concurrent_scrapes_while_the_worker_writes(settings_factory, workers) -> None:  # type: ignore[no-untyped-def]
    """50 scrapes at once, while batches commit and after ratios exist: every scrape is
    well-formed, carries the bounce, click-through and conversion ratios, and none of them
    leaves 0..1."""
    settings = settings_for(settings_factory, batch_max_records=20, exporter_cache_s=0.0)
    await ensure_topics(settings)
    await start_streams(workers, settings)
    port = free_port()
    server = serve(settings, port=port)
    url = f"http://127.0.0.1:{port}/metrics"
    half = len(LINES) // 2
    await produce(settings, LINES[:half])

    def ratios(text: str) -> dict[str, float]:
        return {
            f"{name}{dict(labels)}": value
            for (name, labels), value in samples(text).items()
            if name in UNIT_RATIOS
        }

    def kinds(found: dict[str, float]) -> set[str]:
        return {key.split("{")[0] for key in found}

    wanted = {"kpi_bounce_rate", "kpi_click_through_rate", "kpi_conversion_rate"}
    try:
        await wait_until(
            "the exporter serves bounce, click-through and conversion ratios",
            lambda: wanted <= kinds(ratios(get(url))),
        )
        writing = asyncio.create_task(produce(settings, LINES[half:]))
        scrapes = await asyncio.gather(*(asyncio.to_thread(get, url) for _ in range(50)))
        await writing
        await oracle.wait_consumed(settings)
        scrapes += [await asyncio.to_thread(get, url)]
    finally:
        server.shutdown()
    for text in scrapes:
        found = ratios(text)  # parsing is the well-formed check
        assert wanted <= kinds(found), sorted(kinds(found))
        for key, value in found.items():
            assert 0 <= value <= 1, (key, value)
        for (name, labels), value in samples(text).items():
            if name == "kpi_net_promoter_score":
                assert -100 <= value <= 100, (labels, value)
