"""Sessionization and the bounce rule, as pure in-memory logic for one Kafka partition.

A session is a visitor's events on one site with no gap longer than ``session_gap_ms``
(an event exactly one gap after the previous one still belongs to the session), or all events
carrying the same tracker ``session_id`` when the tracker sends one. Sessions never merge:
counters never go down, so an out-of-order event that would bridge two open sessions joins the
earlier one. An event earlier than its session's start moves the session (and its counts) to
the earlier start bucket.

Deduplication: each session keeps the ids of its events, so a tracker retry (same
``event_id``, new offset) is recognised as long as its session is open. Sessions stay open
until no acceptable event can reach them, and any older retry is dropped as late, so within
the allowed lateness every duplicate is caught. A session keeps at most
``MAX_EVENT_IDS_PER_SESSION`` ids: longer sessions are bots, not people.

Bounce (KPIS.md): a session with exactly one page view and no interaction. It is counted as a
bounce from its first page view and corrected in its start bucket when a second page view or
an interaction arrives. The monotonic ``non_bounced`` counter is incremented when a session
stops being a bounce, or, for a session that never had a page view, when it is evicted.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import msgspec

from sinks.buckets import minute_of

SessionKey = tuple[str, str, str]  # (site, visitor_id, tracker session_id or "")

#: Bounds the dedupe memory of one session (its ids are kept in its Redis state too).
MAX_EVENT_IDS_PER_SESSION = 1000


class Session(msgspec.Struct, array_like=True):
    start_ms: int
    last_ms: int
    page_views: int  # capped at 2: the rules only need 0, 1 or "2 or more"
    interacted: bool
    non_bounced_counted: bool
    event_ids: set[str]

    @property
    def is_bounce(self) -> bool:
        return self.page_views == 1 and not self.interacted


@dataclass(slots=True)
class SessionChange:
    """What one event did to session counters, in the start bucket's minute."""

    new_session: bool = False
    moved_from_minute: int | None = None  # the session's start moved out of this minute
    bounce_delta: int = 0  # in the (current) start minute
    became_non_bounced: bool = False


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


class Sessionizer:
    """Open sessions of one partition, with eviction once no accepted event can reach them."""

    def __init__(self, *, session_gap_ms: int) -> None:
        self.session_gap_ms = session_gap_ms
        self.sessions: dict[SessionKey, list[Session]] = {}
        # (expiry candidate ms, key): lazily invalidated; a popped key is re-checked.
        self._expiry: list[tuple[int, SessionKey]] = []

    def load(self, sessions: dict[SessionKey, list[Session]]) -> None:
        self.sessions = sessions
        self._expiry = [(max(s.last_ms for s in v), k) for k, v in sessions.items() if v]
        heapq.heapify(self._expiry)

    def observe(
        self, key: SessionKey, ts_ms: int, event_id: str, *, page_view: bool, interaction: bool
    ) -> tuple[Session, SessionChange] | None:
        """Apply one event; ``None`` when it is a duplicate of an event already seen."""
        change = SessionChange()
        candidates = self.sessions.get(key)
        session = None
        if candidates:
            if any(event_id in s.event_ids for s in candidates):
                return None
            if key[2]:  # tracker session id: one session per id
                session = candidates[0]
            else:
                gap = self.session_gap_ms
                for s in candidates:
                    if s.start_ms - gap <= ts_ms <= s.last_ms + gap:
                        session = s
                        break
        if session is None:
            session = Session(ts_ms, ts_ms, 0, False, False, set())
            if candidates is None:
                self.sessions[key] = [session]
                heapq.heappush(self._expiry, (ts_ms, key))
            else:
                candidates.append(session)
                candidates.sort(key=lambda s: s.start_ms)
            change.new_session = True
        elif ts_ms < session.start_ms:
            old_minute = minute_of(session.start_ms)
            session.start_ms = ts_ms
            if minute_of(ts_ms) != old_minute:
                change.moved_from_minute = old_minute
            if candidates is not None and len(candidates) > 1:
                candidates.sort(key=lambda s: s.start_ms)
        if len(session.event_ids) < MAX_EVENT_IDS_PER_SESSION:
            session.event_ids.add(event_id)
        was_bounce = session.is_bounce
        if page_view and session.page_views < 2:
            session.page_views += 1
        if interaction:
            session.interacted = True
        if ts_ms > session.last_ms:
            session.last_ms = ts_ms
        change.bounce_delta = int(session.is_bounce) - int(was_bounce)
        if not session.non_bounced_counted and (session.page_views >= 2 or session.interacted):
            session.non_bounced_counted = True
            change.became_non_bounced = True
        return session, change

    def evict(self, horizon_ms: int) -> tuple[list[SessionKey], list[SessionKey], list[SessionKey]]:
        """Drop sessions whose last event + gap is before ``horizon_ms``.

        Returns ``(emptied keys, shrunk keys, never-bounced)``: the last lists the key of each
        evicted session that had no page view and no interaction; such a session was never a
        bounce and is added to the ``non_bounced`` counter now.
        """
        emptied: list[SessionKey] = []
        shrunk: list[SessionKey] = []
        never_bounced: list[SessionKey] = []
        gap = self.session_gap_ms
        heap = self._expiry
        while heap and heap[0][0] + gap < horizon_ms:
            _, key = heapq.heappop(heap)
            sessions = self.sessions.get(key)
            if not sessions:
                continue
            keep = [s for s in sessions if s.last_ms + gap >= horizon_ms]
            if len(keep) == len(sessions):
                heapq.heappush(heap, (min(s.last_ms for s in keep), key))
                continue
            never_bounced.extend(
                key
                for s in sessions
                if s.last_ms + gap < horizon_ms and not s.non_bounced_counted and s.page_views == 0
            )
            if keep:
                self.sessions[key] = keep
                heapq.heappush(heap, (min(s.last_ms for s in keep), key))
                shrunk.append(key)
            else:
                del self.sessions[key]
                emptied.append(key)
        return emptied, shrunk, never_bounced
