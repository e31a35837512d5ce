"""Turn one partition's batch of decoded clickstream events into counter deltas.

Pure and synchronous: no Kafka, no Redis, no clock. The batch consumer feeds it decoded
events; the resulting :class:`BatchDelta` is applied to Redis in one atomic step together with
the partition's next offset. The same code serves the live worker, replays and tests.

Each event is counted exactly once: as processed, late, duplicate (same ``event_id`` and
content as an event of its open session), re-routed (forwarded to the partition that owns it)
or rejected (by the decoder, or here: an ``event_id`` reused with other content).

Lateness: the partition's watermark is the largest event time accepted so far (or, while the
partition is idle, the wall clock minus the allowed lateness: :meth:`advance`). An event older
than ``watermark - allowed_lateness_ms`` is counted as late and dropped. A session is decided
(abandoned carts, time on site, ...) and evicted once no acceptable event can reach it, so
decisions are final and counters never go down.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import cast

from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import Rerouted
from kpistream.contract.visitor import VisitorKey
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import SiteFields
from kpistream.kpis.windows import MINUTE_MS, minute_of
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import ClickstreamEvent, Forget, fingerprint
from kpistream.streams import session_kpis as SK
from kpistream.streams.event_kpis import EventCounts
from kpistream.streams.labels import Dimensions
from kpistream.streams.sessionizer import (
    Duplicate,
    Session,
    Sessionizer,
    SessionKey,
    decode_key,
    decode_sessions,
    encode_key,
    encode_sessions,
)
from kpistream.streams.tally import Tally
from kpistream.streams.visitor_kpis import VisitorCounts
from kpistream.streams.visitors import VisitorBook
from kpistream.streams.watermarked import WatermarkedProcessor

#: What is set aside before the rules (events are told apart by exact class: ``isinstance``
#: on a struct class is slow): rejections and re-routed events, counted by the screen, and
#: erasures, carried out whatever their time.
ASIDE = frozenset((Rejection, Rerouted, Forget))
#: The codes of the counts labelled by the site alone (see :class:`SiteFields`).
SITE_CODES = tuple(c.code for c in K.COUNTS if c.labels == K.SITE)

#: The sessions a batch touched, by identity: the session, its site's field names and what
#: it counted before the batch (:data:`SK.NOTHING` for a session the batch opened).
Touched = dict[int, tuple[Session, SiteFields, SK.Marks, SessionKey]]


class PartitionProcessor(WatermarkedProcessor):
    """State and rules for one Kafka partition of the clickstream topic."""

    def __init__(
        self,
        *,
        session_gap_ms: int,
        allowed_lateness_ms: int,
        dimensions: Dimensions,
        conversion_goals: Iterable[str] = ("lead", "purchase"),
        max_cached_visitors: int = 20_000,
    ) -> None:
        super().__init__(allowed_lateness_ms=allowed_lateness_ms)
        self.sessionizer = Sessionizer(session_gap_ms=session_gap_ms)
        self.dims = dimensions
        self.conversion_goals = frozenset(conversion_goals)
        self.visitors = VisitorBook(max_cached=max_cached_visitors)
        self._sites: dict[str, SiteFields] = {}
        self._by_site: dict[str, SiteFields] = {}  # in a batch: raw site -> _names_of(site)

    def needs(self, events: list[ClickstreamEvent]) -> list[VisitorKey]:
        """The visitors of these events the cache lacks."""
        return self.visitors.missing((e.site, e.visitor_id) for e in events)

    def fill(self, loaded: dict[VisitorKey, bytes | None]) -> None:
        self.visitors.fill(loaded)

    def committed(self) -> None:
        """The last delta is in Redis."""
        self.visitors.committed()

    def held(self) -> int:
        return len(self.sessionizer.sessions) + len(self.visitors.known)

    def compact(self) -> None:
        """Re-create the state it holds as fresh objects (see :mod:`kpistream.streams.memory`)."""
        sessions = self.sessionizer.sessions
        fresh = {
            decode_key(encode_key(k)): decode_sessions(encode_sessions(v))
            for k, v in sessions.items()
        }
        self.sessionizer.load(fresh)
        self.visitors.compact()

    def load(self, state: dict[bytes, bytes], watermark_ms: int) -> dict[str, set[str]]:
        """Resume from stored state; returns the raw dimension values that ending the loaded
        sessions will label (they must be admitted before the first batch)."""
        sessions = {decode_key(k): decode_sessions(v) for k, v in state.items()}
        self.sessionizer.load(sessions)
        self.watermark_ms = watermark_ms
        values: dict[str, set[str]] = {"site": set(), "landing_page": set(), "channel": set()}
        for key, open_sessions in sessions.items():
            values["site"].add(key[0])
            for s in open_sessions:
                if s.landing is not None:
                    values["landing_page"].add(s.landing)
                if s.channel is not None:
                    values["channel"].add(s.channel)
        return values

    def process(
        self, decoded: Iterable[ClickstreamEvent | Rejection | Rerouted], *, now_ms: int
    ) -> BatchDelta:
        """Route each accepted event to the KPI families (its session's, its own minute's,
        its visitor's); then account for the touched sessions and end the unreachable ones."""
        delta = BatchDelta()
        tally = Tally(delta)
        count = EventCounts(tally, self.dims).count
        seen = VisitorCounts(tally, self.visitors, delta.uniques).seen
        sessionizer, health, goals = self.sessionizer, delta.health, self.conversion_goals
        find, open_session, touch = sessionizer.find, sessionizer.open, sessionizer.touch
        marks: Touched = {}
        erased: list[tuple[SessionKey, Session]] = []
        processed = 0
        watermark, lateness = self.watermark_ms, self.allowed_lateness_ms
        for index, event in enumerate(cast(Iterable[ClickstreamEvent], decoded)):
            cls = event.__class__  # exact classes: isinstance on a struct class is slow
            if cls in ASIDE:
                processed += self._aside(event, watermark, health, erased)
                continue
            ts = event.ts
            if ts < watermark - lateness:
                health[H.LATE] += 1
                continue
            key = (event.site, event.visitor_id, event.session_id or "")
            content = fingerprint(event)
            found = find(key, ts, event.event_id)
            if found.__class__ is Duplicate:
                self.repeated(delta, index, event.event_id, found.fingerprint == content)
                continue
            if ts > watermark:
                watermark = ts if ts <= now_ms else max(watermark, now_ms)
            processed += 1
            names = self._by_site.get(event.site) or self._site_names(event.site)
            if found is None:
                session = open_session(key, ts, event.event_id, content)
                marks[id(session)] = (session, names, SK.NOTHING, key)
            else:
                session = cast(Session, found)
                if id(session) not in marks:  # its first event in the batch
                    marks[id(session)] = (session, names, SK.marks(session), key)
                touch(key, session, ts, event.event_id, content)
            SK.apply(session, event, cls, goals)
            minute = ts // MINUTE_MS
            count(names, event, cls, minute)
            seen(names, event.site, event.visitor_id, cls, ts, minute)
        self.watermark_ms = watermark
        self._close(delta, tally, marks, erased, processed)
        return delta

    def _aside(
        self,
        event: object,
        watermark_ms: int,
        health: Counter[str],
        erased: list[tuple[SessionKey, Session]],
    ) -> int:
        """A rejection or a re-routed event (counted: 0 processed), or an erasure (carried out
        whatever its time: 1 processed; the visitor's open sessions join ``erased``)."""
        if event.__class__ is not Forget:
            self.screen(event, watermark_ms, health)
            return 0
        self.visitors.erase((event.site, event.visitor_id))
        erased += self.sessionizer.remove_visitor(event.site, event.visitor_id)
        return 1

    def _site_names(self, site: str) -> SiteFields:
        """A raw site's field names, kept for the batch (labels cannot change within a
        batch: there is no await in it)."""
        names = self._by_site[site] = self._names_of(site)
        return names

    def _close(
        self,
        delta: BatchDelta,
        tally: Tally,
        marks: Touched,
        erased: list[tuple[SessionKey, Session]],
        processed: int,
    ) -> None:
        """Account for the sessions the batch touched, store them, end what the batch
        decided, and write the visitors."""
        self._by_site.clear()
        tally.close()
        # What each touched session counts for moved from where it was before the batch to
        # where it is now: the per-event moves in between cancel out.
        starts: SK.StartCache = {}
        for session, names, was, _ in marks.values():
            SK.account(tally, names, self.dims, session, was, starts)
        if processed:
            delta.health[H.PROCESSED] += processed
        sessionizer = self.sessionizer
        # A key the batch used again after the erasure is stored afresh; the others go.
        gone = {key for key, _ in erased if key not in sessionizer.sessions}
        self._settle(delta, {m[3] for m in marks.values()} - gone)
        delta.state_del.update(encode_key(key) for key in gone)
        gap = sessionizer.session_gap_ms
        for key, session in erased:  # ended now, so that the aggregates stay whole
            end = max(session.last_ms, min(session.last_ms + gap, self.watermark_ms))
            SK.end(tally, self._names_of(key[0]), self.dims, session, minute_of(end))
        delta.visitors = self.visitors.take_dirty()

    def _names_of(self, site: str) -> SiteFields:
        """The field names of a raw site's label."""
        return self._names(self.dims.site.label(site))

    def _names(self, site: str) -> SiteFields:
        """The field names of a site label (built at its first use)."""
        names = self._sites.get(site)
        if names is None:
            if len(self._sites) >= 4 * self.dims.site.max_values + 1024:
                self._sites.clear()  # labels that lost their slot: start again
            names = self._sites[site] = SiteFields(site, SITE_CODES)
        return names

    def _settle(self, delta: BatchDelta, touched: set[SessionKey]) -> None:
        """Store touched sessions; end and decide those no acceptable event can reach."""
        horizon = self.watermark_ms - self.allowed_lateness_ms
        emptied, shrunk, evicted = self.sessionizer.evict(horizon)
        touched.difference_update(emptied)
        touched.update(shrunk)
        sessions = self.sessionizer.sessions
        delta.state_set = {encode_key(k): encode_sessions(sessions[k]) for k in touched}
        delta.state_del = {encode_key(k) for k in emptied}
        gap = self.sessionizer.session_gap_ms
        tally = Tally(delta)
        for key, session in evicted:
            names = self._names_of(key[0])
            SK.end(tally, names, self.dims, session, minute_of(session.last_ms + gap))
        delta.watermark_ms = self.watermark_ms
