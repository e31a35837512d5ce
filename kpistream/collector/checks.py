"""The checks an event passes at the collector's door, in order, each a small pure function:
its site, who may send for that site, no erasure from a tracker, the visitor's identity
(consent and the customer zone), and the id and time it is given. Each answers a
:class:`~kpistream.collector.protocols.Skip` when the event stops there, else None.

What is decided per request (GPC/DNT, the rate limit, the body's size, bots) stays with the
request in :mod:`kpistream.collector.app`; what needs Redis (today's salt for the audience
zone) or memory across requests (the visitor's pace) too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from kpistream.collector.guard import Sites
from kpistream.collector.privacy import consent_given, customer_id, customer_session_id
from kpistream.collector.protocols import Skip, reject

#: Event types a tracker may not send: erasure goes through `kpistream forget`.
NOT_FROM_TRACKERS = frozenset({"forget"})


class Sender(Protocol):
    """What the checks know of who sent a request."""

    @property
    def origin(self) -> str | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def consent(self) -> bool: ...
    @property
    def anonymous(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class SiteVerdict:
    refusal: Skip | None
    trusted: bool  # a write key matched: the sender's clock is believed


def site_of(item: dict[str, Any]) -> str | Skip:
    site = item.get("site")
    if not isinstance(site, str) or not site:
        return reject("missing_field", "`site` is required", "$.site")
    return site


def site_verdict(sites: Sites, site: str, who: Sender) -> SiteVerdict:
    """May this sender send the site's events: its write key, or a browser of its origins."""
    trusted = sites.key_matches(site, who.key)
    if who.key is not None and not trusted:
        return SiteVerdict(reject("write_key_invalid", f"the write key is not {site!r}'s"), False)
    if not trusted:
        if who.origin is not None and not sites.origin_allowed(site, who.origin):
            detail = f"origin {who.origin!r} may not send events of {site!r}"
            return SiteVerdict(reject("origin_not_allowed", detail), False)
        if who.origin is None and site in sites.write_keys:
            detail = f"{site!r} takes server-side events with its write key only"
            return SiteVerdict(reject("write_key_required", detail), False)
    return SiteVerdict(None, trusted)


def not_erasure(item: dict[str, Any]) -> Skip | None:
    if item.get("type") in NOT_FROM_TRACKERS:
        return reject("unknown_type", "erasure is `kpistream forget`, not an event", "$.type")
    return None


def customer_identity(item: dict[str, Any], who: Sender, site: str, secret: str) -> Skip | bool:
    """The customer zone: a tracker's own visitor id, taken only with consent and stored
    as a keyed hash (its session id too). True when the item now carries it; False when the
    visitor is to be counted in the audience zone (no id, or an anonymous tracker)."""
    given = item.pop("visitor_id", None)
    consent = consent_given(item.pop("consent", None)) or who.consent
    session = item.pop("session_id", None)
    if given is None or who.anonymous:
        return False
    if not consent:
        return reject(
            "consent_required",
            "a visitor_id is accepted only with consent (`consent: true` or the "
            "X-Kpistream-Consent header); leave it out to be counted cookieless",
            "$.visitor_id",
        )
    if not secret:
        return reject(
            "customer_zone_off",
            "this deployment has no KPISTREAM_ID_SECRET: send no visitor_id",
            "$.visitor_id",
        )
    if not isinstance(given, str | int) or isinstance(given, bool) or not str(given):
        return reject("wrong_type", "visitor_id must be a string", "$.visitor_id")
    item["visitor_id"] = customer_id(secret, site, str(given))
    if isinstance(session, str) and session:
        item["session_id"] = customer_session_id(secret, site, session)
    return True


def stamp(
    item: dict[str, Any], *, now_ms: int, earliest_ms: int, latest_ms: int, trusted: bool
) -> None:
    """An event id when the tracker sent none; the collector's clock when the event has no
    time, or a browser's time outside [earliest, latest] (a keyed sender's is believed)."""
    event_id = item.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        item["event_id"] = os.urandom(16).hex()
    ts = item.get("ts")
    if ts is None:
        item["ts"] = now_ms
    elif not trusted and isinstance(ts, int) and not earliest_ms <= ts <= latest_ms:
        item["ts"] = now_ms
