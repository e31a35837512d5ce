"""The Plausible Events API (``POST /api/event``) onto the contract."""

from __future__ import annotations

from typing import Any

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
    if kind == "pageview":
        return page_view(url, referrer)
    if kind == "engagement":
        event: dict[str, Any] = {"type": "engagement"}
        if isinstance(raw.get("e"), int) and raw["e"] >= 0:
            event["engaged_ms"] = min(raw["e"], 86_400_000)
        if isinstance(raw.get("sd"), int):
            event["scroll_depth"] = max(0, min(100, raw["sd"]))
        return event
    if kind in ("addtocart", "addtobasket"):
        item = props.get("item_id") or props.get("item") or props.get("product") or "unknown"
        event = {"type": "add_to_cart", "item_id": str(item)}
        if amount is not None and currency:
            event.update(value=amount, currency=currency)
        if "quantity" in props:
            quantity = integer(props["quantity"], "$.p.quantity")
            if quantity is None:
                return reject("wrong_type", "props.quantity must be a number", "$.p.quantity")
            event["quantity"] = quantity
        return event
    if kind in ("checkout", "begincheckout", "checkoutstart", "initiatecheckout"):
        event = {"type": "checkout_start"}
        if amount is not None and currency:
            event.update(value=amount, currency=currency)
        return event
    if kind in ("purchase", "order", "ordercompleted"):
        if amount is None or not currency:
            return reject(
                "missing_field", f"{name!r} needs revenue {{amount, currency}}", "$.revenue"
            )
        event = {"type": "purchase", "value": amount, "currency": currency}
        if props.get("order_id"):
            event["order_id"] = str(props["order_id"])
        return event
    if kind in ("lead", "signup", "generatelead", "formsubmission"):
        event = {"type": "lead"}
        if props.get("form_id"):
            event["form_id"] = str(props["form_id"])
        return event
    if kind == "outboundlinkclick":
        target = host_of(str(props.get("url", ""))) or "link"
        return {"type": "click", "item_kind": "cta", "item_id": f"outbound:{target}"[:128]}
    if kind in ("impression", "click"):
        item_kind = props.get("kind", "cta")
        if item_kind not in ITEM_KINDS:
            return reject("invalid_value", f"props.kind must be one of {ITEM_KINDS}", "$.p.kind")
        event = {"type": kind, "item_kind": item_kind, "item_id": str(props.get("id", "unknown"))}
        if props.get("campaign"):
            event["campaign"] = str(props["campaign"])
        return event
    if kind in ("nps", "csat", "ces"):
        score = integer(props.get("score"), "$.p.score")
        if score is None:
            return reject("missing_field", f"{name!r} needs props.score", "$.p.score")
        return {"type": "survey_response", "kind": kind, "score": score}
    return drop("unmapped_event", f"no mapping for the Plausible event {name!r}")
