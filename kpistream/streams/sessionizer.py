"""Sessionization, as pure in-memory logic for one Kafka partition.

A session is a visitor's events on one site with no gap longer than ``session_gap_ms``
(an event exactly one gap after the previous one still belongs to the session), or all events
carrying the same tracker ``session_id`` when the tracker sends one. Sessions never merge:
counters never go down, so an out-of-order event that would bridge two open sessions joins the
earlier one. An event earlier than its session's start moves the start.

Deduplication: each session keeps the ids of its events with a digest of their content, so a
tracker retry (same ``event_id``, same content, new offset) is recognised as long as its
session is open, and an event that reuses an id with other content is told apart. Sessions stay open
until no acceptable event can reach them, and any older retry is dropped as late, so within
the allowed lateness every duplicate is caught. A session keeps at most
``MAX_EVENT_IDS_PER_SESSION`` ids: longer sessions are bots, not people.

This module only assigns events to sessions; what a session counts for is
:mod:`kpistream.streams.session_kpis`.
"""

from __future__ import annotations

import heapq

import msgspec

SessionKey = tuple[str, str, str]  # (site, visitor_id, tracker session_id or "")

#: Bounds the dedupe memory of one session (its ids are kept in its Redis state too).
MAX_EVENT_IDS_PER_SESSION = 1000
#: Sessions ended in one step at the most: when a flood of sessions ends at once, their
#: ends are spread over several steps, so no single atomic step holds Redis for long (other
#: partitions' steps and the exporter's reads wait behind it).
MAX_ENDED_PER_STEP = 10_000


class Session(msgspec.Struct, array_like=True, gc=False):
    start_ms: int
    last_ms: int
    event_ids: dict[str, int]  # event_id -> content fingerprint
    page_views: int = 0  # capped at 2: the rules only need 0, 1 or "2 or more"
    interacted: bool = False
    non_bounced_counted: bool = False
    engaged_counted: bool = False
    goals: set[str] = msgspec.field(default_factory=set)
    landing: str | None = None  # path of the earliest page view (raw; labelled on use)
    landing_ms: int = 0
    channel: str | None = None  # "source/medium" of that page view
    cart_ms: int | None = None  # first add_to_cart
    checkout_ms: int | None = None  # first checkout_start
    purchases_ms: list[int] = msgspec.field(default_factory=list)  # sorted, bounded


_SESSIONS_CODEC = msgspec.msgpack.Decoder(list[Session])
_KEY_CODEC = msgspec.msgpack.Decoder(tuple[str, str, str])
_ENCODER = msgspec.msgpack.Encoder()


def encode_key(key: SessionKey) -> bytes:
    return _ENCODER.encode(key)


def decode_key(raw: bytes) -> SessionKey:
    return _KEY_CODEC.decode(raw)


def encode_sessions(sessions: list[Session]) -> bytes:
    return _ENCODER.encode(sessions)


def decode_sessions(raw: bytes) -> list[Session]:
    return _SESSIONS_CODEC.decode(raw)


class Duplicate:
    """The event's id was seen before in the session, with this content fingerprint."""

    __slots__ = ("fingerprint",)

    def __init__(self, fingerprint: int) -> None:
        self.fingerprint = fingerprint


class Sessionizer:
    """Open sessions of one partition, with eviction once no accepted event can reach them."""

    def __init__(self, *, session_gap_ms: int) -> None:
        self.session_gap_ms = session_gap_ms
        self.sessions: dict[SessionKey, list[Session]] = {}
        #: the most sessions held since the dict was last rebuilt (a dict never shrinks)
        self._peak = 0
        # (expiry candidate ms, key): lazily invalidated; a popped key is re-checked.
        self._expiry: list[tuple[int, SessionKey]] = []

    def load(self, sessions: dict[SessionKey, list[Session]]) -> None:
        self.sessions = sessions
        self._expiry = [(max(s.last_ms for s in v), k) for k, v in sessions.items() if v]
        heapq.heapify(self._expiry)

    def find(self, key: SessionKey, ts_ms: int, event_id: str) -> Session | Duplicate | None:
        """The open session an event belongs to, a :class:`Duplicate`, or None for a new session."""
        candidates = self.sessions.get(key)
        if not candidates:
            return None
        for s in candidates:
            seen = s.event_ids.get(event_id)
            if seen is not None:
                return Duplicate(seen)
        if key[2]:  # tracker session id: one session per id
            return candidates[0]
        gap = self.session_gap_ms
        for s in candidates:
            if s.start_ms - gap <= ts_ms <= s.last_ms + gap:
                return s
        return None

    def open(self, key: SessionKey, ts_ms: int, event_id: str, fingerprint: int) -> Session:
        session = Session(ts_ms, ts_ms, {event_id: fingerprint})
        candidates = self.sessions.get(key)
        if candidates is None:
            self.sessions[key] = [session]
            heapq.heappush(self._expiry, (ts_ms, key))
        else:
            candidates.append(session)
            candidates.sort(key=lambda s: s.start_ms)
        return session

    def touch(
        self, key: SessionKey, session: Session, ts_ms: int, event_id: str, fingerprint: int
    ) -> None:
        """Extend an open session by one event."""
        if len(session.event_ids) < MAX_EVENT_IDS_PER_SESSION:
            session.event_ids[event_id] = fingerprint
        if ts_ms > session.last_ms:
            session.last_ms = ts_ms
        elif ts_ms < session.start_ms:
            session.start_ms = ts_ms
            candidates = self.sessions[key]
            if len(candidates) > 1:
                candidates.sort(key=lambda s: s.start_ms)

    def remove_visitor(self, site: str, visitor_id: str) -> list[tuple[SessionKey, Session]]:
        """Drop every open session of one visitor (erasure); their expiry entries go stale
        and are skipped by :meth:`evict`."""
        keys = [k for k in self.sessions if k[0] == site and k[1] == visitor_id]
        return [(key, s) for key in keys for s in self.sessions.pop(key)]

    def evict(
        self, horizon_ms: int, *, limit: int = MAX_ENDED_PER_STEP
    ) -> tuple[list[SessionKey], list[SessionKey], list[tuple[SessionKey, Session]]]:
        """Drop sessions whose last event + gap is before ``horizon_ms``, about ``limit`` at
        the most (the rest stay open until the next call: one atomic step stays short).

        Returns ``(emptied keys, shrunk keys, evicted sessions)``.
        """
        emptied: list[SessionKey] = []
        shrunk: list[SessionKey] = []
        evicted: list[tuple[SessionKey, Session]] = []
        gap = self.session_gap_ms
        heap = self._expiry
        while heap and heap[0][0] + gap < horizon_ms and len(evicted) < limit:
            _, key = heapq.heappop(heap)
            sessions = self.sessions.get(key)
            if not sessions:
                continue
            keep = [s for s in sessions if s.last_ms + gap >= horizon_ms]
            if len(keep) == len(sessions):
                heapq.heappush(heap, (min(s.last_ms for s in keep), key))
                continue
            evicted.extend((key, s) for s in sessions if s.last_ms + gap < horizon_ms)
            if keep:
                self.sessions[key] = keep
                heapq.heappush(heap, (min(s.last_ms for s in keep), key))
                shrunk.append(key)
            else:
                del self.sessions[key]
                emptied.append(key)
        self._peak = max(self._peak, len(self.sessions) + len(emptied))
        if self._peak > 4 * len(self.sessions) + 1024:
            # Most sessions ended: a fresh dict and heap give their tables back to the OS.
            self.sessions = dict(self.sessions)
            self._expiry = list(self._expiry)
            self._peak = len(self.sessions)
        return emptied, shrunk, evicted
