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

from collections.abc import Iterable

from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import Rerouted
from kpistream.contract.visitor import Visitor, VisitorKey
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.kpis.windows import day_of, minute_of
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import (
    AddToCart,
    CheckoutStart,
    ClickstreamEvent,
    Forget,
    Impression,
    ItemEvent,
    Lead,
    PageView,
    Purchase,
    SurveyResponse,
    fingerprint,
)
from kpistream.streams import session_kpis as SK
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
from kpistream.streams.visitors import VisitorBook
from kpistream.streams.watermarked import WatermarkedProcessor

#: Revenue is summed as integer millionths of the currency unit: exact, unlike floats.
MICROS = 1_000_000


def dimension_values(events: Iterable[ClickstreamEvent]) -> dict[str, set[str]]:
    """Raw values of each bounded dimension in a batch, for label admission."""
    values: dict[str, set[str]] = {name: set() for name in Dimensions.NAMES}
    for event in events:
        values["site"].add(event.site)
        if isinstance(event, ItemEvent):
            if event.campaign is not None:
                values["campaign"].add(event.campaign)
        elif isinstance(event, PageView):
            values["landing_page"].add(SK.landing_path(event))
            values["channel"].add(SK.channel_of(event))
        elif isinstance(event, Purchase):
            values["currency"].add(event.currency)
    return values


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

    def needs(self, events: list[ClickstreamEvent]) -> list[VisitorKey]:
        """The visitors of these events the cache lacks."""
        return self.visitors.missing((e.site, e.visitor_id) for e in events)

    def fill(self, loaded: dict[VisitorKey, Visitor | None]) -> None:
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
        delta = BatchDelta()
        touched: set[SessionKey] = set()
        health = delta.health
        sessionizer = self.sessionizer
        watermark = self.watermark_ms
        erased: list[tuple[SessionKey, Session]] = []
        for index, event in enumerate(decoded):
            if isinstance(event, Forget):  # never late: an erasure is always carried out
                health[H.PROCESSED] += 1
                erased += self.sessionizer.remove_visitor(event.site, event.visitor_id)
                self.visitors.erase((event.site, event.visitor_id))
                continue
            if not self.screen(event, watermark, health):
                continue
            ts = event.ts
            key = (event.site, event.visitor_id, event.session_id or "")
            content = fingerprint(event)
            found = sessionizer.find(key, ts, event.event_id)
            if isinstance(found, Duplicate):
                self.repeated(
                    delta, index, event.event_id, same_content=found.fingerprint == content
                )
                continue
            if ts > watermark:
                watermark = ts if ts <= now_ms else max(watermark, now_ms)
            health[H.PROCESSED] += 1
            site = self.dims.site.label(event.site)
            if found is None:
                session = sessionizer.open(key, ts, event.event_id, content)
                self._session_event(delta, site, session, event, None)
            else:
                counted = SK.signature(found)  # what its start-bucket counters reflect now
                sessionizer.touch(key, found, ts, event.event_id, content)
                self._session_event(delta, site, found, event, counted)
            touched.add(key)
            self._event_counters(delta, site, event)
            self._visitor_event(delta, site, event)
        self.watermark_ms = watermark
        # A key the batch used again after the erasure is stored afresh; the others go.
        gone = {key for key, _ in erased if key not in self.sessionizer.sessions}
        touched.difference_update(gone)
        self._settle(delta, touched)
        delta.state_del.update(encode_key(key) for key in gone)
        gap = self.sessionizer.session_gap_ms
        for key, session in erased:  # ended now, so that the aggregates stay whole
            end = max(session.last_ms, min(session.last_ms + gap, self.watermark_ms))
            self._end(delta, self.dims.site.label(key[0]), session, minute_of(end))
        delta.visitors = self.visitors.take_dirty()
        return delta

    # -- rules ---------------------------------------------------------------------------------

    def _session_event(
        self,
        delta: BatchDelta,
        site: str,
        session: Session,
        event: ClickstreamEvent,
        counted: SK.Signature | None,
    ) -> None:
        """Apply the event to the session and move its start-bucket contributions.

        ``counted`` is the session's signature before this event (None for a new session).
        """
        buckets = delta.buckets
        # Only these events can open or complete a cart or checkout.
        commerce = isinstance(event, AddToCart | CheckoutStart | Purchase)
        if commerce:
            checkout_was = session.checkout_ms
            before_completion = (
                SK.completed_at(session.cart_ms, session.purchases_ms),
                SK.completed_at(session.checkout_ms, session.purchases_ms),
            )
        new_goal = SK.apply(session, event, self.conversion_goals)
        after = SK.signature(session)
        if after != counted:
            landing, channel = self.dims.landing_page.label, self.dims.channel.label
            if counted is not None:
                for name in SK.start_fields(counted, site, landing, channel):
                    buckets[counted[0], name] -= 1
            for name in SK.start_fields(after, site, landing, channel):
                buckets[after[0], name] += 1
        totals = delta.totals
        if counted is None:
            totals[fields.field(K.SESSIONS.code, site)] += 1
        if new_goal is not None:
            totals[fields.field(K.CONVERSIONS.code, site, new_goal)] += 1
        if not session.non_bounced_counted and (session.page_views >= 2 or session.interacted):
            session.non_bounced_counted = True
            totals[fields.field(K.NON_BOUNCED.code, site)] += 1
        if not session.engaged_counted and SK.is_engaged(session):
            session.engaged_counted = True
            totals[fields.field(K.ENGAGED.code, site)] += 1
        if not commerce:
            return
        opened = session.checkout_ms
        if opened is not None and opened != checkout_was:  # opened now, or earlier than known
            name = fields.field(K.CHECKOUT_STARTED.code, site)
            if checkout_was is None:
                totals[name] += 1
            else:
                buckets[minute_of(checkout_was), name] -= 1
            buckets[minute_of(opened), name] += 1
        after_completion = (
            SK.completed_at(session.cart_ms, session.purchases_ms),
            SK.completed_at(session.checkout_ms, session.purchases_ms),
        )
        for kind, was, now in (
            (K.CART_COMPLETED.code, before_completion[0], after_completion[0]),
            (K.CHECKOUT_COMPLETED.code, before_completion[1], after_completion[1]),
        ):
            if now != was and now is not None:  # completed now, or by an earlier purchase
                name = fields.field(kind, site)
                if was is None:
                    totals[name] += 1
                else:
                    buckets[minute_of(was), name] -= 1
                buckets[minute_of(now), name] += 1

    def _event_counters(self, delta: BatchDelta, site: str, event: ClickstreamEvent) -> None:
        """Counters attributed to the event's own time."""
        minute = minute_of(event.ts)
        names: list[tuple[str, int]]
        if isinstance(event, PageView):
            names = [(fields.field(K.PAGE_VIEWS.code, site), 1)]
        elif isinstance(event, ItemEvent):
            kind = K.IMPRESSIONS.code if isinstance(event, Impression) else K.CLICKS.code
            campaign = self.dims.campaign.label(event.campaign)
            names = [(fields.field(kind, site, event.item_kind, campaign), 1)]
        elif isinstance(event, Purchase):
            currency = self.dims.currency.label(event.currency)
            names = [
                (fields.field(K.REVENUE.code, site, currency), round(event.value * MICROS)),
                (fields.field(K.ORDERS.code, site, currency), 1),
            ]
        elif isinstance(event, SurveyResponse):
            names = survey_fields(site, event)
        else:
            return
        for name, n in names:
            delta.buckets[minute, name] += n
            delta.totals[name] += n

    def _visitor_event(self, delta: BatchDelta, site: str, event: ClickstreamEvent) -> None:
        """First visits, leads and lead -> customer, from the visitor's state across sessions."""
        ts = event.ts
        key = (event.site, event.visitor_id)
        delta.uniques.setdefault((minute_of(ts), site), set()).add(event.visitor_id)
        visitor = self.visitors.get(key)
        new_visitor = fields.field(K.NEW_VISITORS.code, site)
        if visitor is None:
            visitor = Visitor(ts)
            delta.buckets[minute_of(ts), new_visitor] += 1
            delta.totals[new_visitor] += 1
        elif ts < visitor.first_seen_ms:
            delta.buckets[minute_of(visitor.first_seen_ms), new_visitor] -= 1
            delta.buckets[minute_of(ts), new_visitor] += 1
            visitor.first_seen_ms = ts
        if isinstance(event, Lead):
            leads = fields.field(K.LEADS.code, site)
            if visitor.lead_ms is None:
                delta.days[day_of(ts), leads] += 1
                delta.totals[leads] += 1
                visitor.lead_ms = ts
            elif ts < visitor.lead_ms:
                delta.days[day_of(visitor.lead_ms), leads] -= 1
                delta.days[day_of(ts), leads] += 1
                visitor.lead_ms = ts
        elif isinstance(event, Purchase):
            if visitor.first_purchase_ms is None or ts < visitor.first_purchase_ms:
                visitor.first_purchase_ms = ts
        if not visitor.lead_customer_counted and visitor.is_lead_customer:
            visitor.lead_customer_counted = True
            assert visitor.first_purchase_ms is not None
            customers = fields.field(K.LEAD_CUSTOMERS.code, site)
            delta.days[day_of(visitor.first_purchase_ms), customers] += 1
            delta.totals[customers] += 1
        self.visitors.put(key, visitor)  # written back (TTL refreshed) with the batch

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
        for key, session in evicted:
            self._end(
                delta, self.dims.site.label(key[0]), session, minute_of(session.last_ms + gap)
            )
        delta.watermark_ms = self.watermark_ms

    def _end(self, delta: BatchDelta, site: str, s: Session, end_minute: int) -> None:
        """Final decisions when a session ends (its inactivity timeout passed in event time)."""
        buckets, totals = delta.buckets, delta.totals
        if not s.non_bounced_counted and s.page_views == 0:
            totals[fields.field(K.NON_BOUNCED.code, site)] += 1  # no page view: never was a bounce
        ended = [
            (fields.field(K.ENDED.code, site), 1),
            (fields.field(K.DURATION.code, site), s.last_ms - s.start_ms),
        ]
        if s.cart_ms is not None and SK.completed_at(s.cart_ms, s.purchases_ms) is None:
            ended.append((fields.field(K.CART_ABANDONED.code, site), 1))
        if s.checkout_ms is not None and SK.completed_at(s.checkout_ms, s.purchases_ms) is None:
            ended.append((fields.field(K.CHECKOUT_ABANDONED.code, site), 1))
        for name, n in ended:
            buckets[end_minute, name] += n
            totals[name] += n
        # Landing page and channel can change until the end: their totals count now, once.
        page = self.dims.landing_page.label(s.landing)
        chan = self.dims.channel.label(s.channel)
        totals[fields.field(K.LANDING_SESSIONS.code, site, page)] += 1
        totals[fields.field(K.CHANNEL_SESSIONS.code, site, chan)] += 1
        for goal in s.goals:
            totals[fields.field(K.LANDING_CONVERSIONS.code, site, page, goal)] += 1
            totals[fields.field(K.CHANNEL_CONVERSIONS.code, site, chan, goal)] += 1


def survey_fields(site: str, event: SurveyResponse) -> list[tuple[str, int]]:
    if event.kind == "nps":
        out = [(fields.field(K.NPS_ANSWERS.code, site), 1)]
        if event.score >= 9:
            out.append((fields.field(K.NPS_PROMOTERS.code, site), 1))
        elif event.score <= 6:
            out.append((fields.field(K.NPS_DETRACTORS.code, site), 1))
        return out
    if event.kind == "csat":
        out = [(fields.field(K.CSAT_ANSWERS.code, site), 1)]
        if event.score >= 4:
            out.append((fields.field(K.CSAT_SATISFIED.code, site), 1))
        return out
    return [
        (fields.field(K.CES_ANSWERS.code, site), 1),
        (fields.field(K.CES_SUM.code, site), event.score),
    ]
