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
from typing import cast

from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import Rerouted
from kpistream.contract.visitor import Visitor, VisitorKey
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import SiteFields
from kpistream.kpis.windows import MINUTE_MS, day_of, minute_of
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import (
    Click,
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

# The rules test an event's exact class (every event class is a leaf): ``isinstance`` on a
# struct class is slow.
#: What the screen counts instead of processing.
SCREENED = frozenset((Rejection, Rerouted))
#: Impressions and clicks (counted inline).
ITEMS = frozenset((Impression, Click))
#: Events with counters at their own time besides page views and items (counted inline).
COUNTED = frozenset((Purchase, SurveyResponse))

#: The codes of the counts labelled by the site alone (see :class:`SiteFields`), and the
#: ones the rules below name, bound once.
SITE_CODES = tuple(c.code for c in K.COUNTS if c.labels == K.SITE)
SESSIONS, NON_BOUNCED, ENGAGED = K.SESSIONS.code, K.NON_BOUNCED.code, K.ENGAGED.code
BOUNCES = K.BOUNCES.code
CONVERSIONS, PAGE_VIEWS, NEW_VISITORS = K.CONVERSIONS.code, K.PAGE_VIEWS.code, K.NEW_VISITORS.code
LEADS, LEAD_CUSTOMERS = K.LEADS.code, K.LEAD_CUSTOMERS.code
CHECKOUT_STARTED = K.CHECKOUT_STARTED.code
CART_COMPLETED, CHECKOUT_COMPLETED = K.CART_COMPLETED.code, K.CHECKOUT_COMPLETED.code
IMPRESSIONS, CLICKS, REVENUE, ORDERS = (
    K.IMPRESSIONS.code,
    K.CLICKS.code,
    K.REVENUE.code,
    K.ORDERS.code,
)
ENDED, DURATION = K.ENDED.code, K.DURATION.code
CART_ABANDONED, CHECKOUT_ABANDONED = K.CART_ABANDONED.code, K.CHECKOUT_ABANDONED.code
LANDING_SESSIONS, CHANNEL_SESSIONS = K.LANDING_SESSIONS.code, K.CHANNEL_SESSIONS.code
LANDING_CONVERSIONS, CHANNEL_CONVERSIONS = K.LANDING_CONVERSIONS.code, K.CHANNEL_CONVERSIONS.code


#: What a session counted before a batch: its signature, when its checkout opened and when
#: its cart and checkout were completed (:func:`before`).
Before = tuple[SK.Signature, int | None, int | None, int | None]


def before(s: Session) -> Before:
    """What an open session counts for, taken before a batch changes it."""
    purchases = s.purchases_ms
    return (
        SK.signature(s),
        s.checkout_ms,
        SK.completed_at(s.cart_ms, purchases),
        SK.completed_at(s.checkout_ms, purchases),
    )


def dimension_values(events: Iterable[ClickstreamEvent]) -> dict[str, set[str]]:
    """Raw values of each bounded dimension in a batch, for label admission."""
    sites: set[str] = set()
    campaigns: set[str] = set()
    pages: set[str] = set()
    channels: set[str] = set()
    currencies: set[str] = set()
    for event in events:
        sites.add(event.site)
        cls = event.__class__  # exact classes: isinstance on a struct class is slow
        if cls is PageView:
            view = cast(PageView, event)
            pages.add(SK.landing_path(view))
            channels.add(SK.channel_of(view))
        elif cls in ITEMS:
            campaign = cast(ItemEvent, event).campaign
            if campaign is not None:
                campaigns.add(campaign)
        elif cls is Purchase:
            currencies.add(cast(Purchase, event).currency)
    return {
        "site": sites,
        "campaign": campaigns,
        "landing_page": pages,
        "channel": channels,
        "currency": currencies,
    }


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
        find, open_session, touch = sessionizer.find, sessionizer.open, sessionizer.touch
        site_label, goals = self.dims.site.label, self.conversion_goals
        book = self.visitors
        watermark = self.watermark_ms
        erased: list[tuple[SessionKey, Session]] = []
        processed = 0
        buckets, totals, uniques = delta.buckets, delta.totals, delta.uniques
        by_site: dict[str, SiteFields] = {}  # raw site -> its label's field names
        #: the sessions the batch touched, by identity: (session, its site's field names,
        #: what it counted before the batch; None for a session the batch opened)
        marks: dict[int, tuple[Session, SiteFields, Before | None]] = {}
        #: +1 counters of an event's own minute (page views, items, new visitors), added to
        #: buckets and totals once per batch
        ones: dict[tuple[int, str], int] = {}
        #: (raw site, class, item kind, raw campaign) -> the item counter's field name
        item_names: dict[tuple[str, type, str, str | None], str] = {}
        late_before = watermark - self.allowed_lateness_ms
        for index, event in enumerate(decoded):
            cls = event.__class__  # exact classes: isinstance on a struct class is slow
            if cls in SCREENED:
                self.screen(event, watermark, health)  # counts the rejection or re-route
                continue
            event = cast(ClickstreamEvent, event)
            if cls is Forget:  # never late: an erasure is always carried out
                processed += 1
                erased += sessionizer.remove_visitor(event.site, event.visitor_id)
                book.erase((event.site, event.visitor_id))
                continue
            ts = event.ts
            if ts < late_before:
                health[H.LATE] += 1
                continue
            site, visitor_id = event.site, event.visitor_id
            key = (site, visitor_id, event.session_id or "")
            content = fingerprint(event)
            found = find(key, ts, event.event_id)
            if found.__class__ is Duplicate:
                self.repeated(
                    delta,
                    index,
                    event.event_id,
                    same_content=found.fingerprint == content,
                )
                continue
            if ts > watermark:
                watermark = ts if ts <= now_ms else max(watermark, now_ms)
                late_before = watermark - self.allowed_lateness_ms
            processed += 1
            names = by_site.get(site)
            if names is None:  # labels cannot change within a batch (no await in here)
                names = by_site[site] = self._names(site_label(site))
            if found is None:
                session = open_session(key, ts, event.event_id, content)
                marks[id(session)] = (session, names, None)
            else:
                session = cast(Session, found)
                if id(session) not in marks:
                    marks[id(session)] = (session, names, before(session))
                touch(key, session, ts, event.event_id, content)
            touched.add(key)
            SK.apply(session, event, cls, goals)
            minute = ts // MINUTE_MS
            if cls is PageView:
                slot = (minute, names.one[PAGE_VIEWS])
                ones[slot] = ones.get(slot, 0) + 1
            elif cls in ITEMS:
                item = cast(ItemEvent, event)
                what = (site, cls, item.item_kind, item.campaign)
                name = item_names.get(what)
                if name is None:
                    name = item_names[what] = self._item_field(names, item, cls)
                slot = (minute, name)
                ones[slot] = ones.get(slot, 0) + 1
            elif cls in COUNTED:
                self._event_counters(delta, names, event, cls, minute)
            # The visitor: unique in its minute, new or not, lead and customer.
            slot = (minute, names.site)
            ids = uniques.get(slot)
            if ids is None:
                uniques[slot] = {visitor_id}
            else:
                ids.add(visitor_id)
            vkey = (site, visitor_id)
            visitor = book.get(vkey)
            if visitor is None:
                visitor = Visitor(ts)
                slot = (minute, names.one[NEW_VISITORS])
                ones[slot] = ones.get(slot, 0) + 1
                book.put(vkey, visitor)
            else:
                book.seen(vkey)
                if ts < visitor.first_seen_ms:
                    name = names.one[NEW_VISITORS]
                    buckets[minute_of(visitor.first_seen_ms), name] -= 1
                    buckets[minute, name] += 1
                    visitor.first_seen_ms = ts
            if cls is Lead or cls is Purchase:
                self._lead(delta, names, visitor, cls, ts)
        for slot, n in ones.items():
            buckets[slot] += n
            totals[slot[1]] += n
        # What each touched session counts for moved from where it was before the batch to
        # where it is now: the per-event moves in between cancel out.
        starts: dict[tuple[SiteFields, tuple[object, ...]], list[str]] = {}
        for session, names, was in marks.values():
            self._account(delta, names, session, was, starts)
        if processed:
            health[H.PROCESSED] += processed
        self.watermark_ms = watermark
        # A key the batch used again after the erasure is stored afresh; the others go.
        gone = {key for key, _ in erased if key not in sessionizer.sessions}
        touched.difference_update(gone)
        self._settle(delta, touched)
        delta.state_del.update(encode_key(key) for key in gone)
        gap = sessionizer.session_gap_ms
        for key, session in erased:  # ended now, so that the aggregates stay whole
            end = max(session.last_ms, min(session.last_ms + gap, self.watermark_ms))
            self._end(delta, self._names(site_label(key[0])), session, minute_of(end))
        delta.visitors = book.take_dirty()
        return delta

    def _names(self, site: str) -> SiteFields:
        """The field names of a site label (built at its first use)."""
        names = self._sites.get(site)
        if names is None:
            if len(self._sites) >= 4 * self.dims.site.max_values + 1024:
                self._sites.clear()  # labels that lost their slot: start again
            names = self._sites[site] = SiteFields(site, SITE_CODES)
        return names

    # -- rules ---------------------------------------------------------------------------------

    def _account(
        self,
        delta: BatchDelta,
        names: SiteFields,
        session: Session,
        was: Before | None,
        starts: dict[tuple[SiteFields, tuple[object, ...]], list[str]],
    ) -> None:
        """Move a session's start-bucket contributions from what it counted before the batch
        (``was``; None for a session the batch opened) to what it counts now, and count what
        it reached for the first time: opened, not a bounce, engaged, a goal, a cart or
        checkout opened or completed."""
        buckets, totals = delta.buckets, delta.totals
        one = names.one
        after = SK.signature(session)
        counted = None if was is None else was[0]
        if after != counted:
            landing, channel = self.dims.landing_page.label, self.dims.channel.label
            if counted is not None and counted[0::4] == after[0::4] and counted[5] == after[5]:
                # Same start minute, landing page and channel (the usual case): only the
                # flags and goals moved, so only their counters do.
                minute = after[0]
                for i, code in ((1, BOUNCES), (2, ENGAGED)):
                    if counted[i] != after[i]:
                        key = (minute, one[code])
                        buckets[key] = buckets.get(key, 0) + (1 if after[i] else -1)
                if counted[3] != after[3]:  # goals are only ever added
                    page, chan = landing(after[4]), channel(after[5])
                    for goal in after[3]:
                        if goal not in counted[3]:
                            for name in SK.goal_fields(names, page, chan, goal):
                                key = (minute, name)
                                buckets[key] = buckets.get(key, 0) + 1
            else:
                for sig, n in ((counted, -1), (after, 1)):
                    if sig is None:
                        continue
                    # A batch's sessions share a few signatures: their fields are built once.
                    what = (names, sig[1:])
                    fields = starts.get(what)
                    if fields is None:
                        fields = starts[what] = SK.start_fields(sig, names, landing, channel)
                    for name in fields:
                        key = (sig[0], name)
                        buckets[key] = buckets.get(key, 0) + n
            for goal in after[3]:  # reached in this batch: the conversion counts now, once
                if counted is None or goal not in counted[3]:
                    name = names.of(CONVERSIONS, goal)
                    totals[name] = totals.get(name, 0) + 1
        if counted is None:
            name = one[SESSIONS]
            totals[name] = totals.get(name, 0) + 1
        if not session.non_bounced_counted and (session.page_views >= 2 or session.interacted):
            session.non_bounced_counted = True
            name = one[NON_BOUNCED]
            totals[name] = totals.get(name, 0) + 1
        if not session.engaged_counted and SK.is_engaged(session):
            session.engaged_counted = True
            name = one[ENGAGED]
            totals[name] = totals.get(name, 0) + 1
        checkout_was, cart_done_was, checkout_done_was = (
            (None, None, None) if was is None else was[1:]
        )
        opened = session.checkout_ms
        if opened is None and session.cart_ms is None:
            return  # neither a cart nor a checkout: nothing below can have moved
        if opened is not None and opened != checkout_was:  # opened now, or earlier than known
            name = one[CHECKOUT_STARTED]
            if checkout_was is None:
                totals[name] += 1
            else:
                buckets[minute_of(checkout_was), name] -= 1
            buckets[minute_of(opened), name] += 1
        purchases = session.purchases_ms
        for code, done_was, done in (
            (CART_COMPLETED, cart_done_was, SK.completed_at(session.cart_ms, purchases)),
            (CHECKOUT_COMPLETED, checkout_done_was, SK.completed_at(opened, purchases)),
        ):
            if done != done_was and done is not None:  # completed now, or by an earlier purchase
                name = one[code]
                if done_was is None:
                    totals[name] += 1
                else:
                    buckets[minute_of(done_was), name] -= 1
                buckets[minute_of(done), name] += 1

    def _event_counters(
        self, delta: BatchDelta, names: SiteFields, event: ClickstreamEvent, cls: type, minute: int
    ) -> None:
        """Counters of a purchase or a survey answer at the event's own time (page views and
        items are counted inline)."""
        counts: list[tuple[str, int]]
        if cls is Purchase:
            purchase = cast(Purchase, event)
            currency = self.dims.currency.label(purchase.currency)
            counts = [
                (names.of(REVENUE, currency), round(purchase.value * MICROS)),
                (names.of(ORDERS, currency), 1),
            ]
        elif cls is SurveyResponse:
            counts = survey_fields(names, cast(SurveyResponse, event))
        else:
            return
        buckets, totals = delta.buckets, delta.totals
        for name, n in counts:
            key = (minute, name)
            buckets[key] = buckets.get(key, 0) + n
            totals[name] = totals.get(name, 0) + n

    def _item_field(self, names: SiteFields, item: ItemEvent, cls: type) -> str:
        """The field an impression or a click counts in."""
        kind = IMPRESSIONS if cls is Impression else CLICKS
        return names.of(kind, item.item_kind, self.dims.campaign.label(item.campaign))

    def _lead(
        self, delta: BatchDelta, names: SiteFields, visitor: Visitor, cls: type, ts: int
    ) -> None:
        """A lead or a purchase: the visitor's first lead, and lead -> customer."""
        if cls is Lead:
            leads = names.one[LEADS]
            if visitor.lead_ms is None:
                delta.days[day_of(ts), leads] += 1
                delta.totals[leads] += 1
                visitor.lead_ms = ts
            elif ts < visitor.lead_ms:
                delta.days[day_of(visitor.lead_ms), leads] -= 1
                delta.days[day_of(ts), leads] += 1
                visitor.lead_ms = ts
        elif visitor.first_purchase_ms is None or ts < visitor.first_purchase_ms:
            visitor.first_purchase_ms = ts
        # Only a lead or a purchase can make a customer from a lead.
        if not visitor.lead_customer_counted and visitor.is_lead_customer:
            visitor.lead_customer_counted = True
            assert visitor.first_purchase_ms is not None
            customers = names.one[LEAD_CUSTOMERS]
            delta.days[day_of(visitor.first_purchase_ms), customers] += 1
            delta.totals[customers] += 1

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
        site_label = self.dims.site.label
        for key, session in evicted:
            self._end(
                delta, self._names(site_label(key[0])), session, minute_of(session.last_ms + gap)
            )
        delta.watermark_ms = self.watermark_ms

    def _end(self, delta: BatchDelta, names: SiteFields, s: Session, end_minute: int) -> None:
        """Final decisions when a session ends (its inactivity timeout passed in event time)."""
        buckets, totals = delta.buckets, delta.totals
        one = names.one
        ended = [(one[ENDED], 1), (one[DURATION], s.last_ms - s.start_ms)]
        if s.cart_ms is not None and SK.completed_at(s.cart_ms, s.purchases_ms) is None:
            ended.append((one[CART_ABANDONED], 1))
        if s.checkout_ms is not None and SK.completed_at(s.checkout_ms, s.purchases_ms) is None:
            ended.append((one[CHECKOUT_ABANDONED], 1))
        for name, n in ended:
            key = (end_minute, name)
            buckets[key] = buckets.get(key, 0) + n
            totals[name] = totals.get(name, 0) + n
        # Landing page and channel can change until the end: their totals count now, once.
        page = self.dims.landing_page.label(s.landing)
        chan = self.dims.channel.label(s.channel)
        totals[names.of(LANDING_SESSIONS, page)] += 1
        totals[names.of(CHANNEL_SESSIONS, chan)] += 1
        for goal in s.goals:
            totals[names.of(LANDING_CONVERSIONS, page, goal)] += 1
            totals[names.of(CHANNEL_CONVERSIONS, chan, goal)] += 1


def survey_fields(names: SiteFields, event: SurveyResponse) -> list[tuple[str, int]]:
    one = names.one
    if event.kind == "nps":
        out = [(one[K.NPS_ANSWERS.code], 1)]
        if event.score >= 9:
            out.append((one[K.NPS_PROMOTERS.code], 1))
        elif event.score <= 6:
            out.append((one[K.NPS_DETRACTORS.code], 1))
        return out
    if event.kind == "csat":
        out = [(one[K.CSAT_ANSWERS.code], 1)]
        if event.score >= 4:
            out.append((one[K.CSAT_SATISFIED.code], 1))
        return out
    return [(one[K.CES_ANSWERS.code], 1), (one[K.CES_SUM.code], event.score)]
