"""The demo shop in Debian's headless Chromium, instrumented with kpistream.js, the official
Plausible tracker and the official Snowplow browser tracker (npm, pinned): scripted visits
end as exact KPIs on /metrics, the GPC visit nowhere, and no IP address in Kafka, Redis or
the logs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any

import msgspec
import pytest

from kpistream.collector.routes import create_app
from kpistream.collector.sender import Sender
from kpistream.collector.shop import HERE, create_shop, vendor_installed
from kpistream.config.settings import Settings
from tests.support.collector_server import read_topic, running_collector, serving
from tests.support.known_events import samples
from tests.support.privacy import redis_dump
from tests.support.stack import require_binary
from tests.support.waits import scrape_text, wait_until

pytestmark = pytest.mark.slow

UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/130.0.0.0 Safari/537.36"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-blink-features=AutomationControlled",  # the Plausible tracker refuses webdriver
    "--host-resolver-rules=MAP *.test 127.0.0.1",
]


class Watched(Sender):
    """The real sender, noting what it handed to Kafka so the test can wait for it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.seen: list[dict[str, Any]] = []

    async def send(self, events: Any) -> None:
        await super().send(events)
        self.seen += [msgspec.json.decode(value) for _, _, value in events]

    def count(self, site: str, kind: str) -> int:
        """Distinct events (by event_id) of a kind: a tracker's resend of an event whose answer
        it did not see must not let a step go on before that step's own event arrived."""
        return len({e["event_id"] for e in self.seen if e["site"] == site and e["type"] == kind})


def serving_shop(collector_url: str) -> contextlib.AbstractAsyncContextManager[int]:
    return serving(create_shop(collector_url), "shop")


async def visits(
    chromium: Any, executable: str, shop: str, sender: Watched, site: str, dropped_gpc: Any
) -> None:
    """Six visits, each a new visitor (its own User-Agent), waiting for each step's events."""

    async def step(page: Any, kind: str, n: int, action: Any) -> None:
        await action()
        await wait_until(
            f"{n} {kind} of {site}", lambda: sender.count(site, kind) >= n, timeout_s=30
        )

    async def visit(number: int, gpc: bool = False) -> Any:
        # A browser per visit, its User-Agent set for all its requests: the audience zone's
        # visitor is (site, IP, User-Agent), and requests sent while a page unloads do not
        # carry a per-context override.
        launched = await chromium.launch(
            executable_path=executable, args=[*ARGS, f"--user-agent={UA} visit/{number}"]
        )
        context = await launched.new_context(extra_http_headers={"Sec-GPC": "1"} if gpc else None)
        if gpc:  # what a browser with GPC on shows its pages too
            await context.add_init_script(
                "Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})"
            )
        return launched, await context.new_page()

    # 1. a bounce: the home page (its banner is seen), nothing else
    browser, page = await visit(1)
    await step(page, "page_view", 1, lambda: page.goto(f"{shop}/"))
    await wait_until("banner seen", lambda: sender.count(site, "impression") >= 1)
    await browser.close()
    # 2. a multi-page visit
    browser, page = await visit(2)
    await step(page, "page_view", 2, lambda: page.goto(f"{shop}/"))
    await wait_until("banner seen", lambda: sender.count(site, "impression") >= 2)
    await step(page, "page_view", 3, lambda: page.goto(f"{shop}/product/1"))
    await step(page, "page_view", 4, lambda: page.goto(f"{shop}/cart"))
    await browser.close()
    # 3. the banner seen and clicked
    browser, page = await visit(3)
    await step(page, "page_view", 5, lambda: page.goto(f"{shop}/"))
    await wait_until("banner seen", lambda: sender.count(site, "impression") >= 3)
    await step(page, "click", 1, lambda: page.click("#banner"))
    await wait_until("product page", lambda: sender.count(site, "page_view") >= 6)
    await browser.close()
    # 4. a cart abandoned
    browser, page = await visit(4)
    await step(page, "page_view", 7, lambda: page.goto(f"{shop}/product/1"))
    await step(page, "add_to_cart", 1, lambda: page.click("#add"))
    await browser.close()
    # 5. a purchase
    browser, page = await visit(5)
    await step(page, "page_view", 8, lambda: page.goto(f"{shop}/product/1"))
    await step(page, "add_to_cart", 2, lambda: page.click("#add"))
    await step(page, "page_view", 9, lambda: page.goto(f"{shop}/cart"))
    await step(page, "checkout_start", 1, lambda: page.click("#checkout"))
    await step(page, "page_view", 10, lambda: page.goto(f"{shop}/checkout"))
    await step(page, "purchase", 1, lambda: page.click("#buy"))
    await browser.close()
    # 6. a single-page app: three views without a page load
    browser, page = await visit(6)
    await step(page, "page_view", 11, lambda: page.goto(f"{shop}/app"))
    await step(page, "page_view", 12, lambda: page.click("#tab-a"))
    await step(page, "page_view", 13, lambda: page.click("#tab-b"))
    await browser.close()
    # 7. GPC: kpistream.js sends nothing; the official trackers send, with Sec-GPC, and the
    # collector drops those events, counting only the reason
    browser, page = await visit(7, gpc=True)
    await page.goto(f"{shop}/product/1")
    await page.click("#add")
    await wait_until(
        "the GPC visit's events refused",
        lambda: dropped_gpc() >= 2 or (site.startswith("kpistream")),
        timeout_s=30,
    )
    # Playwright's header does not reach requests sent while a page unloads (a GPC browser's
    # would carry it): leave offline.
    await page.context.set_offline(True)
    await browser.close()


#: What the six visits must give, whichever tracker sent them (docs/collector.md).
def expected(site: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        ("kpi_page_views_total", (("site", site),)): 13,
        ("kpi_sessions_total", (("site", site),)): 6,
        ("kpi_non_bounced_sessions_total", (("site", site),)): 5,
        (
            "kpi_impressions_total",
            (("campaign", "spring"), ("item_kind", "banner"), ("site", site)),
        ): 3,
        ("kpi_clicks_total", (("campaign", "spring"), ("item_kind", "banner"), ("site", site))): 1,
        ("kpi_orders_total", (("currency", "EUR"), ("site", site))): 1,
        ("kpi_revenue_total", (("currency", "EUR"), ("site", site))): 49.5,
        ("kpi_carts_abandoned_total", (("site", site),)): 1,
        ("kpi_checkouts_abandoned_total", (("site", site),)): 0,
    }


@pytest.mark.parametrize("tracker", ["kpistream", "plausible", "snowplow"])
async def test_shop_visits_become_exact_kpis(
    tracker: str, settings_factory: Any, workers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    chromium = require_binary("chromium", "chromium")
    if tracker != "kpistream" and not vendor_installed(HERE / "node_modules"):
        if os.environ.get("CI") == "true":
            pytest.fail("the official trackers are missing under CI: make shop-deps (npm)")
        pytest.skip("the official trackers are not installed: make shop-deps (needs npm)")
    from playwright.async_api import async_playwright

    caplog.set_level(logging.DEBUG)
    logging.getLogger("aiokafka").setLevel(logging.INFO)
    settings: Settings = settings_factory(
        collector_allow_headless=True,
        collector_rate=1000,  # every visit comes from 127.0.0.1
        collector_burst=1000,
        session_gap_s=10,
        # Snowplow stamps an event when tracked and sends one request at a time: an event can
        # reach the worker a second after its time, once an idle partition's watermark has
        # moved on. 5 s of lateness keeps such an event counted; it decides carts 5 s later.
        allowed_lateness_s=5,
        idle_after_s=1,
    )
    site = f"{tracker}.shop.test"
    sender = Watched(settings)
    app = create_app(settings, sender=sender)

    def dropped_gpc() -> float:
        value = app.state.collector.metrics.registry.get_sample_value(
            "kpistream_collector_events_dropped_total", {"protocol": tracker, "reason": "gpc"}
        )
        return float(value or 0)

    async with running_collector(settings, app) as url:
        port = url.rsplit(":", 1)[1]
        await workers(settings)
        async with (
            serving_shop(f"http://collector.test:{port}") as shop_port,
            async_playwright() as pw,
        ):
            await visits(
                pw.chromium, chromium, f"http://{site}:{shop_port}", sender, site, dropped_gpc
            )
        want = expected(site)
        got: dict[Any, float] = {}

        late = 0.0

        async def exact() -> bool:
            nonlocal got, late
            served = samples(await scrape_text(settings))
            got = {k: served.get(k, 0.0) for k in want}
            late = served.get(("kpistream_events_late_total", ()), 0.0)
            return got == want

        try:
            await wait_until("the KPIs on /metrics", exact, timeout_s=60)
        except AssertionError:
            seen = [(e["visitor_id"][:8], e["type"], e["ts"] % 100000) for e in sender.seen]
            raise AssertionError(
                f"{site}: got {got}, want {want}; {late:.0f} late; {seen}"
            ) from None
        gpc = dropped_gpc()
        if tracker == "kpistream":
            assert gpc == 0  # nothing was even sent
        else:
            assert gpc is not None and gpc >= 2  # its page view and its add to cart
        records = await read_topic(settings, len(sender.seen))
    # Nothing of the GPC visit went on: two carts (visits 4 and 5), not three.
    assert sender.count(site, "add_to_cart") == 2
    await assert_no_ip(settings, [v for _, _, v in records], caplog.text)


async def assert_no_ip(settings: Settings, values: list[dict[str, Any]], logs: str) -> None:
    """No IP address (the visitors' was 127.0.0.1) in Kafka's records, Redis or the logs."""
    assert values, "no records to scan"
    stored = await redis_dump(settings)
    for where, text in (
        ("Kafka", msgspec.json.encode(values)),
        ("Redis", stored),
        ("the logs", logs.encode()),
    ):
        assert b"127.0.0.1" not in text, f"an IP address in {where}"


async def test_our_script_sends_nothing_under_gpc_in_the_browser(settings_factory: Any) -> None:
    chromium = require_binary("chromium", "chromium")
    from playwright.async_api import async_playwright

    settings: Settings = settings_factory(collector_allow_headless=True)
    async with running_collector(settings) as url:
        port = url.rsplit(":", 1)[1]
        async with (
            serving_shop(f"http://collector.test:{port}") as shop_port,
            async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=chromium, args=ARGS)
            try:
                context = await browser.new_context()
                await context.add_init_script(
                    "Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})"
                )
                page = await context.new_page()
                sent: list[str] = []
                page.on("request", lambda r: sent.append(r.url) if "/v1/events" in r.url else None)
                await page.goto(f"http://kpistream.shop.test:{shop_port}/product/1")
                await page.click("#add")
                script = await page.evaluate("typeof window.kpi")
                await page.evaluate("new Promise(r => setTimeout(r, 300))")  # past the 50 ms batch
            finally:
                await browser.close()
    assert script == "function" and sent == []


async def test_our_script_retries_with_the_same_event_ids(settings_factory: Any) -> None:
    chromium = require_binary("chromium", "chromium")
    from playwright.async_api import async_playwright

    settings: Settings = settings_factory(collector_allow_headless=True)
    sender = Watched(settings)
    app = create_app(settings, sender=sender)
    site = "kpistream.shop.test"
    bodies: list[list[dict[str, Any]]] = []

    async def busy_once(route: Any) -> None:
        bodies.append(json.loads(route.request.post_data))
        if len(bodies) == 1:
            await route.fulfill(status=503, body="busy")  # as when the backlog is full
        else:
            await route.continue_()

    async with running_collector(settings, app) as url:
        port = url.rsplit(":", 1)[1]
        async with (
            serving_shop(f"http://collector.test:{port}") as shop_port,
            async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=chromium, args=ARGS)
            try:
                page = await browser.new_page()
                await page.route("**/v1/events", busy_once)
                await page.goto(f"http://{site}:{shop_port}/product/1")
                await wait_until(
                    "the page view, retried",
                    lambda: sender.count(site, "page_view") >= 1,
                    timeout_s=30,
                )
            finally:
                await browser.close()
    assert len(bodies) >= 2
    first, retried = bodies[0], bodies[1]
    assert [e["type"] for e in first] == ["page_view"]
    assert retried == first  # the same body: the same event_id, deduplicated downstream
    views = [e["event_id"] for e in sender.seen if e["type"] == "page_view"]
    assert views == [first[0]["event_id"]]  # (leaving may add an engagement event)
