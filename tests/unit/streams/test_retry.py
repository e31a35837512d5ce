"""The one retry policy: soon, then doubling, capped, reset by a success."""

from __future__ import annotations

import asyncio

from kpistream.streams.retry import Backoff, pause


def test_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.2, 1.0)
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.2


async def test_a_pause_ends_early_when_the_worker_stops() -> None:
    stopping = asyncio.Event()
    assert await pause(0.01, stopping) is False
    stopping.set()
    # A minute's pause ends at once (the deadline only keeps a broken pause from hanging).
    assert await asyncio.wait_for(pause(60, stopping), 10) is True
