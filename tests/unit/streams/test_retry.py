"""The one retry policy: soon, then doubling, capped, reset by a success."""

from __future__ import annotations

from kpistream.streams.retry import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.2, 1.0)
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.2
