"""Bounded memory: the visitor LRU, the heap trim decision, the session table after a flood."""

from __future__ import annotations

from kpistream.contract.visitor import Visitor
from kpistream.streams.memory import MIN_DROP, MIN_INTERVAL_S, Reclaimer
from kpistream.streams.sessionizer import Sessionizer
from kpistream.streams.visitors import VisitorBook


def test_the_visitor_cache_keeps_the_most_recently_seen() -> None:
    book = VisitorBook(max_cached=3)
    for name in "abcd":
        book.put(("s", name), Visitor(1))
    book.put(("s", "a"), Visitor(2))  # a is seen again: now the most recent
    assert book.committed() == 1  # one over the cap: the least recently seen (b) goes
    assert list(book.known) == [("s", "c"), ("s", "d"), ("s", "a")]
    assert book.get(("s", "b")) is None and book.missing([("s", "b")]) == [("s", "b")]


def test_compaction_drops_the_cache_but_keeps_unwritten_changes() -> None:
    book = VisitorBook(max_cached=10)
    book.put(("s", "old"), Visitor(1))
    book.committed()
    book.put(("s", "new"), Visitor(2))
    book.compact()
    assert list(book.known) == [("s", "new")] and book.take_dirty() == {("s", "new"): Visitor(2)}


def test_a_trim_follows_a_big_drop_at_most_every_interval() -> None:
    now = [0.0]
    r = Reclaimer(monotonic=lambda: now[0])
    now[0] = MIN_INTERVAL_S
    assert not r.observe(MIN_DROP * 3)  # the peak
    assert not r.observe(MIN_DROP * 2 + 1)  # a drop below the threshold
    assert r.observe(MIN_DROP * 2)  # a drop of MIN_DROP: compact and trim
    r.trim()
    assert r.trims == 1
    now[0] += MIN_INTERVAL_S / 2
    assert not r.observe(0)  # another big drop, too soon
    now[0] += MIN_INTERVAL_S / 2
    assert r.observe(0)


def test_the_session_table_is_rebuilt_once_most_sessions_ended() -> None:
    s = Sessionizer(session_gap_ms=10)
    for i in range(5000):
        s.open(("site", f"v{i}", ""), 1000, f"e{i}", 0)
    s.open(("site", "late", ""), 9000, "e-late", 0)
    table = s.sessions
    emptied, _, evicted = s.evict(5000)
    assert len(emptied) == len(evicted) == 5000
    assert s.sessions is not table and list(s.sessions) == [("site", "late", "")]
