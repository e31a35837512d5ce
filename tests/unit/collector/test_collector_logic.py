"""The collector's pure logic: protocol mappings, privacy helpers, abuse guards."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kpistream.collector import protocols as P
from kpistream.collector.guard import Sites, TokenBuckets, VisitorPace, bot_reason
from kpistream.collector.privacy import (
    ClientAddress,
    audience_id,
    consent_given,
    customer_id,
    refusal,
)


def _one(result: Any) -> Any:
    assert isinstance(result, list) and len(result) == 1, result
    return result[0]


def test_ours_accepts_one_an_array_and_ndjson() -> None:
    one = P.ours(b'{"type": "page_view"}', 10)
    array = P.ours(b'[{"type": "a"}, 3]', 10)
    nd = P.ours(b'{"type": "a"}\n{"type": "b"}\nnot json\n', 10)
    assert one == [{"type": "page_view"}]
    assert isinstance(array, list) and array[0] == {"type": "a"}
    assert isinstance(array[1], P.Skip) and array[1].reason == "not_an_object"
    assert isinstance(nd, list) and [type(x).__name__ for x in nd] == ["dict", "dict", "Skip"]
    assert P.ours(b"", 10) == P.reject("malformed_json", "empty body")
    too_many = P.ours(b"[{}, {}, {}]", 2)
    assert isinstance(too_many, P.Skip) and too_many.reason == "too_many_events"


def test_pixel_query_types_numbers_and_takes_the_page_from_the_referer() -> None:
    event = P.ours_query([("site", "s"), ("ts", "1700000000000")], "https://s/x?utm_source=nl")
    assert event == {
        "type": "page_view",
        "site": "s",
        "ts": 1_700_000_000_000,
        "url": "https://s/x?utm_source=nl",
        "utm_source": "nl",
    }
    bad = P.ours_query([("score", "ten")], None)
    assert isinstance(bad, P.Skip) and bad.field == "$.score"


@pytest.mark.parametrize(
    ("name", "extra", "expected"),
    [
        (
            "pageview",
            {},
            {"type": "page_view", "url": "https://d.test/?utm_campaign=bf", "utm_campaign": "bf"},
        ),
        (
            "Add to Cart",
            {"p": {"item_id": "sku", "quantity": "2"}, "$": {"amount": "9.5", "currency": "EUR"}},
            {
                "type": "add_to_cart",
                "item_id": "sku",
                "quantity": 2,
                "value": 9.5,
                "currency": "EUR",
            },
        ),
        ("begin_checkout", {}, {"type": "checkout_start"}),
        (
            "Purchase",
            {"revenue": {"amount": 15.99, "currency": "USD"}, "p": {"order_id": 7}},
            {"type": "purchase", "value": 15.99, "currency": "USD", "order_id": "7"},
        ),
        ("Form: Submission", {}, {"type": "lead"}),
        (
            "Outbound Link: Click",
            {"p": {"url": "https://out.test/a"}},
            {"type": "click", "item_kind": "cta", "item_id": "outbound:out.test"},
        ),
        (
            "impression",
            {"p": {"kind": "banner", "id": "b1", "campaign": "bf"}},
            {"type": "impression", "item_kind": "banner", "item_id": "b1", "campaign": "bf"},
        ),
        ("nps", {"p": {"score": 9}}, {"type": "survey_response", "kind": "nps", "score": 9}),
        (
            "engagement",
            {"e": 4200, "sd": 130},
            {"type": "engagement", "engaged_ms": 4200, "scroll_depth": 100},
        ),
    ],
)
def test_plausible_mapping_table(name: str, extra: dict[str, Any], expected: Any) -> None:
    body = {"n": name, "u": "https://d.test/?utm_campaign=bf", "d": "d.test", **extra}
    event = _one(P.plausible(json.dumps(body).encode(), 100))
    assert event == {**expected, "site": "d.test"}


def test_plausible_refusals_and_drops() -> None:
    missing = P.plausible(b'{"u": "https://d.test/"}', 100)
    assert isinstance(missing, P.Skip) and missing.field == "$.n"
    unpriced = _one(P.plausible(b'{"n": "Purchase", "u": "https://d.test/"}', 100))
    assert isinstance(unpriced, P.Skip) and unpriced.kind == "rejected"
    other = _one(P.plausible(b'{"n": "Newsletter", "u": "https://d.test/"}', 100))
    assert isinstance(other, P.Skip) and (other.kind, other.reason) == ("dropped", "unmapped_event")
    two = P.plausible(b'{"n": "pageview", "u": "https://a.test/", "d": "a.test,b.test"}', 100)
    assert isinstance(two, list)
    assert [e["site"] for e in two if isinstance(e, dict)] == ["a.test", "b.test"]


def _ue(schema: str, data: dict[str, Any]) -> str:
    envelope = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": schema, "data": data},
    }
    return base64.urlsafe_b64encode(json.dumps(envelope).encode()).decode().rstrip("=")


def _co(*entities: tuple[str, dict[str, Any]]) -> str:
    return json.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": [{"schema": s, "data": d} for s, d in entities],
        }
    )


ECOM = "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            {"e": "pv", "url": "https://s.test/p", "refr": "https://r.test/"},
            {"type": "page_view", "url": "https://s.test/p", "referrer": "https://r.test/"},
        ),
        ({"e": "pp"}, {"type": "engagement"}),
        (
            {"e": "se", "se_ca": "banner", "se_ac": "click", "se_la": "b1", "se_pr": "bf"},
            {"type": "click", "item_kind": "banner", "item_id": "b1", "campaign": "bf"},
        ),
        ({"e": "se", "se_ca": "shop", "se_ac": "checkout"}, {"type": "checkout_start"}),
        (
            {"e": "se", "se_ac": "nps", "se_va": "8"},
            {"type": "survey_response", "kind": "nps", "score": 8},
        ),
        (
            {"e": "tr", "tr_tt": "20.5", "tr_cu": "EUR", "tr_id": "o1"},
            {"type": "purchase", "value": 20.5, "currency": "EUR", "order_id": "o1"},
        ),
        (
            {
                "e": "ue",
                "ue_px": _ue(
                    "iglu:com.snowplowanalytics.snowplow/submit_form/jsonschema/1-0-0",
                    {"formId": "f1"},
                ),
            },
            {"type": "lead", "form_id": "f1"},
        ),
        (
            {
                "e": "ue",
                "ue_px": _ue(
                    "iglu:com.snowplowanalytics.snowplow/ad_impression/jsonschema/1-0-0",
                    {"bannerId": "ad7", "campaignId": "bf"},
                ),
            },
            {"type": "impression", "item_kind": "ad", "item_id": "ad7", "campaign": "bf"},
        ),
        (
            {
                "e": "ue",
                "ue_px": _ue(ECOM, {"type": "add_to_cart"}),
                "co": _co(
                    (
                        "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0",
                        {"id": "sku", "price": 9.5, "currency": "EUR", "quantity": 3},
                    )
                ),
            },
            {
                "type": "add_to_cart",
                "item_id": "sku",
                "quantity": 3,
                "value": 9.5,
                "currency": "EUR",
            },
        ),
        (
            {
                "e": "ue",
                "ue_px": _ue(ECOM, {"type": "transaction"}),
                "co": _co(
                    (
                        "iglu:com.snowplowanalytics.snowplow.ecommerce/transaction/jsonschema/1-0-0",
                        {"transaction_id": "t1", "revenue": 30, "currency": "USD"},
                    )
                ),
            },
            {"type": "purchase", "value": 30.0, "currency": "USD", "order_id": "t1"},
        ),
        (
            {
                "e": "ue",
                "ue_px": _ue(ECOM, {"type": "promo_view"}),
                "co": _co(
                    (
                        "iglu:com.snowplowanalytics.snowplow.ecommerce/promotion/jsonschema/1-0-0",
                        {"id": "spring", "name": "bf"},
                    )
                ),
            },
            {"type": "impression", "item_kind": "banner", "item_id": "spring", "campaign": "bf"},
        ),
    ],
)
def test_snowplow_mapping_table(item: dict[str, Any], expected: dict[str, Any]) -> None:
    event = P.snowplow({**item, "aid": "s.test", "eid": "e1", "dtm": "1700000000000"}, False)
    assert event == {**expected, "site": "s.test", "event_id": "e1", "ts": 1_700_000_000_000}


def test_snowplow_uses_its_ids_only_with_consent() -> None:
    item = {"e": "pp", "aid": "s.test", "duid": "d1", "uid": "u1", "sid": "s1"}
    assert "visitor_id" not in P.snowplow(item, False)  # type: ignore[operator]
    consented = P.snowplow(item, True)
    assert isinstance(consented, dict)
    assert (consented["visitor_id"], consented["session_id"], consented["consent"]) == (
        "u1",
        "s1",
        True,
    )
    broken = P.snowplow({"e": "ue", "ue_px": "%%%"}, False)
    assert isinstance(broken, P.Skip) and broken.kind == "rejected"
    unknown = P.snowplow({"e": "ti"}, False)
    assert isinstance(unknown, P.Skip) and unknown.reason == "unmapped_event"


def test_ids_are_keyed_hashes() -> None:
    salt = b"s" * 32
    a = audience_id(salt, "site", "203.0.113.7", "UA")
    assert a.startswith("a-") and len(a) == 34 and "203.0.113.7" not in a
    assert a != audience_id(b"t" * 32, "site", "203.0.113.7", "UA")  # another day's salt
    assert a != audience_id(salt, "other", "203.0.113.7", "UA")
    c = customer_id("secret-of-sixteen", "site", "crm-1")
    assert c == customer_id("secret-of-sixteen", "site", "crm-1")
    assert c != customer_id("another-secret-16", "site", "crm-1")


def test_signals_and_consent() -> None:
    assert refusal({"sec-gpc": "1"}) == "gpc" and refusal({"dnt": "1"}) == "dnt"
    assert refusal({"dnt": "0"}) is None
    assert [consent_given(v) for v in (True, 1, "granted", "yes", "0", False, None)] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    address = ClientAddress(["10.0.0.0/8"])
    assert address("10.1.2.3", "198.51.100.9, 10.0.0.5") == "198.51.100.9"
    assert address("192.0.2.1", "198.51.100.9") == "192.0.2.1"  # not a proxy of ours
    assert ClientAddress([])("10.1.2.3", "198.51.100.9") == "10.1.2.3"


def test_token_bucket_refills_at_its_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=2)
    assert [buckets.take(b"c", now=0.0) for _ in range(2)] == [0.0, 0.0]
    assert buckets.take(b"c", now=0.0) == pytest.approx(0.5)
    assert buckets.take(b"c", now=0.5) == 0.0  # one token came back
    assert buckets.take(b"other", now=0.5) == 0.0
    small = TokenBuckets(rate=1.0, burst=1, max_clients=2)
    for client in (b"a", b"b", b"c"):
        small.take(client, now=0.0)
    assert small.take(b"a", now=0.0) == 0.0  # forgotten (least recently seen): a new bucket


def test_visitor_pace_and_bots() -> None:
    pace = VisitorPace(limit=2)
    assert [pace.too_fast("v", now=60.0) for _ in range(3)] == [False, False, True]
    assert pace.too_fast("v", now=120.0) is False  # a new minute
    headless = "Mozilla/5.0 (X11) AppleWebKit/537.36 HeadlessChrome/130.0 Safari/537.36"
    assert bot_reason(headless, allow_headless=False) == "bot"
    assert bot_reason(headless, allow_headless=True) is None
    assert bot_reason("", allow_headless=False) == "no_user_agent"
    google = "Googlebot/2.1 (+http://www.google.com/bot.html)"
    assert bot_reason(google, allow_headless=True) == "bot"


def test_site_origins() -> None:
    sites = Sites({"shop.test": ["https://cdn.test"]}, {"api.test": "k"})
    assert sites.origin_allowed("shop.test", "https://shop.test")
    assert sites.origin_allowed("shop.test", "http://www.shop.test:8080")
    assert sites.origin_allowed("shop.test", "https://cdn.test/")
    assert not sites.origin_allowed("shop.test", "https://evilshop.test")
    assert sites.any_origin_allowed("https://cdn.test")
    assert not sites.any_origin_allowed("https://evil.test")
    assert sites.any_origin_allowed("https://www.shop.test")
    listed = Sites({}, {}, ["a.test"])
    assert listed.any_origin_allowed("https://a.test") and not listed.any_origin_allowed(
        "https://b.test"
    )
    assert Sites({}, {}).any_origin_allowed("https://anything.test")
    assert sites.key_matches("api.test", "k") and not sites.key_matches("api.test", "x")
    assert not sites.key_matches("shop.test", "k")
