"""Every KPI through the real broker, worker, Redis and exporter, against hand-computed values."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from kpistream.produce import produce
from kpistream.runtime import ensure_topics
from kpistream.streams.registry import SOCIAL
from kpistream.streams.social import SocialLogic
from tests.support import known_events as K
from tests.support import kpi_events as KE
from tests.support.stack import on_cluster, require_binary
from tests.support.waits import scrape_samples, scrape_text, wait_for_totals


@pytest.fixture(params=["redis", "cluster"])
def settings_factory(request, settings_factory):  # type: ignore[no-untyped-def]
    """Every KPI test here runs on one redis-server and on a Redis Cluster."""
    if request.param == "redis":
        return settings_factory
    return on_cluster(settings_factory, request.getfixturevalue("redis_cluster"))


async def test_every_web_kpi_is_exact_and_carts_are_decided_without_later_events(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    # idle_after_s=1: once the partitions go quiet their watermark follows the wall clock, so
    # B's cart is decided abandoned although no later event ever arrives.
    settings = settings_factory(idle_after_s=1)
    await ensure_topics(settings)
    await workers(settings)
    await produce(settings, KE.LINES)
    await wait_for_totals(settings, {"end\x1fshop": KE.SHOP_SESSIONS}, timeout_s=30)
    text = await scrape_text(settings)
    got = K.samples(text)
    assert got[("kpistream_events_processed_total", ())] == len(KE.EVENTS)
    K.assert_matches(got, KE.EXPECTED)
    # Prometheus' own filter: only the families named, with the same samples.
    wanted = {"kpi_bounce_rate", "kpi_sessions_total", "kpistream_events_processed_total"}
    query = "&".join(f"name[]={name}" for name in sorted(wanted))
    filtered = K.samples(await scrape_text(settings, query))
    assert {name for name, _ in filtered} == wanted
    assert filtered == {key: value for key, value in got.items() if key[0] in wanted}
    # Every (KPI, window) pair exported has a hand-computed value: no window reads nothing.
    exported = {(name, dict(labels)["window"]) for name, labels in got if "window" in dict(labels)}
    covered = {(name, dict(labels).get("window")) for name, labels in KE.EXPECTED}
    assert exported <= covered, sorted(exported - covered)
    promtool = require_binary("promtool", "prometheus")
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text.encode(), capture_output=True
    )
    assert check.returncode == 0 and check.stdout == check.stderr == b"", check


async def test_social_engagement_followers_and_post_impressions(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """instagram/acme: snapshot 100 at T, +3 follows, -1 unfollow, a follow older than the
    snapshot (ignored), then snapshot 110 at T+60s and one follow: 111 followers.
    4 likes + 2 comments + 1 share = 7 -> 7/111. Post impressions 120 + 30.
    instagram/beta: 2 likes, no snapshot -> no follower count, no rate."""
    settings = settings_factory()
    await ensure_topics(settings)
    await workers(settings, logic=SocialLogic(settings), group_id=SOCIAL.group(settings))
    t = K.T
    n = iter(range(1000))

    def social(kind: str, at_s: int, account: str = "acme", **fields: object) -> bytes:
        return json.dumps(
            {
                "event_id": f"s{next(n)}",
                "type": kind,
                "ts": t + at_s * 1000,
                "network": "instagram",
                "account": account,
                **fields,
            }
        ).encode()

    lines = [
        social("followers_snapshot", 0, followers=100),
        *(social("follow", s) for s in (10, 11, 12)),
        social("unfollow", 20),
        social("follow", -5),
        social("followers_snapshot", 60, followers=110),
        social("follow", 70),
        *(social("like", 80 + i, post_id="p1") for i in range(4)),
        *(social("comment", 90 + i, post_id="p1") for i in range(2)),
        social("share", 95, post_id="p1"),
        social("post_impression", 96, post_id="p1", count=120),
        social("post_impression", 97, post_id="p1", count=30),
        *(social("like", 98 + i, "beta", post_id="p2") for i in range(2)),
    ]
    await produce(settings, lines)
    await wait_for_totals(settings, {"_processed": len(lines)})
    got = await scrape_samples(settings)
    acme = (("account", "acme"), ("network", "instagram"))
    day = (*acme, ("window", "24h"))
    assert got[("kpi_followers", acme)] == 111
    assert got[("kpi_social_engagement_rate", day)] == pytest.approx(7 / 111, abs=1e-12)
    assert got[("kpi_post_impressions", day)] == 150
    assert got[("kpi_likes", day)] == 4
    assert got[("kpi_follows_total", acme)] == 5 and got[("kpi_unfollows_total", acme)] == 1
    beta = (("account", "beta"), ("network", "instagram"))
    assert got[("kpi_likes", (*beta, ("window", "24h")))] == 2
    assert ("kpi_followers", beta) not in got
    assert ("kpi_social_engagement_rate", (*beta, ("window", "24h"))) not in got
    # Every (KPI, window) pair exported, against its hand-computed value: the events span
    # 98 s, so every rolling window ending at the watermark holds all of them, and no KPI of
    # theirs is exported over the long window, which holds none of them (it read 0.0).
    by_window = {
        (name, labels): value
        for (name, labels), value in got.items()
        if name.startswith("kpi_") and "window" in dict(labels)
    }
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for window in settings.window_minutes():
        for account, values in (
            (acme, {"likes": 4, "comments": 2, "shares": 1, "post_impressions": 150}),
            (beta, {"likes": 2}),
        ):
            for stem, value in values.items():
                expected[(f"kpi_{stem}", (*account, ("window", window)))] = value
        expected[("kpi_social_engagement_rate", (*acme, ("window", window)))] = 7 / 111
    assert by_window.keys() == expected.keys()
    for key, want in expected.items():
        assert by_window[key] == pytest.approx(want, abs=1e-12), key


async def test_100k_distinct_campaigns_stay_within_the_label_budget(  # type: ignore[no-untyped-def]
    settings_factory, workers
) -> None:
    """Labels never explode: 100,000 campaign names, a budget of 20 named values, the rest
    folded into `other`, and every impression still counted."""
    settings = settings_factory(max_campaigns=20, batch_max_records=5000)
    await ensure_topics(settings)
    await workers(settings)
    t = K.T
    lines = [
        json.dumps(
            {
                "event_id": f"f{i}",
                "type": "impression",
                "ts": t + i,
                "site": "shop",
                "visitor_id": f"v{i % 500}",
                "item_kind": "ad",
                "item_id": "a",
                "campaign": f"campaign-{i}",
            }
        ).encode()
        for i in range(100_000)
    ]
    await produce(settings, lines)
    await wait_for_totals(settings, {"_processed": len(lines)}, timeout_s=120)
    got = await scrape_samples(settings)
    counted = {
        dict(labels)["campaign"]: v
        for (name, labels), v in got.items()
        if name == "kpi_impressions_total"
    }
    assert "other" in counted
    assert len(counted) - 1 <= 20  # named campaigns within the budget, plus `other`
    assert sum(counted.values()) == 100_000  # folded, not dropped
    windows = {
        dict(labels)["campaign"] for (name, labels), _ in got.items() if name == "kpi_impressions"
    }
    assert windows <= set(counted)
    # Every distinct value refused a slot is counted once: 100,000 - the 20 admitted, within
    # 3% (Redis' HyperLogLog has a standard error of 0.81%). Only ~1,000 per 30 s were
    # counted before: the values that waited for a retry.
    refused = got[("kpistream_label_refused_values", (("dimension", "campaign"),))]
    assert abs(refused - 99_980) <= 0.03 * 99_980, refused
