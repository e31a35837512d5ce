"""The collector's three ways in, mapped onto the event contract (docs/collector.md).

Pure functions: a request body (or query) in, a list of *candidates* out. A candidate is a
dict in the shape of the event contract, still without the pseudonymous ``visitor_id`` the
collector adds (a consented id rides as ``visitor_id`` with ``consent``), or a :class:`Skip`:
rejected (the sender made a mistake: HTTP 400 with the reason) or dropped (a valid event we do
not count, such as a Plausible goal with no mapping: counted by reason).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec

from kpistream.schemas.events import ITEM_KINDS

_json = msgspec.json.Decoder()


class Skip(msgspec.Struct, frozen=True):
    kind: Literal["rejected", "dropped"]
    reason: str
    detail: str = ""
    field: str | None = None


Candidate = dict[str, Any] | Skip


def reject(reason: str, detail: str, field: str | None = None) -> Skip:
    return Skip("rejected", reason, detail, field)


def drop(reason: str, detail: str = "") -> Skip:
    return Skip("dropped", reason, detail)


def normalise(name: str) -> str:
    """``Add to Cart``, ``add-to-cart``, ``AddToCart`` -> ``addtocart``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def utm(url: str | None) -> dict[str, str]:
    """The utm_source/medium/campaign of a page URL's query."""
    if not url or "utm_" not in url:
        return {}
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    wanted = ("utm_source", "utm_medium", "utm_campaign")
    return {k: v for k, v in parse_qsl(query) if k in wanted and v}


def host_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def page_view(url: str | None, referrer: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "page_view", "url": url}
    if referrer:
        event["referrer"] = referrer
    event.update(utm(url))
    return event


# -- our contract ----------------------------------------------------------------------------


def ours(body: bytes, max_events: int) -> list[Candidate] | Skip:
    """``POST /v1/events``: one event, a JSON array, or NDJSON (one event per line)."""
    text = body.removeprefix(b"\xef\xbb\xbf").strip()
    if not text:
        return reject("malformed_json", "empty body")
    items: list[Any]
    try:
        parsed = _json.decode(text)
        items = parsed if isinstance(parsed, list) else [parsed]
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        lines = [line for line in text.split(b"\n") if line.strip()]
        if len(lines) < 2:
            return _undecodable(exc)
        items = []
        for line in lines:
            try:
                items.append(_json.decode(line))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as line_exc:
                items.append(_undecodable(line_exc))
    if len(items) > max_events:
        return reject("too_many_events", f"{len(items)} events; at most {max_events} per request")
    return [
        item if isinstance(item, dict | Skip) else reject("not_an_object", "an event is an object")
        for item in items
    ]


#: Query parameters of ``GET /v1/p.gif`` that are numbers in the contract.
_INTS = ("ts", "quantity", "score", "engaged_ms", "scroll_depth")
_FLOATS = ("value",)


def ours_query(query: list[tuple[str, str]], referer: str | None) -> Candidate:
    """``GET /v1/p.gif?site=...&path=...``: one event (default ``page_view``) from the query;
    the page is the ``Referer`` when neither ``url`` nor ``path`` is given."""
    event: dict[str, Any] = {"type": "page_view"}
    for name, value in query:
        if name in _INTS or name in _FLOATS:
            try:
                number = _integer(value, f"$.{name}") if name in _INTS else _money(value, "")
            except BadNumber:
                return reject("invalid_number", f"{name} must be a finite number", f"$.{name}")
            if number is None:
                return reject("wrong_type", f"{name} must be a number", f"$.{name}")
            event[name] = number
        else:
            event[name] = value
    if event["type"] == "page_view" and "url" not in event and "path" not in event and referer:
        event["url"] = referer
        event.update({k: v for k, v in utm(referer).items() if k not in event})
    return event


# -- Plausible Events API ----------------------------------------------------------------------


def _plausible_field(body: dict[str, Any], short: str, long: str) -> Any:
    return body[short] if short in body else body.get(long)


def _object(value: Any, field: str) -> dict[str, Any]:
    """An object Plausible takes inline or as a JSON string; anything else is empty."""
    if isinstance(value, str):
        try:
            value = _json.decode(value)
        except msgspec.DecodeError as exc:
            if str(exc).startswith("Number out of range"):
                raise BadNumber(field) from None
            return {}
    return value if isinstance(value, dict) else {}


class BadNumber(ValueError):
    """A number that is not finite (``Infinity``, ``NaN``, ``1e400``): rejected as
    ``invalid_number`` with the field it came in."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _money(value: Any, field: str) -> float | None:
    """A number given as a number or as text; None when it is neither."""
    if isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            raise BadNumber(field) from None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        raise BadNumber(field)
    return number


def _integer(value: Any, field: str) -> int | None:
    """A whole number given as a number or as text (``3``, ``"3"``, ``3.0``); None when it
    is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _money(value, field)
    return int(number) if number is not None and number.is_integer() else None


def invalid_number(exc: BadNumber) -> Skip:
    return reject("invalid_number", f"{exc.field} must be a finite number", exc.field)


def _undecodable(exc: Exception) -> Skip:
    """A body that JSON cannot take: a number beyond any float (``1e400``) is its own
    reason; anything else is malformed."""
    message = str(exc)
    if message.startswith("Number out of range"):
        return reject("invalid_number", message[:200])
    return reject("malformed_json", message[:200])


#: Most distinct domains in one Plausible ``d`` (a site rolled up into a few dashboards
#: names two or three); each becomes an event of its own.
MAX_DOMAINS = 10


def plausible(body: bytes, max_events: int) -> list[Candidate] | Skip:
    """``POST /api/event``; one candidate per distinct domain of ``d`` (Plausible allows a
    comma-separated list, to count one page view on several sites): a domain named twice
    counts once, at most :data:`MAX_DOMAINS` of them, and each is an event of the request
    (``max_events``)."""
    try:
        raw = _json.decode(body.removeprefix(b"\xef\xbb\xbf"))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return _undecodable(exc)
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
    amount = _money(revenue.get("amount"), "$.revenue.amount")
    if amount is None:
        amount = _money(props.get("value"), "$.p.value")
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
            quantity = _integer(props["quantity"], "$.p.quantity")
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
        score = _integer(props.get("score"), "$.p.score")
        if score is None:
            return reject("missing_field", f"{name!r} needs props.score", "$.p.score")
        return {"type": "survey_response", "kind": kind, "score": score}
    return drop("unmapped_event", f"no mapping for the Plausible event {name!r}")


# -- Snowplow tracker protocol -------------------------------------------------------------------

PAYLOAD_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-"


def snowplow_post(body: bytes, max_events: int) -> list[dict[str, Any] | Skip] | Skip:
    """``POST /com.snowplowanalytics.snowplow/tp2``: a payload_data envelope."""
    try:
        raw = _json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return _undecodable(exc)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        return reject("not_an_object", "expected {schema: payload_data, data: [...]}")
    schema = raw.get("schema")
    if not isinstance(schema, str) or not schema.startswith(PAYLOAD_SCHEMA):
        return reject("invalid_value", f"schema must be {PAYLOAD_SCHEMA}*", "$.schema")
    items = raw["data"]
    if len(items) > max_events:
        return reject("too_many_events", f"{len(items)} events; at most {max_events} per request")
    return [
        item if isinstance(item, dict) else reject("not_an_object", "an event is an object")
        for item in items
    ]


def _b64(value: str) -> Any:
    padded = value + "=" * (-len(value) % 4)
    return _json.decode(base64.urlsafe_b64decode(padded))


def _json_field(item: dict[str, Any], plain: str, encoded: str) -> Any:
    try:
        if isinstance(item.get(plain), str):
            return _json.decode(item[plain])
        if isinstance(item.get(encoded), str):
            return _b64(item[encoded])
    except (msgspec.DecodeError, binascii.Error, ValueError, UnicodeDecodeError) as exc:
        if str(exc).startswith("Number out of range"):
            raise BadNumber(f"$.{plain}") from None
        raise ValueError(f"`{plain}`/`{encoded}` is not JSON (or base64url JSON)") from None
    return None


def _entities(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Context entities by schema name (``product``, ``transaction`` ...), first of each."""
    contexts = _json_field(item, "co", "cx")
    out: dict[str, dict[str, Any]] = {}
    if isinstance(contexts, dict) and isinstance(contexts.get("data"), list):
        for entity in contexts["data"]:
            if isinstance(entity, dict) and isinstance(entity.get("schema"), str):
                name = entity["schema"].split("/")[1] if "/" in entity["schema"] else ""
                if isinstance(entity.get("data"), dict):
                    out.setdefault(name, entity["data"])
    return out


def _number(item: dict[str, Any], name: str) -> float | None:
    return _money(item.get(name), f"$.{name}")


def snowplow(item: dict[str, Any], consent: bool) -> Candidate:
    """One Snowplow event (a dict of strings) onto the contract (docs/collector.md table)."""
    e = item.get("e")
    if not isinstance(e, str):
        return reject("missing_field", "`e` (event type) is required", "$.e")
    url = item.get("url") if isinstance(item.get("url"), str) else None
    try:
        event = _snowplow_event(e, item, url)
    except BadNumber as exc:
        return invalid_number(exc)
    except ValueError as exc:
        return reject("malformed_json", str(exc))
    if isinstance(event, Skip):
        return event
    site = item.get("aid") or host_of(url)
    if isinstance(site, str) and site:
        event["site"] = site
    if isinstance(item.get("eid"), str):
        event["event_id"] = item["eid"]
    dtm = item.get("dtm")
    if isinstance(dtm, str) and dtm.isdigit():
        event["ts"] = int(dtm)
    if consent:
        given = item.get("uid") or item.get("duid")
        if isinstance(given, str) and given:
            event["visitor_id"] = given
            event["consent"] = True
            if isinstance(item.get("sid"), str) and item["sid"]:
                event["session_id"] = item["sid"]
    return event


def _snowplow_event(e: str, item: dict[str, Any], url: str | None) -> dict[str, Any] | Skip:
    if e == "pv":
        refr = item.get("refr")
        return page_view(url, refr if isinstance(refr, str) else None)
    if e == "pp":
        return {"type": "engagement"}
    if e == "se":
        return _structured(item)
    if e == "ue":
        return _self_describing(item)
    if e == "tr":
        value, currency = _number(item, "tr_tt"), item.get("tr_cu")
        if value is None or not currency:
            return reject("missing_field", "a transaction needs tr_tt and tr_cu", "$.tr_tt")
        event = {"type": "purchase", "value": value, "currency": currency}
        if item.get("tr_id"):
            event["order_id"] = item["tr_id"]
        return event
    return drop("unmapped_event", f"no mapping for the Snowplow event type {e!r}")


def _structured(item: dict[str, Any]) -> dict[str, Any] | Skip:
    action = normalise(str(item.get("se_ac", "")))
    category = str(item.get("se_ca", ""))
    label = item.get("se_la") or None
    value = _number(item, "se_va")
    prop = item.get("se_pr") or None
    currency = prop if isinstance(prop, str) and re.fullmatch("[A-Z]{3}", prop) else None
    if action in ("addtocart", "addtobasket"):
        event: dict[str, Any] = {"type": "add_to_cart", "item_id": label or "unknown"}
        if value is not None and currency:
            event.update(value=value, currency=currency)
        return event
    if action in ("checkout", "begincheckout", "checkoutstart"):
        event = {"type": "checkout_start"}
        if value is not None and currency:
            event.update(value=value, currency=currency)
        return event
    if action in ("purchase", "order"):
        if value is None or currency is None:
            return reject(
                "missing_field", "a purchase needs se_va (value) and se_pr (currency)", "$.se_va"
            )
        event = {"type": "purchase", "value": value, "currency": currency}
        if label:
            event["order_id"] = label
        return event
    if action in ("impression", "view", "click"):
        kind = category if category in ITEM_KINDS else "cta"
        event = {
            "type": "click" if action == "click" else "impression",
            "item_kind": kind,
            "item_id": label or "unknown",
        }
        if prop:
            event["campaign"] = prop
        return event
    if action in ("lead", "signup", "submit"):
        return {"type": "lead", **({"form_id": label} if label else {})}
    if action in ("nps", "csat", "ces"):
        if value is None:
            return reject("missing_field", f"{action} needs se_va (the score)", "$.se_va")
        if not value.is_integer():
            return reject("invalid_value", f"{action} scores are whole numbers", "$.se_va")
        return {"type": "survey_response", "kind": action, "score": int(value)}
    return drop("unmapped_event", f"no mapping for the structured event action {action!r}")


ECOMMERCE_ACTION = "com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/"


def _self_describing(item: dict[str, Any]) -> dict[str, Any] | Skip:
    envelope = _json_field(item, "ue_pr", "ue_px")
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("schema"), str):
        return reject("missing_field", "a self-describing event needs ue_pr or ue_px", "$.ue_pr")
    schema: str = inner["schema"].removeprefix("iglu:")
    data = inner.get("data") if isinstance(inner.get("data"), dict) else {}
    assert isinstance(data, dict)
    if schema.startswith("com.snowplowanalytics.snowplow/link_click/"):
        target = data.get("elementId") or host_of(str(data.get("targetUrl", ""))) or "link"
        return {"type": "click", "item_kind": "cta", "item_id": str(target)[:128]}
    if schema.startswith("com.snowplowanalytics.snowplow/submit_form/"):
        return {"type": "lead", **({"form_id": data["formId"]} if data.get("formId") else {})}
    if schema.startswith(
        (
            "com.snowplowanalytics.snowplow/ad_impression/",
            "com.snowplowanalytics.snowplow/ad_click/",
        )
    ):
        kind = "impression" if "/ad_impression/" in schema else "click"
        ad = data.get("bannerId") or data.get("advertiserId") or data.get("impressionId")
        event: dict[str, Any] = {"type": kind, "item_kind": "ad", "item_id": str(ad or "unknown")}
        if data.get("campaignId"):
            event["campaign"] = str(data["campaignId"])
        return event
    if schema.startswith(ECOMMERCE_ACTION):
        return _ecommerce(str(data.get("type", "")), _entities(item))
    return drop("unmapped_event", f"no mapping for the self-describing event {schema}")


def _ecommerce(action: str, entities: dict[str, dict[str, Any]]) -> dict[str, Any] | Skip:
    product = entities.get("product", {})
    if action == "add_to_cart":
        item_id = str(product.get("id", "unknown"))
        event: dict[str, Any] = {"type": "add_to_cart", "item_id": item_id}
        if isinstance(product.get("quantity"), int):
            event["quantity"] = product["quantity"]
        price = _money(product.get("price"), "$.co.product.price")
        if price is not None and product.get("currency"):
            event.update(value=price, currency=product["currency"])
        return event
    if action == "checkout_step":
        step = entities.get("checkout_step", {}).get("step", 1)
        if step != 1:
            return drop("unmapped_event", "checkout steps after the first are not counted")
        return {"type": "checkout_start"}
    if action == "transaction":
        transaction = entities.get("transaction", {})
        revenue = _money(transaction.get("revenue"), "$.co.transaction.revenue")
        currency = transaction.get("currency")
        if revenue is None or not currency:
            return reject(
                "missing_field",
                "a transaction entity with revenue and currency",
                "$.co.transaction",
            )
        event = {"type": "purchase", "value": revenue, "currency": currency}
        if transaction.get("transaction_id"):
            event["order_id"] = str(transaction["transaction_id"])
        return event
    if action in ("promo_view", "promo_click"):
        promotion = entities.get("promotion", {})
        event = {
            "type": "impression" if action == "promo_view" else "click",
            "item_kind": "banner",
            "item_id": str(promotion.get("id", "unknown")),
        }
        if promotion.get("name"):  # the promotion's name is the campaign it belongs to
            event["campaign"] = str(promotion["name"])
        return event
    return drop("unmapped_event", f"no mapping for the e-commerce action {action!r}")


def snowplow_query(query: list[tuple[str, str]]) -> dict[str, Any]:
    """``GET /i?e=pv&...``: one event in the query string."""
    return dict(query)
