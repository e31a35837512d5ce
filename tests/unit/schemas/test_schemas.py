"""The JSON Schema documents and the msgspec decoder accept and reject the same events."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from kpistream.schemas.decoder import EventDecoder, Rejection
from kpistream.schemas.events import Clickstream, Orders, Social
from kpistream.schemas.generate import SCHEMA_DIR, documents, render

NOW = 1_763_800_000_000
BASE = {"event_id": "e1", "ts": NOW - 1000, "site": "shop", "visitor_id": "v1"}
SOCIAL = {"event_id": "s1", "ts": NOW - 1000, "network": "instagram", "account": "acme"}


def ev(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


def so(**fields: Any) -> dict[str, Any]:
    return {**SOCIAL, **fields}


CLICKSTREAM_TABLE: list[tuple[dict[str, Any], str | None]] = [
    (ev(type="page_view", path="/"), None),
    (
        ev(
            type="page_view",
            url="https://shop.example/x",
            referrer="https://g.example",
            utm_source="google",
            utm_medium="cpc",
            utm_campaign="bf",
            session_id="s9",
        ),
        None,
    ),
    (ev(type="page_view"), "invalid_value"),  # neither url nor path
    (ev(type="click", item_kind="ad", item_id="a1", campaign="bf"), None),
    (ev(type="click", item_kind="popup", item_id="a1"), "invalid_value"),
    (ev(type="impression", item_kind="search", item_id="r1"), None),
    (ev(type="impression", item_kind="cta"), "missing_field"),
    (ev(type="add_to_cart", item_id="sku1", quantity=2, value=19.9, currency="EUR"), None),
    (ev(type="add_to_cart", item_id="sku1", quantity=0), "invalid_value"),
    (ev(type="checkout_start"), None),
    (ev(type="purchase", value=99.5, currency="EUR", order_id="o1"), None),
    (ev(type="purchase", value=99.5, currency="euro"), "invalid_value"),
    (ev(type="purchase", value=-1, currency="EUR"), "invalid_value"),
    (ev(type="purchase", currency="EUR"), "missing_field"),
    (ev(type="lead", form_id="newsletter"), None),
    (ev(type="survey_response", kind="nps", score=0), None),
    (ev(type="survey_response", kind="nps", score=10), None),
    (ev(type="survey_response", kind="nps", score=11), "invalid_value"),
    (ev(type="survey_response", kind="csat", score=0), "invalid_value"),
    (ev(type="survey_response", kind="ces", score=7), None),
    (ev(type="survey_response", kind="mood", score=3), "invalid_value"),
    (ev(type="teleport", path="/"), "unknown_type"),
    (
        {k: v for k, v in ev(type="page_view", path="/").items() if k != "visitor_id"},
        "missing_field",
    ),
    ({k: v for k, v in ev(path="/").items()}, "missing_field"),  # no type
    (ev(type="page_view", path="/", ts=str(NOW)), "wrong_type"),
    (ev(type="page_view", path="/", ts=None), "wrong_type"),
    (ev(type="page_view", path="/", ts=946_684_799_999), "ts_out_of_range"),
    (ev(type="page_view", path="/", site=""), "invalid_value"),
    (ev(type="page_view", path="/", site="x" * 257), "invalid_value"),
    (ev(type="page_view", path="/", visitor_id=42), "wrong_type"),
    (ev(type="page_view", path="/", unknown_field="kept for forward compatibility"), None),
]

SOCIAL_TABLE: list[tuple[dict[str, Any], str | None]] = [
    (so(type="post_impression", post_id="p1", count=120), None),
    (so(type="post_impression", post_id="p1", count=0), "invalid_value"),
    (so(type="like", post_id="p1"), None),
    (so(type="comment", post_id="p1"), None),
    (so(type="share"), "missing_field"),
    (so(type="follow"), None),
    (so(type="unfollow"), None),
    (so(type="followers_snapshot", followers=5000), None),
    (so(type="followers_snapshot", followers=-1), "invalid_value"),
    (so(type="page_view", path="/"), "unknown_type"),
]

ORDER = {
    "type": "order",
    "order_id": "A-17",
    "ts": NOW - 1000,
    "site": "shop",
    "customer_id": "c-0123456789abcdef",
    "value": 59.9,
    "currency": "EUR",
}


def order(**fields: Any) -> dict[str, Any]:
    return {**ORDER, **fields}


ORDERS_TABLE: list[tuple[dict[str, Any], str | None]] = [
    (order(), None),
    (order(items=[{"item_id": "sku-1", "category": "shoes", "quantity": 2, "price": 20}]), None),
    (order(items=[{"category": "shoes"}]), "missing_field"),
    (order(items=[{"item_id": "sku-1", "quantity": 0}]), "invalid_value"),
    (order(items=[{"item_id": "x"}] * 201), "invalid_value"),
    (order(value=-1), "invalid_value"),
    (order(currency="eur"), "invalid_value"),
    ({k: v for k, v in ORDER.items() if k != "customer_id"}, "missing_field"),
    (order(order_id=17), "wrong_type"),
    (order(type="purchase"), "unknown_type"),
]


@pytest.mark.parametrize(
    ("union", "name", "table"),
    [
        (Clickstream, "clickstream", CLICKSTREAM_TABLE),
        (Social, "social", SOCIAL_TABLE),
        (Orders, "orders", ORDERS_TABLE),
    ],
)
def test_schema_and_decoder_agree(
    union: Any, name: str, table: list[tuple[dict[str, Any], str | None]]
) -> None:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    decoder: EventDecoder[Any] = EventDecoder(union)
    for event, reason in table:
        result = decoder.decode(json.dumps(event).encode(), now_ms=NOW)
        schema_ok = validator.is_valid(event)
        decoder_ok = not isinstance(result, Rejection)
        assert schema_ok == decoder_ok == (reason is None), (event, result)
        if reason is not None:
            assert isinstance(result, Rejection) and result.reason == reason, (event, result)


def test_committed_schema_documents_are_generated() -> None:
    for name, document in documents().items():
        assert (SCHEMA_DIR / f"{name}.schema.json").read_text() == render(document), (
            f"schemas/v1/{name}.schema.json is stale: run `make schemas`"
        )


def test_schema_documents_are_valid_draft_2020_12() -> None:
    for document in documents().values():
        jsonschema.Draft202012Validator.check_schema(document)


RAW_TABLE: list[tuple[bytes, str]] = [
    (b"{", "malformed_json"),
    (b"not json at all", "malformed_json"),
    (b"\xff\xfe\x00garbage", "malformed_json"),
    (
        b'{"type":"page_view","event_id":"\xff","ts":1,"site":"s","visitor_id":"v","path":"/"}',
        "malformed_json",
    ),
    (b'{"type":"page_view","ts":NaN}', "malformed_json"),
    (b'{"type":"page_view","ts":Infinity}', "malformed_json"),
    (b"[" * 10_000 + b"]" * 10_000, "not_an_object"),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "malformed_json"),  # too deep
    (b"[1,2]", "not_an_object"),
    (b"null", "not_an_object"),
    (b'"x"', "not_an_object"),
    (
        b'{"type":"page_view","event_id":"e","ts":1e400,"site":"s","visitor_id":"v","path":"/"}',
        "invalid_number",
    ),
]


@pytest.mark.parametrize(("raw", "reason"), RAW_TABLE)
def test_raw_poison_gets_a_reason(raw: bytes, reason: str) -> None:
    result = EventDecoder(Clickstream).decode(raw, now_ms=NOW)
    assert isinstance(result, Rejection) and result.reason == reason, result


def test_megabyte_strings_are_rejected_before_parsing() -> None:
    raw = json.dumps(ev(type="page_view", path="/" + "x" * 5_000_000)).encode()
    result = EventDecoder(Clickstream).decode(raw, now_ms=NOW)
    assert isinstance(result, Rejection) and result.reason == "too_large"


def test_future_timestamps_beyond_skew_are_rejected() -> None:
    decoder: EventDecoder[Any] = EventDecoder(Clickstream, max_future_skew_ms=60_000)
    ok = decoder.decode(
        json.dumps(ev(type="page_view", path="/", ts=NOW + 60_000)).encode(), now_ms=NOW
    )
    bad = decoder.decode(
        json.dumps(ev(type="page_view", path="/", ts=NOW + 60_001)).encode(), now_ms=NOW
    )
    assert not isinstance(ok, Rejection)
    assert isinstance(bad, Rejection) and bad.reason == "ts_in_future" and bad.field == "$.ts"


def test_site_allowlist() -> None:
    decoder: EventDecoder[Any] = EventDecoder(Clickstream, site_allowlist=["shop"])
    ok = decoder.decode(json.dumps(ev(type="page_view", path="/")).encode(), now_ms=NOW)
    bad = decoder.decode(
        json.dumps(ev(type="page_view", path="/", site="evil")).encode(), now_ms=NOW
    )
    assert not isinstance(ok, Rejection)
    assert isinstance(bad, Rejection) and bad.reason == "unknown_site"


def _pv(**fields: Any) -> bytes:
    return json.dumps(ev(type="page_view", path="/", **fields)).encode()


def test_a_byte_order_mark_is_tolerated() -> None:
    result = EventDecoder(Clickstream).decode(b"\xef\xbb\xbf" + _pv(), now_ms=NOW)
    assert not isinstance(result, Rejection)


def test_ids_that_are_email_or_ip_addresses_are_rejected_without_repeating_them() -> None:
    decoder: EventDecoder[Any] = EventDecoder(Clickstream)
    for bad in ("jane@example.com", "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.1"):
        for name in ("visitor_id", "session_id"):
            result = decoder.decode(_pv(**{name: bad}), now_ms=NOW)
            assert isinstance(result, Rejection) and result.reason == "pii_id", (bad, result)
            assert result.field == f"$.{name}" and bad not in result.detail
    for fine in ("3f2a9c1e-77b1-4c1e-9b1a-0d6f5e2c8a11", "v@1", "1.2.3", "cafe", "12:30"):
        assert not isinstance(decoder.decode(_pv(visitor_id=fine), now_ms=NOW), Rejection), fine
    orders: EventDecoder[Any] = EventDecoder(Orders)
    for bad in ("jane@example.com", "10.0.0.1"):
        result = orders.decode(json.dumps(order(customer_id=bad)).encode(), now_ms=NOW)
        assert isinstance(result, Rejection) and result.reason == "pii_id", (bad, result)
        assert result.field == "$.customer_id" and bad not in result.detail


#: Bad values with two faults each, whose reason must not depend on field order or topic.
ORDER_TABLE: list[tuple[dict[str, Any], str]] = [
    ({"type": "like", "ts": "x", "event_id": 5}, "wrong_type"),  # $.event_id first in contract
    ({"type": "nope", "ts": "x"}, "unknown_type"),
    ({"ts": 1, "event_id": "e"}, "missing_field"),  # no type at all
]


@pytest.mark.parametrize(("fields", "reason"), ORDER_TABLE)
def test_reasons_do_not_depend_on_field_order(fields: dict[str, Any], reason: str) -> None:
    import itertools

    decoder: EventDecoder[Any] = EventDecoder(Social)
    seen = set()
    for order in itertools.permutations(fields):
        raw = json.dumps({k: fields[k] for k in order}).encode()
        result = decoder.decode(raw, now_ms=NOW)
        assert isinstance(result, Rejection)
        seen.add((result.reason, result.field))
    assert len(seen) == 1 and next(iter(seen))[0] == reason, seen


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"like","event_id":',  # cut short after a known type
        b'{"type":"nope","event_id":"e",',  # cut short after an unknown type
        b'{"ts":"x",',
    ],
)
def test_malformed_json_is_malformed_on_either_topic(raw: bytes) -> None:
    for union in (Clickstream, Social):
        result = EventDecoder(union).decode(raw, now_ms=NOW)
        assert isinstance(result, Rejection) and result.reason == "malformed_json", (union, raw)


def test_a_batch_gets_the_same_verdicts_as_its_values_one_by_one() -> None:
    """decode_batch's inline path and decode agree on every kind of value."""
    values: list[bytes | None] = [raw for raw, _ in RAW_TABLE]
    values += [
        None,
        _pv(),
        b"\xef\xbb\xbf" + _pv(event_id="bom"),
        _pv(ts=NOW + 300_001),
        _pv(visitor_id="jane@example.com"),
        _pv(session_id="10.0.0.1"),
        _pv(visitor_id="1.2.3"),  # has a dot, is no address
        json.dumps(ev(type="page_view", path="/" + "x" * 70_000)).encode(),
        json.dumps(ev(type="page_view", path="/", site="evil")).encode(),
    ]
    for allow in ((), ("shop",)):
        decoder: EventDecoder[Any] = EventDecoder(Clickstream, site_allowlist=allow)
        one_by_one = [decoder.decode(v, now_ms=NOW) for v in values]
        assert decoder.decode_batch(values, clock_ms=lambda: NOW) == one_by_one
        reasons = [r.reason for r in one_by_one if isinstance(r, Rejection)]
        assert reasons.count("pii_id") == 2 and reasons.count("ts_in_future") == 1
