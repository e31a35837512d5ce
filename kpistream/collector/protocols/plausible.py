"""The Plausible Events API (``POST /api/event``) onto the contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from kpistream.collector.protocols.common import (
    BadNumber,
    Candidate,
    Skip,
    drop,
    host_of,
    integer,
    invalid_number,
    json_decoder,
    money,
    normalise,
    page_view,
    reject,
    undecodable,
)
from kpistream.schemas.decoder import out_of_range
from kpistream.schemas.events import ITEM_KINDS


def _plausible_field(body: dict[str, Any], short: str, long: str) -> Any:
    return body[short] if short in body else body.get(long)


def _object(value: Any, field: str) -> dict[str, Any]:
    """An object Plausible takes inline or as a JSON string; anything else is empty."""
    if isinstance(value, str):
        try:
            value = json_decoder.decode(value)
        except msgspec.DecodeError as exc:
            if out_of_range(exc):
                raise BadNumber(field) from None
            return {}
    return value if isinstance(value, dict) else {}


#: names two or three); each becomes an event of its own.
MAX_DOMAINS = 10


def plausible(body: bytes, max_events: int) -> list[Candidate] | Skip:
    """``POST /api/event``; one candidate per distinct domain of ``d`` (Plausible allows a
    comma-separated list, to count one page view on several sites): a domain named twice
    counts once, at most :data:`MAX_DOMAINS` of them, and each is an event of the request
    (``max_events``)."""
    try:
        raw = json_decoder.decode(body.removeprefix(b"\xef\xbb\xbf"))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return undecodable(exc)
    if not isinstance(raw, dict):
        return reject("not_an_object", "the body is one JSON object")
    name = _plausible_field(raw, "n", "name")
    url = _plausible_field(raw, "u", "url")
    if not isinstance(name, str) or not name:
        return reject("missing_field", "`n` (name) is required", "$.n")
    if not isinstance(url, str) or not url:
        return reject("missing_field", "`u` (url) is required", "$.u")
    domains = _plausible_field(raw, "d", "domain") or host_of(url)
    if not isinstance(domains, str) or not domains:
        return reject("missing_field", "`d` (domain) is required", "$.d")
    referrer = _plausible_field(raw, "r", "referrer")
    try:
        props = _object(_plausible_field(raw, "p", "props"), "$.p")
        revenue = _object(_plausible_field(raw, "$", "revenue"), "$.revenue")
        event = plausible_event(
            name, url, referrer if isinstance(referrer, str) else None, props, revenue, raw
        )
    except BadNumber as exc:
        return invalid_number(exc)
    if isinstance(event, Skip):
        return [event]
    sites = list(dict.fromkeys(d.strip() for d in domains.split(",") if d.strip()))
    limit = min(MAX_DOMAINS, max_events)
    if len(sites) > limit:
        return reject(
            "too_many_domains", f"{len(sites)} distinct domains in `d`; at most {limit}", "$.d"
        )
    if not sites:
        return reject("missing_field", "`d` (domain) is required", "$.d")
    return [{**event, "site": site} for site in sites]


class Named(NamedTuple):
    """One Plausible event, as the mapping of its name needs it."""

    name: str
    kind: str  # the name, normalised
    url: str
    referrer: str | None
    props: dict[str, Any]
    raw: dict[str, Any]
    amount: float | None  # revenue.amount, else props.value
    currency: str | None


def plausible_event(
    name: str,
    url: str,
    referrer: str | None,
    props: dict[str, Any],
    revenue: dict[str, Any],
    raw: dict[str, Any],
) -> Candidate:
    """The mapping table of docs/collector.md, for one Plausible event name."""
    kind = normalise(name)
    amount = money(revenue.get("amount"), "$.revenue.amount")
    if amount is None:
        amount = money(props.get("value"), "$.p.value")
    currency = revenue.get("currency") or props.get("currency")
    mapping = MAPPINGS.get(kind)
    if mapping is None:
        return drop("unmapped_event", f"no mapping for the Plausible event {name!r}")
    return mapping(Named(name, kind, url, referrer, props, raw, amount, currency))


def _page_view(e: Named) -> Candidate:
    return page_view(e.url, e.referrer)


def _engagement(e: Named) -> Candidate:
    event: dict[str, Any] = {"type": "engagement"}
    if isinstance(e.raw.get("e"), int) and e.raw["e"] >= 0:
        event["engaged_ms"] = min(e.raw["e"], 86_400_000)
    if isinstance(e.raw.get("sd"), int):
        event["scroll_depth"] = max(0, min(100, e.raw["sd"]))
    return event


def _valued(event: dict[str, Any], e: Named) -> dict[str, Any]:
    """The event with its value, when both amount and currency came."""
    if e.amount is not None and e.currency:
        event.update(value=e.amount, currency=e.currency)
    return event


def _add_to_cart(e: Named) -> Candidate:
    props = e.props
    item = props.get("item_id") or props.get("item") or props.get("product") or "unknown"
    event = _valued({"type": "add_to_cart", "item_id": str(item)}, e)
    if "quantity" in props:
        quantity = integer(props["quantity"], "$.p.quantity")
        if quantity is None:
            return reject("wrong_type", "props.quantity must be a number", "$.p.quantity")
        event["quantity"] = quantity
    return event


def _checkout(e: Named) -> Candidate:
    return _valued({"type": "checkout_start"}, e)


def _purchase(e: Named) -> Candidate:
    if e.amount is None or not e.currency:
        return reject(
            "missing_field", f"{e.name!r} needs revenue {{amount, currency}}", "$.revenue"
        )
    event = {"type": "purchase", "value": e.amount, "currency": e.currency}
    if e.props.get("order_id"):
        event["order_id"] = str(e.props["order_id"])
    return event


def _lead(e: Named) -> Candidate:
    event = {"type": "lead"}
    if e.props.get("form_id"):
        event["form_id"] = str(e.props["form_id"])
    return event


def _outbound(e: Named) -> Candidate:
    target = host_of(str(e.props.get("url", ""))) or "link"
    return {"type": "click", "item_kind": "cta", "item_id": f"outbound:{target}"[:128]}


def _item(e: Named) -> Candidate:
    item_kind = e.props.get("kind", "cta")
    if item_kind not in ITEM_KINDS:
        return reject("invalid_value", f"props.kind must be one of {ITEM_KINDS}", "$.p.kind")
    event = {"type": e.kind, "item_kind": item_kind, "item_id": str(e.props.get("id", "unknown"))}
    if e.props.get("campaign"):
        event["campaign"] = str(e.props["campaign"])
    return event


def _survey(e: Named) -> Candidate:
    score = integer(e.props.get("score"), "$.p.score")
    if score is None:
        return reject("missing_field", f"{e.name!r} needs props.score", "$.p.score")
    return {"type": "survey_response", "kind": e.kind, "score": score}


#: Plausible event names (normalised: lower case, no spaces, dashes or underscores) and the
#: event each becomes; any other name is dropped as ``unmapped_event``.
MAPPINGS: dict[str, Callable[[Named], Candidate]] = {
    "pageview": _page_view,
    "engagement": _engagement,
    **dict.fromkeys(("addtocart", "addtobasket"), _add_to_cart),
    **dict.fromkeys(("checkout", "begincheckout", "checkoutstart", "initiatecheckout"), _checkout),
    **dict.fromkeys(("purchase", "order", "ordercompleted"), _purchase),
    **dict.fromkeys(("lead", "signup", "generatelead", "formsubmission"), _lead),
    "outboundlinkclick": _outbound,
    **dict.fromkeys(("impression", "click"), _item),
    **dict.fromkeys(("nps", "csat", "ces"), _survey),
}
