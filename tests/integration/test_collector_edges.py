"""The collector's edges, tried as an attacker would, over real HTTP to the real broker,
Redis and workers: hostile User-Agents and heads, domain lists, personal data in URLs,
numbers that are not numbers."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import httpx
import msgspec
import pytest

from kpistream.config.settings import Settings
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from tests.support.collector_server import headers, read_topic, running_collector
from tests.support.privacy import redis_dump
from tests.support.waits import read_records, wait_for_totals


def _settings(settings_factory: Any, **extra: Any) -> Settings:
    base: dict[str, Any] = {"collector_trusted_proxies": "127.0.0.1/32", "collector_burst": 10_000}
    base.update(extra)
    settings: Settings = settings_factory(**base)
    return settings


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_hostile_user_agents_and_heads_never_hold_the_collector(
    settings_factory: Any,
) -> None:
    """While one client streams requests with long, pathological User-Agents (each new, so
    no cache helps; a 8 KiB one held the loop 8 s before), another's /healthz and events
    are answered within the client's 5 s timeout; heads over 16 KiB are answered 431."""
    settings = _settings(settings_factory)
    rng = random.Random(21)
    async with running_collector(settings) as url:
        attacker = httpx.AsyncClient(base_url=url, timeout=120)
        visitor = httpx.AsyncClient(base_url=url, timeout=5)
        answered: list[tuple[int, int]] = []
        too_long: list[str] = []

        async def attack() -> None:
            for i in range(30):
                # Letters no bot pattern is made of: a run the old check backtracked on.
                run = "".join(rng.choice("aeiu0123456789") for _ in range(8)) * 10
                size = (4096, 8192, 15_000)[i % 3]
                agent = ("Mozilla/5.0 " + run * (size // len(run) + 1))[:size]
                event = {"type": "page_view", "site": "shop.test", "path": f"/a{i}"}
                response = await attacker.post(
                    "/v1/events", content=json.dumps(event), headers=headers(agent)
                )
                answered.append((response.status_code, response.json()["accepted"]))
            for _ in range(10):  # values regexes once backtracked on: refused, and quickly
                run = "".join(rng.choice("aeiu0123456789.") for _ in range(16))
                event = {
                    "type": "page_view",
                    "site": "shop.test",
                    "url": "https://shop.test/" + run * 3000 + "@",
                    "utm_campaign": ("+1 2" * 500)[:250],
                }
                response = await attacker.post(
                    "/v1/events", content=json.dumps(event), headers=headers()
                )
                too_long.append(response.json()["rejected"][0]["reason"])

        async def visit() -> list[int]:
            statuses = []
            for i in range(15):
                statuses.append((await visitor.get("/healthz")).status_code)
                event = {"type": "page_view", "site": "shop.test", "path": f"/normal{i}"}
                sent = await visitor.post(
                    "/v1/events", content=json.dumps(event), headers=headers()
                )
                statuses.append(sent.status_code)
            return statuses

        try:
            _, statuses = await asyncio.gather(attack(), visit())
            big_header = await attacker.get("/healthz", headers={"X-Padding": "x" * (1024 * 1024)})
            long_line = await attacker.get("/healthz?" + "q" * (17 * 1024))
            metrics = (await visitor.get("/metrics")).text
        finally:
            await attacker.aclose()
            await visitor.aclose()
    assert statuses == [200, 202] * 15
    assert answered == [(202, 1)] * 30  # long, but a browser's: counted under the cut agent
    assert too_long == ["invalid_value"] * 10  # a URL beyond 2,048 characters
    for refused in (big_header, long_line):
        assert refused.status_code == 431
        assert refused.json() == {"error": "headers_too_large", "limit_bytes": 16384}
    rejected = "kpistream_collector_events_rejected_total"
    assert _metric(metrics, rejected, protocol="http", reason="headers_too_large") == 2
    records = await read_topic(settings, 45)
    paths = sorted(v["path"] for _, _, v in records)
    assert paths == sorted([f"/a{i}" for i in range(30)] + [f"/normal{i}" for i in range(15)])


async def test_a_plausible_domain_list_counts_each_domain_once(
    settings_factory: Any, workers: Any
) -> None:
    """One purchase naming its domain 250 times is one order; more domains than allowed is
    refused whole; a domain outside the allowlist is refused alone, with its reason."""
    settings = _settings(settings_factory, sites="pl.test,two.test", collector_max_events=3)

    def purchase(domains: str, order: str) -> str:
        return json.dumps(
            {
                "n": "Purchase",
                "u": "https://pl.test/thanks",
                "d": domains,
                "$": {"amount": "10", "currency": "EUR"},
                "p": {"order_id": order},
            }
        )

    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        repeated = await http.post(
            "/api/event", content=purchase(",".join(["pl.test"] * 250), "o1"), headers=headers()
        )
        both = await http.post(
            "/api/event", content=purchase("pl.test, two.test", "o2"), headers=headers()
        )
        too_many = await http.post(
            "/api/event", content=purchase("a.test,b.test,c.test,d.test", "o3"), headers=headers()
        )
        foreign = await http.post(
            "/api/event", content=purchase("pl.test,evil.test", "o4"), headers=headers()
        )
    assert repeated.status_code == 202 and both.status_code == 202
    assert too_many.status_code == 400
    assert too_many.json()["rejected"][0]["reason"] == "too_many_domains"
    assert foreign.status_code == 400
    assert foreign.json()["accepted"] == 1
    assert [r["reason"] for r in foreign.json()["rejected"]] == ["unknown_site"]
    await workers(settings)
    orders = fields.field(K.ORDERS.code, "pl.test", "EUR")
    reader = await wait_for_totals(
        settings, {orders: 3, fields.field(K.ORDERS.code, "two.test", "EUR"): 1}
    )
    totals = reader.snapshot(settings.window_minutes()).totals
    assert totals[orders] == 3  # o1 once, o2, o4: not 250 + 2
    assert totals[fields.field(K.ORDERS.code, "two.test", "EUR")] == 1


EMAIL, IP, IPV6, PHONE = "jane.doe@example.com", "198.51.100.23", "2001:db8::7", "+44 20 7946 0958"
PERSONAL = (EMAIL, IP, IPV6, PHONE, "jane.doe%40example.com", "2001%3Adb8")


async def test_personal_data_in_urls_never_leaves_the_collector(
    settings_factory: Any, workers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A page view and a purchase whose page URL, referrer and utm values carry an e-mail,
    IP addresses and a phone number: none of them reaches Kafka, Redis, the dead letters or
    a log; the kept parts of the URLs are exact."""
    caplog.set_level(logging.DEBUG)
    settings = _settings(settings_factory, collector_query_params="shop.test=page")
    query = (
        f"?email={EMAIL}&ip={IP}&page=2&utm_source=news&utm_medium=email"
        f"&utm_campaign=bf+{EMAIL}&phone={PHONE.replace(' ', '%20').replace('+', '%2B')}"
    )
    view = {
        "type": "page_view",
        "site": "shop.test",
        "event_id": "pv1",
        "url": f"https://shop.test/u/{EMAIL}/from/{IP}{query}#t={PHONE}",
        "referrer": f"https://mail.example/inbox/{EMAIL}?ip={IPV6}",
        "utm_campaign": f"bf {EMAIL}",
    }
    plausible = {
        "n": "Purchase",
        "u": f"https://shop.test/thanks/{IPV6}?utm_campaign=call%20{PHONE.replace(' ', '%20')}",
        "d": "shop.test",
        "r": f"https://shop.test/cart/{EMAIL}?x={IP}",
        "$": {"amount": "25", "currency": "EUR"},
        "p": {"order_id": f"order/{EMAIL}"},
    }
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        first = await http.post("/v1/events", content=json.dumps(view), headers=headers())
        second = await http.post("/api/event", content=json.dumps(plausible), headers=headers())
        assert first.status_code == 202 and second.status_code == 202
        records = await read_topic(settings, 2)
    events = {v["type"]: v for _, _, v in records}
    assert events["page_view"]["url"] == (
        "https://shop.test/u/%5Bemail%5D/from/%5Bip%5D"
        "?page=2&utm_source=news&utm_medium=email&utm_campaign=bf+%5Bemail%5D"
    )
    assert events["page_view"]["referrer"] == "https://mail.example/"
    assert events["page_view"]["utm_campaign"] == "bf [email]"
    assert events["purchase"].get("url") is None  # Plausible's purchase keeps no page
    assert events["purchase"]["order_id"] == "order/[email]"
    await workers(settings)
    landing = fields.field(K.LANDING_SESSIONS.code, "shop.test", "/u/%5Bemail%5D/from/%5Bip%5D")
    await wait_for_totals(settings, {fields.field(K.PAGE_VIEWS.code, "shop.test"): 1})
    stored = await redis_dump(settings)
    dead = await read_records(settings, settings.deadletter_topic, 0)
    kafka = msgspec.json.encode([v for _, _, v in records])
    places = {
        "Kafka": kafka,
        "Redis": stored,
        "the dead letters": b"".join(r.value or b"" for r in dead),
        "the logs": caplog.text.encode(),
    }
    for where, text in places.items():
        for value in PERSONAL:
            assert value.encode() not in text, f"{value} in {where}"
    assert landing.encode() in stored  # the session's landing page, as scrubbed


NON_FINITE = ("Infinity", "-Infinity", "1e400", "NaN", "-1e400")


async def test_non_finite_numbers_are_refused_as_invalid_number(settings_factory: Any) -> None:
    """Every protocol's numeric fields, given numbers that are not finite: a 400 with the
    reason ``invalid_number``, never a 500."""
    settings = _settings(settings_factory)
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        answers = []
        for value in NON_FINITE:
            answers.append(
                await http.post(
                    "/com.snowplowanalytics.snowplow/tp2",
                    headers=headers(),
                    content=json.dumps(
                        {
                            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/"
                            "jsonschema/1-0-4",
                            "data": [
                                {"e": "se", "aid": "sp.test", "se_ac": ac, "se_va": value}
                                | ({"se_pr": "EUR"} if ac == "purchase" else {})
                                for ac in ("purchase", "nps")
                            ],
                        }
                    ),
                )
            )
            answers.append(
                await http.post(
                    "/api/event",
                    headers=headers(),
                    content=json.dumps(
                        {
                            "n": "Purchase",
                            "u": "https://pl.test/",
                            "$": {"amount": value, "currency": "EUR"},
                        }
                    ),
                )
            )
            answers.append(
                await http.get(
                    "/v1/p.gif",
                    params={"site": "shop.test", "type": "purchase", "value": value},
                    headers=headers(),
                )
            )
        raw = await http.post(
            "/v1/events",
            headers=headers(),
            content=b'{"type":"purchase","site":"shop.test","value":1e400,"currency":"EUR"}',
        )
        answers.append(raw)
    for answer in answers:
        assert answer.status_code == 400, answer.text
        reasons = {r["reason"] for r in answer.json()["rejected"]}
        assert reasons == {"invalid_number"}, answer.text
