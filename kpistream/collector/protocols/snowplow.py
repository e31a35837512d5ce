"""The Snowplow tracker protocol (``POST .../tp2`` and ``GET /i``) onto the contract."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import msgspec

from kpistream.collector.protocols.common import (
    BadNumber,
    Candidate,
    Skip,
    drop,
    host_of,
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

PAYLOAD_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-"


def snowplow_post(body: bytes, max_events: int) -> list[dict[str, Any] | Skip] | Skip:
    """``POST /com.snowplowanalytics.snowplow/tp2``: a payload_data envelope."""
    try:
        raw = json_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return undecodable(exc)
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
    return json_decoder.decode(base64.urlsafe_b64decode(padded))


def _json_field(item: dict[str, Any], plain: str, encoded: str) -> Any:
    try:
        if isinstance(item.get(plain), str):
            return json_decoder.decode(item[plain])
        if isinstance(item.get(encoded), str):
            return _b64(item[encoded])
    except (msgspec.DecodeError, binascii.Error, ValueError, UnicodeDecodeError) as exc:
        if out_of_range(exc):
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
    return money(item.get(name), f"$.{name}")


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
        price = money(product.get("price"), "$.co.product.price")
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
        revenue = money(transaction.get("revenue"), "$.co.transaction.revenue")
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
