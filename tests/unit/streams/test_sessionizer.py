from __future__ import annotations

from kpistream.streams.sessionizer import Sessionizer

GAP = 30 * 60_000


def test_a_flood_of_ended_sessions_ends_over_several_steps() -> None:
    """At most ``limit`` sessions end per call; the rest end at the next calls, each once."""
    sessionizer = Sessionizer(session_gap_ms=GAP)
    for i in range(25):
        sessionizer.open(("shop", f"v{i}", ""), 1_000 + i, f"e{i}", 0)
    horizon = 1_000 + 25 + GAP + 1  # every session is over
    steps = [sessionizer.evict(horizon, limit=10) for _ in range(4)]
    ended = [[key for key, _ in evicted] for _, _, evicted in steps]
    assert [len(keys) for keys in ended] == [10, 10, 5, 0]
    assert len({key for keys in ended for key in keys}) == 25  # none twice
    assert ended[0][0] == ("shop", "v0", "")  # the oldest first
    assert sessionizer.sessions == {}
