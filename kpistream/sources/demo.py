"""Live traffic for `kpistream demo`: simulated sessions, emitted when their time comes."""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from kpistream.sources import encode
from kpistream.sources.simulator import follower_snapshots, session_events, social_events

#: Emit in small ticks so events leave close to their event time without a busy loop.
TICK_S = 0.1


async def traffic(rate_per_s: float, deadline: float | None) -> AsyncIterator[bytes]:
    """Start ``rate_per_s`` sessions a second until ``deadline`` (monotonic), in real time."""
    rng = random.Random()
    pending: list[tuple[int, int, dict[str, Any]]] = []
    seq = 0
    owed = 0.0
    for event in follower_snapshots(time.time_ns() // 1_000_000):
        yield encode(event)
    while deadline is None or time.monotonic() < deadline:
        now_ms = time.time_ns() // 1_000_000
        for event in social_events(rng, now_ms, TICK_S):
            yield encode(event)
        owed += rate_per_s * TICK_S
        while owed >= 1:
            owed -= 1
            for event in session_events(rng, now_ms, think_ms=4_000):
                heapq.heappush(pending, (event["ts"], seq, event))
                seq += 1
        while pending and pending[0][0] <= now_ms:
            yield encode(heapq.heappop(pending)[2])
        await asyncio.sleep(TICK_S)


class LiveTraffic:
    """The demo's source: :func:`traffic` as a :class:`kpistream.sources.Source`."""

    def __init__(self, rate_per_s: float, deadline: float | None) -> None:
        self.rate_per_s = rate_per_s
        self.deadline = deadline

    def lines(self) -> AsyncIterator[bytes]:
        return traffic(self.rate_per_s, self.deadline)
