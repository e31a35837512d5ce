"""The collector over real HTTP (uvicorn), to the real broker and Redis, then the workers.

Every accepted event is read back from Kafka: on its owner partition, with a pseudonymous
visitor id and nothing but the contract's fields; every refusal carries its reason."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis

from kpistream.collector.privacy import SALT_LIFE_S, Salts, audience_id, customer_id, day_of
from kpistream.config.settings import Settings
from kpistream.contract.routing import owner, ownership_key
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from tests.support.collector_server import (
    CHROME,
    FIREFOX,
    SECRET,
    VISITOR_IP,
    read_topic,
    running_collector,
)
from tests.support.collector_server import headers as _headers
from tests.support.waits import wait_for_totals


def _settings(settings_factory: Any, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "collector_trusted_proxies": "127.0.0.1/32",
        "id_secret": SECRET,
        "collector_burst": 1000,
    }
    base.update(extra)
    settings: Settings = settings_factory(**base)
    return settings


def _pv(path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "page_view", "site": "shop.test", "path": path, **extra}


async def _salt(settings: Settings) -> bytes:
    client = aioredis.Redis.from_url(settings.redis)
    try:
        return await Salts(client, settings.redis_prefix).current()
    finally:
        await client.aclose()


async def test_our_contract_single_array_ndjson_and_pixel(settings_factory: Any) -> None:
    settings = _settings(settings_factory)
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        one = await http.post(
            "/v1/events", content=json.dumps(_pv("/a", event_id="e1")), headers=_headers()
        )
        many = await http.post(
            "/v1/events",
            content=json.dumps(
                [
                    _pv("/b", event_id="e2"),
                    {"type": "nope", "site": "shop.test"},
                    _pv("/c", event_id="e3", ts="soon"),
                ]
            ),
            headers=_headers(FIREFOX),
        )
        nd = await http.post(
            "/v1/events",
            content="\n".join(json.dumps(_pv(p, event_id=f"n{p}")) for p in ("/x", "/y")),
            headers=_headers(),
        )
        gif = await http.get(
            "/v1/p.gif",
            params={"site": "shop.test", "event_id": "g1"},
            headers={**_headers(), "Referer": "https://shop.test/p?utm_source=nl"},
        )
        records = await read_topic(settings, 5)
        salt = await _salt(settings)
    assert (one.status_code, one.json()) == (202, {"accepted": 1, "rejected": [], "dropped": {}})
    assert many.status_code == 400
    body = many.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (1, "unknown_type"),
        (2, "wrong_type"),
    ]
    assert nd.status_code == 202 and nd.json()["accepted"] == 2
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    chrome = audience_id(salt, "shop.test", VISITOR_IP, CHROME)
    firefox = audience_id(salt, "shop.test", VISITOR_IP, FIREFOX)
    by_id = {value["event_id"]: (partition, key, value) for partition, key, value in records}
    assert sorted(by_id) == ["e1", "e2", "g1", "n/x", "n/y"]
    for partition, key, value in by_id.values():
        visitor = firefox if value["event_id"] == "e2" else chrome
        assert value["visitor_id"] == visitor and key == visitor.encode()
        assert partition == owner(ownership_key("shop.test", visitor), settings.partitions)
        assert abs(value["ts"] - time.time() * 1000) < 60_000
    assert by_id["g1"][2]["url"] == "https://shop.test/p?utm_source=nl"
    assert by_id["g1"][2]["utm_source"] == "nl"
    raw = b"".join(msgspec.json.encode(v) for _, _, v in records)
    assert VISITOR_IP.encode() not in raw


async def test_plausible_and_snowplow_protocols_map_onto_the_contract(
    settings_factory: Any, workers: Any
) -> None:
    settings = _settings(settings_factory)
    ue = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {
            "schema": "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
            "data": {"targetUrl": "https://elsewhere.test/", "elementId": "promo"},
        },
    }
    ue_px = base64.urlsafe_b64encode(json.dumps(ue).encode()).decode().rstrip("=")
    common = {"tv": "js-4.10.1", "p": "web", "aid": "sp.test", "duid": "cookie-id"}
    tp2 = {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": [
            {**common, "e": "pv", "eid": "s1", "url": "https://sp.test/?utm_medium=email"},
            {
                **common,
                "e": "se",
                "eid": "s2",
                "se_ca": "shop",
                "se_ac": "add_to_cart",
                "se_la": "chair-1",
                "se_va": "49.5",
                "se_pr": "EUR",
            },
            {**common, "e": "ue", "eid": "s3", "ue_px": ue_px},
            {
                **common,
                "e": "se",
                "eid": "s4",
                "se_ca": "shop",
                "se_ac": "purchase",
                "se_la": "o-1",
                "se_va": "49.5",
                "se_pr": "EUR",
            },
            {**common, "e": "xx", "eid": "s5"},
        ],
    }
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        pv = await http.post(
            "/api/event",
            headers=_headers(),
            content=json.dumps(
                {"n": "pageview", "u": "https://pl.test/", "d": "pl.test", "r": None}
            ),
        )
        buy = await http.post(
            "/api/event",
            headers=_headers(),
            content=json.dumps(
                {
                    "name": "Purchase",
                    "url": "https://pl.test/thanks",
                    "domain": "pl.test",
                    "revenue": {"amount": "12.50", "currency": "EUR"},
                }
            ),
        )
        odd = await http.post(
            "/api/event",
            headers=_headers(),
            content=json.dumps({"n": "Newsletter", "u": "https://pl.test/"}),
        )
        bad = await http.post("/api/event", headers=_headers(), content=json.dumps({"u": "x"}))
        sp = await http.post(
            "/com.snowplowanalytics.snowplow/tp2", headers=_headers(), content=json.dumps(tp2)
        )
        pixel = await http.get(
            "/i",
            headers=_headers(),
            params={**common, "e": "pp", "eid": "s6", "url": "https://sp.test/"},
        )
        records = await read_topic(settings, 7)
    assert (pv.status_code, pv.text) == (202, "ok")
    assert (buy.status_code, buy.text) == (202, "ok")
    assert (odd.status_code, odd.headers.get("x-plausible-dropped")) == (202, "1")
    assert bad.status_code == 400 and bad.json()["rejected"][0]["reason"] == "missing_field"
    assert sp.status_code == 200 and sp.text == "ok"
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    events = {v["event_id"]: v for _, _, v in records if v["site"] == "sp.test"}
    plausible = sorted((v["type"], v.get("value")) for _, _, v in records if v["site"] == "pl.test")
    assert plausible == [("page_view", None), ("purchase", 12.5)]
    assert {k: v["type"] for k, v in events.items()} == {
        "s1": "page_view",
        "s2": "add_to_cart",
        "s3": "click",
        "s4": "purchase",
        "s6": "engagement",
    }
    assert events["s1"]["utm_medium"] == "email"
    assert (events["s2"]["item_id"], events["s2"]["value"], events["s2"]["currency"]) == (
        "chair-1",
        49.5,
        "EUR",
    )
    assert (events["s3"]["item_kind"], events["s3"]["item_id"]) == ("cta", "promo")
    assert events["s4"]["order_id"] == "o-1"
    # Without a consent signal the tracker's cookie id is not used: audience zone.
    assert all(v["visitor_id"].startswith("a-") for v in events.values())
    # The workers count what the mapping promises.
    await workers(settings)
    await wait_for_totals(
        settings,
        {
            fields.field(K.ORDERS.code, "pl.test", "EUR"): 1,
            fields.field(K.ORDERS.code, "sp.test", "EUR"): 1,
            fields.field(K.PAGE_VIEWS.code, "sp.test"): 1,
        },
    )


async def test_privacy_signals_bots_consent_and_origins(settings_factory: Any) -> None:
    settings = _settings(settings_factory, collector_origins="shop.test=https://cdn.test")
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        gpc = await http.post(
            "/v1/events",
            headers=_headers(**{"Sec-GPC": "1"}),
            content=json.dumps(_pv("/gpc", event_id="gpc")),
        )
        dnt = await http.post(
            "/api/event",
            headers=_headers(DNT="1"),
            content=json.dumps({"n": "pageview", "u": "https://shop.test/dnt"}),
        )
        bot = await http.post(
            "/v1/events",
            headers=_headers("curl/8.5.0"),
            content=json.dumps(_pv("/bot", event_id="bot")),
        )
        headless = await http.post(
            "/v1/events",
            headers=_headers(CHROME.replace("Chrome/", "HeadlessChrome/")),
            content=json.dumps(_pv("/headless", event_id="headless")),
        )
        no_consent = await http.post(
            "/v1/events",
            headers=_headers(),
            content=json.dumps(_pv("/c", event_id="nc", visitor_id="crm-42")),
        )
        consented = await http.post(
            "/v1/events",
            headers=_headers(),
            content=json.dumps(
                _pv("/c", event_id="yes", visitor_id="crm-42", consent=True, session_id="s-1")
            ),
        )
        e_mail = await http.post(
            "/v1/events",
            headers=_headers(),
            content=json.dumps(
                _pv("/c", event_id="mail", visitor_id="ann@example.com", consent=True)
            ),
        )
        foreign = await http.post(
            "/v1/events",
            headers=_headers(Origin="https://evil.test"),
            content=json.dumps(_pv("/o", event_id="evil")),
        )
        own = await http.post(
            "/v1/events",
            headers=_headers(Origin="https://www.shop.test"),
            content=json.dumps(_pv("/o", event_id="own")),
        )
        cdn = await http.post(
            "/v1/events",
            headers=_headers(Origin="https://cdn.test"),
            content=json.dumps(_pv("/o", event_id="cdn")),
        )
        preflight = await http.options(
            "/com.snowplowanalytics.snowplow/tp2",
            headers={"Origin": "https://cdn.test", "Access-Control-Request-Method": "POST"},
        )
        forgetting = await http.post(
            "/v1/events",
            headers=_headers(),
            content=json.dumps(
                {"type": "forget", "site": "shop.test", "visitor_id": "x", "consent": True}
            ),
        )
        gpc_json = await http.get("/.well-known/gpc.json")
        metrics = (await http.get("/metrics")).text
        records = await read_topic(settings, 4)
    for response in (gpc, dnt, bot, headless):
        assert response.status_code == 202, response.text
    assert gpc.json()["dropped"] == {"gpc": 1} and dnt.text == "ok"
    assert bot.json()["dropped"] == {"bot": 1} and headless.json()["dropped"] == {"bot": 1}
    assert no_consent.json()["rejected"][0]["reason"] == "consent_required"
    assert consented.status_code == 202 and e_mail.status_code == 202
    assert foreign.json()["rejected"][0]["reason"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in foreign.headers
    assert own.headers["access-control-allow-origin"] == "https://www.shop.test"
    assert own.headers["access-control-allow-credentials"] == "true"
    assert cdn.status_code == 202
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://cdn.test"
    assert "sp-anonymous" in preflight.headers["access-control-allow-headers"]
    assert forgetting.json()["rejected"][0]["reason"] == "unknown_type"
    assert gpc_json.json()["gpc"] is True
    ids = {v["event_id"]: v for _, _, v in records}
    assert sorted(ids) == ["cdn", "mail", "own", "yes"]
    assert ids["yes"]["visitor_id"] == customer_id(SECRET, "shop.test", "crm-42")
    assert ids["yes"]["session_id"].startswith("s-") and "s-1" != ids["yes"]["session_id"]
    assert ids["mail"]["visitor_id"] == customer_id(SECRET, "shop.test", "ann@example.com")
    assert b"example.com" not in b"".join(msgspec.json.encode(v) for v in ids.values())
    for reason in ("gpc", "dnt", "bot"):
        assert f'reason="{reason}"' in metrics
    rejected = 'kpistream_collector_events_rejected_total{protocol="kpistream",reason="%s"} 1.0'
    assert rejected % "consent_required" in metrics


async def test_write_keys_limits_and_rate(settings_factory: Any) -> None:
    settings = _settings(
        settings_factory,
        collector_write_keys="api.test=k-123",
        collector_burst=30,
        collector_rate=0.01,
        collector_max_events=3,
    )
    old_ts = int(time.time() * 1000) - 3_600_000
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        keyless = await http.post(
            "/v1/events", headers=_headers(), content=json.dumps({**_pv("/k"), "site": "api.test"})
        )
        wrong = await http.post(
            "/v1/events",
            headers=_headers(Authorization="Bearer nope"),
            content=json.dumps({**_pv("/k"), "site": "api.test"}),
        )
        keyed = await http.post(
            "/v1/events",
            headers=_headers(Authorization="Bearer k-123"),
            content=json.dumps({**_pv("/k"), "site": "api.test", "event_id": "old", "ts": old_ts}),
        )
        browser_old = await http.post(
            "/v1/events",
            headers=_headers(),
            content=json.dumps(_pv("/k", event_id="clamped", ts=old_ts)),
        )
        too_many = await http.post(
            "/v1/events", headers=_headers(), content=json.dumps([_pv("/m")] * 4)
        )
        too_big = await http.post("/v1/events", headers=_headers(), content=b" " * (65 * 1024))
        records = await read_topic(settings, 2)
        statuses = [
            (await http.post("/v1/events", headers=_headers(), content=b"[]")).status_code
            for _ in range(30)
        ]
        limited = await http.post("/v1/events", headers=_headers(), content=b"[]")
    assert keyless.json()["rejected"][0]["reason"] == "write_key_required"
    assert wrong.json()["rejected"][0]["reason"] == "write_key_invalid"
    assert keyed.status_code == 202 and browser_old.status_code == 202
    ts = {v["event_id"]: v["ts"] for _, _, v in records}
    assert ts["old"] == old_ts  # a keyed server may backfill
    assert ts["clamped"] > old_ts + 3_000_000  # a browser's clock is replaced
    assert too_many.status_code == 400 and too_many.json()["rejected"][0]["reason"] == (
        "too_many_events"
    )
    assert too_big.status_code == 413
    assert 429 in statuses and limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


async def test_backpressure_answers_503_and_loses_nothing(settings_factory: Any) -> None:
    settings = _settings(settings_factory, collector_queue=2)
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        full = await http.post(
            "/v1/events", headers=_headers(), content=json.dumps([_pv(f"/{i}") for i in range(3)])
        )
        fits = await http.post(
            "/v1/events", headers=_headers(), content=json.dumps([_pv(f"/{i}") for i in range(2)])
        )
        health = (await http.get("/healthz")).json()
        metrics = (await http.get("/metrics")).text
    assert full.status_code == 503 and full.json()["error"] == "queue_full"
    assert full.headers["retry-after"] == "1"
    assert fits.status_code == 202
    assert health == {"status": "ok", "queue": 0, "queue_capacity": 2}
    assert 'reason="queue_full"} 3.0' in metrics


async def test_kafka_down_is_503_with_retry_after(settings_factory: Any, tmp_path: Any) -> None:
    from kpistream import runtime

    broker = runtime.start_broker(tmp_path)
    settings = _settings(settings_factory, kafka=broker.address, collector_ack_timeout_s=1.0)
    try:
        async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
            ok = await http.post("/v1/events", headers=_headers(), content=json.dumps(_pv("/")))
            broker.process.send_signal(19)  # SIGSTOP: the broker answers nothing
            try:
                stalled = await http.post(
                    "/v1/events",
                    headers=_headers(),
                    content=json.dumps(_pv("/", event_id="late")),
                    timeout=10,
                )
                backlog = (await http.get("/healthz")).json()["queue"]
            finally:
                broker.process.send_signal(18)  # SIGCONT
    finally:
        broker.stop()
    assert ok.status_code == 202
    assert stalled.status_code == 503 and stalled.json()["error"] == "kafka_timeout"
    assert stalled.headers["retry-after"] == "5"
    assert backlog <= 1  # the one unacknowledged event, bounded


async def test_salts_rotate_daily_and_expire(settings_factory: Any) -> None:
    settings = _settings(settings_factory)
    client = aioredis.Redis.from_url(settings.redis)
    try:
        now = time.time()
        a, b = Salts(client, settings.redis_prefix), Salts(client, settings.redis_prefix)
        today, also_today = await a.current(now), await b.current(now)
        tomorrow = await a.current(now + 86_400)
        ttl = await client.ttl(a.key(day_of(now)))
    finally:
        await client.aclose()
    assert today == also_today and len(today) == 32  # one salt per day for every collector
    assert tomorrow != today
    assert 0 < ttl <= SALT_LIFE_S and ttl > SALT_LIFE_S - 86_400 - 60


async def test_redis_down_is_503_not_a_traceback(settings_factory: Any) -> None:
    from kpistream.runtime import free_port

    settings = _settings(settings_factory, redis=f"redis://127.0.0.1:{free_port()}/0")
    async with running_collector(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/events", headers=_headers(), content=json.dumps(_pv("/")))
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 503 and response.json() == {"error": "redis_unavailable"}
    assert response.headers["retry-after"] == "5"
    assert 'reason="redis_unavailable"} 1.0' in metrics
