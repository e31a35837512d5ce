"""The collector's pure edges: the bot check against crawlerdetect's own verdicts, numbers
that are not numbers in every protocol, domain lists, URL scrubbing."""

from __future__ import annotations

import base64
import json
from typing import Any

from crawlerdetect import CrawlerDetect
from hypothesis import given, settings
from hypothesis import strategies as st

from kpistream.collector import protocols as P
from kpistream.collector import scrub
from kpistream.collector.guard import MAX_USER_AGENT, _crawler, bot_reason
from kpistream.schemas.decoder import EventDecoder, Rejection
from kpistream.schemas.events import Clickstream

REFERENCE = CrawlerDetect()
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1 [FBAN/FBIOS;FBAV/440.0]",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; YandexSearch/1.0)",  # a lookahead pattern: Yandex(?!Search)
    "Mozilla/5.0 (compatible; YandexMetrika/2.0)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Mozilla/5.0 HeadlessChrome/130.0.0.0",
    "facebookexternalhit/1.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "my-own-uptime-checker/1.0",
]


def test_the_bot_check_agrees_with_crawlerdetect_on_known_agents() -> None:
    for agent in AGENTS:
        assert _crawler.__wrapped__(agent) == REFERENCE.is_crawler(agent), agent


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=120)
    | st.lists(st.sampled_from(["bot", "Mozilla/5.0", " ", "spider", "(", "Chrome/1", "ya"])).map(
        "".join
    )
)
def test_the_bot_check_agrees_with_crawlerdetect_on_random_agents(agent: str) -> None:
    """The same pattern lists by two roads: RE2 with the lookahead ones apart, and
    crawlerdetect's own Python ``re`` (short agents: its cost is quadratic)."""
    assert _crawler.__wrapped__(agent) == REFERENCE.is_crawler(agent)


def test_only_the_first_max_user_agent_characters_are_looked_at() -> None:
    padding = "Mozilla/5.0 " + "a" * MAX_USER_AGENT
    assert bot_reason(padding + " Googlebot/2.1", allow_headless=False) is None
    assert bot_reason("Googlebot/2.1 " + padding, allow_headless=False) == "bot"


# -- numbers ------------------------------------------------------------------------------

NOW = 1_764_000_000_000
DECODER: EventDecoder[Any] = EventDecoder(Clickstream)
NOT_FINITE = st.sampled_from(["Infinity", "-Infinity", "inf", "NaN", "nan", "1e400", "-1e999"])
HUGE = st.one_of(
    NOT_FINITE,
    st.floats(min_value=1e13, allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=10**13, max_value=10**40).map(str),
)


def verdict(candidates: Any) -> set[str]:
    """The reasons a protocol's candidates end in, through the workers' decoder: what the
    collector answers (an exception here is what was a 500)."""
    if isinstance(candidates, P.Skip):
        return {candidates.reason}
    reasons = set()
    for item in candidates if isinstance(candidates, list) else [candidates]:
        if isinstance(item, P.Skip):
            reasons.add(item.reason)
            continue
        item = {"event_id": "e", "ts": NOW, "visitor_id": "v", "site": "s.test", **item}
        decoded = DECODER.convert(item, now_ms=NOW)
        reasons.add(decoded.reason if isinstance(decoded, Rejection) else "accepted")
    return reasons


def snowplow_numbers(value: str) -> list[dict[str, Any]]:
    """Every Snowplow field that carries a number, given ``value``."""
    product = {
        "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0",
        "data": {"id": "p", "price": value, "currency": "EUR"},
    }
    transaction = {
        "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/transaction/jsonschema/1-0-0",
        "data": {"transaction_id": "t", "revenue": value, "currency": "EUR"},
    }

    def ecommerce(action: str, entity: dict[str, Any]) -> dict[str, Any]:
        ue = {
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {
                "schema": P.ECOMMERCE_ACTION.join(["iglu:", "jsonschema/1-0-2"]),
                "data": {"type": action},
            },
        }
        co = {
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": [entity],
        }
        return {"e": "ue", "ue_pr": json.dumps(ue), "co": json.dumps(co)}

    return [
        {"e": "se", "se_ac": "purchase", "se_va": value, "se_pr": "EUR"},
        {"e": "se", "se_ac": "add_to_cart", "se_va": value, "se_pr": "EUR"},
        {"e": "se", "se_ac": "nps", "se_va": value},
        {"e": "tr", "tr_tt": value, "tr_cu": "EUR"},
        ecommerce("add_to_cart", product),
        ecommerce("transaction", transaction),
    ]


def plausible_numbers(value: str) -> list[bytes]:
    """Every Plausible field that carries a number, given ``value`` (as text, and as a JSON
    number where JSON can hold it)."""
    number = value if value[-1].isdigit() and "e" in value.lower() else json.dumps(value)
    bodies = []
    for raw in (json.dumps(value), number):
        bodies += [
            f'{{"n":"Purchase","u":"https://s.test/","$":{{"amount":{raw},"currency":"EUR"}}}}',
            f'{{"n":"Add to Cart","u":"https://s.test/","p":{{"quantity":{raw}}}}}',
            f'{{"n":"NPS","u":"https://s.test/","p":{{"score":{raw}}}}}',
            f'{{"n":"Checkout","u":"https://s.test/","p":{{"value":{raw},"currency":"EUR"}}}}',
        ]
    return [b.encode() for b in bodies]


@settings(max_examples=150, deadline=None)
@given(NOT_FINITE)
def test_numbers_that_are_not_finite_are_invalid_numbers_in_every_protocol(value: str) -> None:
    for item in snowplow_numbers(value):
        assert verdict(P.snowplow({"aid": "s.test", **item}, consent=False)) == {
            "invalid_number"
        }, item
    for body in plausible_numbers(value):
        assert verdict(P.plausible(body, 100)) == {"invalid_number"}, body
    for name in ("value", "quantity", "score", "ts", "engaged_ms", "scroll_depth"):
        query = [("site", "s.test"), ("type", "purchase"), (name, value)]
        assert verdict(P.ours_query(query, None)) == {"invalid_number"}, name
    if "e" in value.lower() and value[-1].isdigit():  # JSON can carry 1e400 as a number
        for name in ("value", "quantity", "score", "ts"):
            body = f'{{"type":"purchase","site":"s.test","{name}":{value}}}'.encode()
            assert verdict(P.ours(body, 100)) == {"invalid_number"}, name
            raw = (
                b'{"type":"purchase","event_id":"e","ts":1764000000000,"site":"s",'
                b'"visitor_id":"v","currency":"EUR","value":' + value.encode() + b"}"
            )
            decoded = DECODER.decode(raw, now_ms=NOW)
            assert isinstance(decoded, Rejection) and decoded.reason == "invalid_number"


@settings(max_examples=200, deadline=None)
@given(HUGE)
def test_huge_numbers_get_a_reason_never_an_error(value: str) -> None:
    """Finite but beyond what the contract takes: refused with a reason of the 400 class."""
    refused = {"invalid_number", "invalid_value", "ts_out_of_range", "wrong_type", "missing_field"}
    for item in snowplow_numbers(value):
        assert verdict(P.snowplow({"aid": "s.test", **item}, consent=False)) <= refused, item
    for body in plausible_numbers(value):
        assert verdict(P.plausible(body, 100)) <= refused, body


# -- domains and URLs --------------------------------------------------------------------------


def test_a_plausible_domain_list_is_distinct_and_bounded() -> None:
    body = {"n": "pageview", "u": "https://a.test/", "d": " a.test,b.test , a.test,,b.test"}
    sites = P.plausible(json.dumps(body).encode(), 100)
    assert isinstance(sites, list)
    assert [s["site"] for s in sites if isinstance(s, dict)] == ["a.test", "b.test"]
    eleven = ",".join(f"s{i}.test" for i in range(11))
    refused = P.plausible(json.dumps({**body, "d": eleven}).encode(), 100)
    assert isinstance(refused, P.Skip) and refused.reason == "too_many_domains"
    three = P.plausible(json.dumps({**body, "d": "a.test,b.test,c.test"}).encode(), 2)
    assert isinstance(three, P.Skip) and three.reason == "too_many_domains"


def test_page_urls_keep_the_path_and_the_harmless_parameters() -> None:
    url = (
        "https://u:pw@shop.test:8443/p/x%20y?utm_source=n&q=jane@example.com&page=2"
        "&utm_term=%2B44%2020%207946%200958#frag"
    )
    assert scrub.page_url(url, {"page"}) == (
        "https://shop.test:8443/p/x%20y?utm_source=n&page=2&utm_term=%5Bphone%5D"
    )
    assert scrub.page_url("/a/198.51.100.9/b?x=1", ()) == "/a/%5Bip%5D/b"
    assert scrub.referrer("https://www.google.com/search?q=me@x.test", "shop.test") == (
        "https://www.google.com/"
    )
    assert scrub.referrer("https://shop.test/cart?id=3", "shop.test") == "https://shop.test/cart"
    assert scrub.referrer("android-app://com.google", "shop.test") == "android-app://com.google/"
    assert scrub.referrer("not a url", "shop.test") is None


def test_every_kept_value_loses_personal_data() -> None:
    event = {
        "type": "lead",
        "site": "shop.test",
        "visitor_id": "a-1234",
        "form_id": "signup 030-1234567",
        "campaign": "for 2001:db8::1",
    }
    scrub.event(event, "shop.test", ())
    assert event == {
        "type": "lead",
        "site": "shop.test",
        "visitor_id": "a-1234",
        "form_id": "signup [phone]",
        "campaign": "for [ip]",
    }
    b64 = base64.b64encode(b"x").decode()
    assert scrub.text(b64) == b64
