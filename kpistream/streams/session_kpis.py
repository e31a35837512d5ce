"""What a session counts for (docs/kpis.md), as pure functions of its state.

- bounce: at most one page view and no interaction (a session of engagement pings or
  impressions alone is a bounce, as GA4 and Plausible count it)
- engaged (GA4): lasted more than 10 s, or two or more page views, or a conversion
- conversion: at least one event of a goal type (settings; default lead, purchase)
- landing page / channel: path and utm source/medium of the session's earliest page view
- cart: opens with the session's first ``add_to_cart``; completed by the first purchase at or
  after it (attributed to that purchase's time), abandoned when the session ends without one.
  The same rules hold for checkouts, from ``checkout_start``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import msgspec

from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.kpis.windows import MINUTE_MS, minute_of
from kpistream.schemas.events import (
    CLICKSTREAM_TYPES,
    INTERACTION_TYPES,
    AddToCart,
    CheckoutStart,
    ClickstreamEvent,
    PageView,
    Purchase,
    type_name,
)
from kpistream.streams.labels import Dimensions
from kpistream.streams.sessionizer import Session
from kpistream.streams.tally import Tally

#: GA4's engaged-session duration threshold: a session longer than this is engaged.
ENGAGED_AFTER_MS = 10_000
#: Purchases remembered per session for cart attribution; more is a bot or a test.
MAX_PURCHASES_PER_SESSION = 32
NO_LANDING = "none"
DIRECT = "direct"

_TYPE_NAMES: dict[type, str] = {cls: type_name(cls) for cls in CLICKSTREAM_TYPES}
INTERACTIONS = frozenset(INTERACTION_TYPES)


class Signature(msgspec.Struct, frozen=True, gc=False):
    """What decides a session's start-bucket counters, but for its start minute: sessions of
    equal signatures add to the same counters (a batch builds their names once)."""

    bounce: bool
    engaged: bool
    goals: tuple[str, ...]  # sorted
    landing: str | None  # raw path; labelled on use
    channel: str | None


class Marks(msgspec.Struct, frozen=True, gc=False):
    """What a session counts for: the minute it started and its signature, when its
    checkout opened and when its cart and checkout were completed (by a purchase)."""

    start_minute: int
    signature: Signature
    checkout_ms: int | None = None
    cart_done_ms: int | None = None
    checkout_done_ms: int | None = None


#: What a session opened by the batch counted before it: nothing.
NOTHING = Marks(0, Signature(False, False, (), None, None))


def landing_path(event: PageView) -> str:
    if event.path is not None:
        return event.path
    return urlsplit(event.url or "").path or "/"


def channel_of(event: PageView) -> str:
    if event.utm_source is None and event.utm_medium is None:
        return DIRECT
    return f"{event.utm_source or '(none)'}/{event.utm_medium or '(none)'}"


def signature(s: Session) -> Signature:
    """The rules of bounce and engagement are here, once:

    - bounce: at most one page view and no interaction;
    - engaged (GA4): longer than 10 s, two or more page views, or a conversion.
    """
    goals, pages = s.goals, s.page_views
    return Signature(
        pages <= 1 and not s.interacted,
        s.last_ms - s.start_ms > ENGAGED_AFTER_MS or pages >= 2 or bool(goals),
        tuple(sorted(goals)) if goals else (),
        s.landing,
        s.channel,
    )


def marks(s: Session) -> Marks:
    """What an open session counts for now."""
    cart, checkout, minute = s.cart_ms, s.checkout_ms, s.start_ms // MINUTE_MS
    if cart is None and checkout is None:
        return Marks(minute, signature(s))
    purchases = s.purchases_ms
    return Marks(
        minute,
        signature(s),
        checkout,
        completed_at(cart, purchases),
        completed_at(checkout, purchases),
    )


def start_fields(
    sig: Signature,
    names: fields.SiteFields,
    landing: Callable[[str | None], str],
    channel: Callable[[str | None], str],
) -> list[str]:
    """The start-bucket counters a session with this signature contributes 1 to."""
    page = landing(sig.landing)
    chan = channel(sig.channel)
    one = names.one
    out = [
        one[K.SESSIONS.code],
        names.of(K.LANDING_SESSIONS.code, page),
        names.of(K.CHANNEL_SESSIONS.code, chan),
    ]
    if sig.bounce:
        out.append(one[K.BOUNCES.code])
    if sig.engaged:
        out.append(one[K.ENGAGED.code])
    for goal in sig.goals:
        out += goal_fields(names, page, chan, goal)
    return out


def goal_fields(names: fields.SiteFields, page: str, chan: str, goal: str) -> tuple[str, ...]:
    """The start-bucket counters a goal reached by a session adds to."""
    return (
        names.of(K.CONVERSIONS.code, goal),
        names.of(K.LANDING_CONVERSIONS.code, page, goal),
        names.of(K.CHANNEL_CONVERSIONS.code, chan, goal),
    )


def apply(s: Session, event: ClickstreamEvent, cls: type, goals: frozenset[str]) -> str | None:
    """Update the session's flags with one event (of exact class ``cls``); returns the goal
    it newly reached, if any."""
    if cls is PageView:
        view = cast(PageView, event)
        if s.page_views < 2:
            s.page_views += 1
        if s.landing is None or view.ts < s.landing_ms:
            s.landing = landing_path(view)
            s.landing_ms = view.ts
            s.channel = channel_of(view)
    elif cls in INTERACTIONS:
        s.interacted = True
        if cls is AddToCart:
            if s.cart_ms is None or event.ts < s.cart_ms:
                s.cart_ms = event.ts
        elif cls is CheckoutStart:
            if s.checkout_ms is None or event.ts < s.checkout_ms:
                s.checkout_ms = event.ts
        elif cls is Purchase and len(s.purchases_ms) < MAX_PURCHASES_PER_SESSION:
            bisect.insort(s.purchases_ms, event.ts)
    goal = _TYPE_NAMES[cls]
    if goal in goals and goal not in s.goals:
        s.goals.add(goal)
        return goal
    return None


def completed_at(opened_ms: int | None, purchases_ms: list[int]) -> int | None:
    """Time of the first purchase at or after the cart/checkout opened, if any."""
    if opened_ms is None:
        return None
    i = bisect.bisect_left(purchases_ms, opened_ms)
    return purchases_ms[i] if i < len(purchases_ms) else None


#: A batch's start fields by site fields and signature.
StartCache = dict[tuple[fields.SiteFields, Signature], list[str]]


def account(
    tally: Tally,
    names: fields.SiteFields,
    dims: Dimensions,
    session: Session,
    was: Marks,
    starts: StartCache,
) -> None:
    """Move a session's start-bucket contributions from what it counted before the batch
    (``was``; :data:`NOTHING` for a session the batch opened) to what it counts now, and
    count what it reached for the first time: opened, not a bounce, engaged, a goal, a cart
    or checkout opened or completed."""
    now = marks(session)
    sig, counted = now.signature, was.signature
    one = names.one
    fresh = was is NOTHING
    if fresh:
        tally.count(one[K.SESSIONS.code])
    if fresh or sig != counted or now.start_minute != was.start_minute:
        tally.move_all(
            None if fresh else (was.start_minute, _start_fields(counted, names, dims, starts)),
            (now.start_minute, _start_fields(sig, names, dims, starts)),
        )
        for goal in sig.goals:  # reached in this batch: the conversion counts now, once
            if fresh or goal not in counted.goals:
                tally.count(names.of(K.CONVERSIONS.code, goal))
    # Not a bounce and engaged only ever become true.
    if not sig.bounce and not session.non_bounced_counted:
        session.non_bounced_counted = True
        tally.count(one[K.NON_BOUNCED.code])
    if sig.engaged and not session.engaged_counted:
        session.engaged_counted = True
        tally.count(one[K.ENGAGED.code])
    if now.checkout_ms is None and session.cart_ms is None:
        return  # neither a cart nor a checkout: nothing below can have moved
    for code, before, after in (
        (K.CHECKOUT_STARTED.code, was.checkout_ms, now.checkout_ms),
        (K.CART_COMPLETED.code, was.cart_done_ms, now.cart_done_ms),
        (K.CHECKOUT_COMPLETED.code, was.checkout_done_ms, now.checkout_done_ms),
    ):
        # reached now, or earlier than known (an out-of-order event)
        if after is not None and after != before:
            tally.move(one[code], None if before is None else minute_of(before), minute_of(after))


def _start_fields(
    sig: Signature, names: fields.SiteFields, dims: Dimensions, starts: StartCache
) -> list[str]:
    key = (names, sig)
    found = starts.get(key)
    if found is None:
        found = starts[key] = start_fields(sig, names, dims.landing_page.label, dims.channel.label)
    return found


def ended(s: Session, names: fields.SiteFields) -> list[tuple[str, int]]:
    """What a session counts at its end: ended, its time on site, an abandoned cart or
    checkout (opened, and no purchase at or after)."""
    one = names.one
    out = [(one[K.ENDED.code], 1), (one[K.DURATION.code], s.last_ms - s.start_ms)]
    if s.cart_ms is not None and completed_at(s.cart_ms, s.purchases_ms) is None:
        out.append((one[K.CART_ABANDONED.code], 1))
    if s.checkout_ms is not None and completed_at(s.checkout_ms, s.purchases_ms) is None:
        out.append((one[K.CHECKOUT_ABANDONED.code], 1))
    return out


def end(
    tally: Tally, names: fields.SiteFields, dims: Dimensions, s: Session, end_minute: int
) -> None:
    """Final decisions when a session ends (its inactivity timeout passed in event time)."""
    tally.add_all(end_minute, ended(s, names))
    # Landing page and channel can change until the end: their totals count now, once.
    page = dims.landing_page.label(s.landing)
    chan = dims.channel.label(s.channel)
    tally.count(names.of(K.LANDING_SESSIONS.code, page))
    tally.count(names.of(K.CHANNEL_SESSIONS.code, chan))
    for goal in s.goals:
        tally.count(names.of(K.LANDING_CONVERSIONS.code, page, goal))
        tally.count(names.of(K.CHANNEL_CONVERSIONS.code, chan, goal))
