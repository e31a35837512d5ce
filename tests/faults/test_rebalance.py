"""Scaling the consumer group 1 -> 3 -> 1 while events flow (issue 4), on one redis-server
with 6 partitions and on a Redis Cluster with 12 (issue 13)."""

from __future__ import annotations

import asyncio

import pytest

from kpistream.runtime import ensure_topics
from kpistream.streams.batch_consumer import BatchConsumer
from tests.faults import oracle
from tests.faults.common import many_lines, now_ms, produce_slowly, settings_for
from tests.support.stack import on_cluster, start_streams
from tests.support.waits import wait_until

#: Slices produced one after another with a pause, so that events keep arriving while the
#: group grows and shrinks (each rebalance takes a few seconds on the embedded broker).
SLICES = 100
PAUSE_S = 0.25


@pytest.mark.parametrize("store", ["redis", "cluster"])
async def test_scaling_one_to_three_to_one_while_events_flow_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, workers, request, store
) -> None:
    if store == "cluster":
        make = on_cluster(settings_factory, request.getfixturevalue("redis_cluster"))
        settings = settings_for(make, partitions=12, batch_max_records=100)
    else:
        settings = settings_for(settings_factory, partitions=6, batch_max_records=100)
    await ensure_topics(settings)
    shrunk = asyncio.Event()
    flowing = produce_slowly(settings, many_lines(14), slices=SLICES, pause_s=PAUSE_S, hold=shrunk)
    click_parts, social_parts = settings.partitions, settings.partitions // 2
    first = await start_streams(workers, settings)

    def spread(group: list[tuple[BatchConsumer, ...]]) -> bool:
        """Every worker owns partitions of both topics, and every partition has an owner."""
        clicks, posts = [c[0] for c in group], [c[1] for c in group]
        return (
            all(c.owned for c in clicks)
            and all(s.owned for s in posts)
            and sum(len(c.owned) for c in clicks) == click_parts
            and sum(len(s.owned) for s in posts) == social_parts
        )

    await wait_until("the first worker owns every partition", lambda: spread([first]))
    extra = [await start_streams(workers, settings), await start_streams(workers, settings)]
    await wait_until("three workers share the partitions", lambda: spread([first, *extra]))
    assert not flowing.done(), "the events stopped flowing before the group grew"
    for consumers in extra:
        for consumer in consumers:
            await consumer.stop()
    await wait_until("the first worker owns every partition again", lambda: spread([first]))
    assert not flowing.done(), "the events stopped flowing before the group shrank"
    shrunk.set()
    await flowing
    await oracle.assert_exact(settings, now_ms=now_ms())
