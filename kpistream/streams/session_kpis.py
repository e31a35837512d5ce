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

from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.kpis.windows import MINUTE_MS
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
from kpistream.streams.sessionizer import Session

#: GA4's engaged-session duration threshold: a session longer than this is engaged.
ENGAGED_AFTER_MS = 10_000
#: Purchases remembered per session for cart attribution; more is a bot or a test.
MAX_PURCHASES_PER_SESSION = 32
NO_LANDING = "none"
DIRECT = "direct"

_TYPE_NAMES: dict[type, str] = {cls: type_name(cls) for cls in CLICKSTREAM_TYPES}
INTERACTIONS = frozenset(INTERACTION_TYPES)

#: (start minute, bounce, engaged, goals reached, landing path, channel): all the start-bucket
#: counters of a session derive from it, so equal signatures mean nothing to move.
Signature = tuple[int, bool, bool, tuple[str, ...], str | None, str | None]


def landing_path(event: PageView) -> str:
    if event.path is not None:
        return event.path
    return urlsplit(event.url or "").path or "/"


def channel_of(event: PageView) -> str:
    if event.utm_source is None and event.utm_medium is None:
        return DIRECT
    return f"{event.utm_source or '(none)'}/{event.utm_medium or '(none)'}"


def is_engaged(s: Session) -> bool:
    return s.last_ms - s.start_ms > ENGAGED_AFTER_MS or s.page_views >= 2 or bool(s.goals)


def signature(s: Session) -> Signature:
    # Inline on purpose (is_bounce, is_engaged, minute_of): it runs twice per event.
    goals, start, pages = s.goals, s.start_ms, s.page_views
    return (
        start // MINUTE_MS,
        pages <= 1 and not s.interacted,
        s.last_ms - start > ENGAGED_AFTER_MS or pages >= 2 or bool(goals),
        tuple(sorted(goals)) if goals else (),
        s.landing,
        s.channel,
    )


def start_fields(
    sig: Signature,
    names: fields.SiteFields,
    landing: Callable[[str | None], str],
    channel: Callable[[str | None], str],
) -> list[str]:
    """The start-bucket counters a session with this signature contributes 1 to."""
    _, bounce, engaged, goals, landing_path_, channel_ = sig
    page = landing(landing_path_)
    chan = channel(channel_)
    one = names.one
    out = [
        one[K.SESSIONS.code],
        names.of(K.LANDING_SESSIONS.code, page),
        names.of(K.CHANNEL_SESSIONS.code, chan),
    ]
    if bounce:
        out.append(one[K.BOUNCES.code])
    if engaged:
        out.append(one[K.ENGAGED.code])
    for goal in goals:
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
