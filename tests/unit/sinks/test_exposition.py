"""The exporter's whole exposition text for a pinned store snapshot (client_python style).

The snapshot is written by hand; the values below are computed by hand from it, and the full
text is compared with ``exposition.txt`` so that any change to a name, a help text, a label
or a sample shows in review. Regenerate that file only for an intended change:
``python -m tests.unit.sinks.test_exposition > tests/unit/sinks/exposition.txt``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kpistream.contract import health as H
from kpistream.contract.read_model import LabelUse, PartitionStatus, StoreSnapshot
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import field
from kpistream.sinks.kpi_collector import KpiCollector

GOLDEN = Path(__file__).with_name("exposition.txt")


def _counts(*pairs: tuple[str, int]) -> Counter[str]:
    return Counter(dict(pairs))


def pinned() -> StoreSnapshot:
    shop = "shop.example"
    item = ("banner", "spring")
    window = _counts(
        (field(K.SESSIONS.code, shop), 4),
        (field(K.BOUNCES.code, shop), 1),
        (field(K.ENGAGED.code, shop), 2),
        (field(K.PAGE_VIEWS.code, shop), 9),
        (field(K.IMPRESSIONS.code, shop, *item), 200),
        (field(K.CLICKS.code, shop, *item), 5),
        (field(K.CONVERSIONS.code, shop, "purchase"), 1),
        (field(K.REVENUE.code, shop, "EUR"), 49_500_000),
        (field(K.ORDERS.code, shop, "EUR"), 1),
        (field(K.ENDED.code, shop), 3),
        (field(K.DURATION.code, shop), 90_000),
        (field(K.CART_ABANDONED.code, shop), 1),
        (field(K.CART_COMPLETED.code, shop), 1),
        (field(K.NPS_ANSWERS.code, shop), 4),
        (field(K.NPS_PROMOTERS.code, shop), 2),
        (field(K.NPS_DETRACTORS.code, shop), 1),
        (field(K.NEW_VISITORS.code, shop), 1),
        (field(K.LIKES.code, "x", "acme"), 30),
    )
    totals = _counts(
        (field(K.SESSIONS.code, shop), 4),
        (field(K.NON_BOUNCED.code, shop), 3),
        (field(K.PAGE_VIEWS.code, shop), 9),
        (field(K.CLICKS.code, shop, *item), 5),
        (field(K.IMPRESSIONS.code, shop, *item), 200),
        (field(K.REVENUE.code, shop, "EUR"), 49_500_000),
        (field(K.ORDERS.code, shop, "EUR"), 1),
    )
    health = _counts((H.PROCESSED, 21), (field(H.REJECTED, "malformed_json"), 1))
    return StoreSnapshot(
        watermark_ms=1_763_800_200_000,
        totals=totals,
        windows={"1h": window},
        partitions=1,
        uniques={"1h": _counts((shop, 3))},
        gauges=_counts((field(K.FOLLOWERS.code, "x", "acme"), 1000)),
        fenced_writes=2,
        state_resets=0,
        partition_status={"clickstream:0": PartitionStatus(25, None, 30, False)},
        labels={"campaign": LabelUse(budget=100, admitted=1, refused=0)},
        health=health,
    )


def exposition() -> str:
    registry = CollectorRegistry()
    # The broker's ends: partition 0 is further than its owner reported (30), partition 1
    # was never claimed by a worker.
    ends = {("clickstream", 0): 32, ("clickstream", 1): 7}
    registry.register(KpiCollector(pinned, cache_s=0, ends=lambda: ends))
    return generate_latest(registry).decode()


def test_the_exposition_text_is_exactly_the_pinned_one() -> None:
    assert exposition() == GOLDEN.read_text()


def test_the_pinned_values_are_the_hand_computed_ones() -> None:
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition())
        for s in family.samples
    }

    def site(metric: str, **labels: str) -> float:
        return got[
            metric, tuple(sorted({"site": "shop.example", "window": "1h", **labels}.items()))
        ]

    assert site("kpi_bounce_rate") == 0.25  # 1 of 4 sessions
    assert site("kpi_engagement_rate") == 0.5  # 2 of 4
    assert site("kpi_click_through_rate", item_kind="banner", campaign="spring") == 0.025
    assert site("kpi_conversion_rate", goal="purchase") == 0.25
    assert site("kpi_pages_per_session") == 2.25  # 9 / 4
    assert site("kpi_time_on_site_seconds") == 30.0  # 90 s over 3 ended sessions
    assert site("kpi_cart_abandonment_rate") == 0.5  # 1 abandoned, 1 completed
    assert site("kpi_average_order_value", currency="EUR") == 49.5
    assert site("kpi_net_promoter_score") == 25.0  # 100 * (2 - 1) / 4
    assert site("kpi_visitors", kind="returning") == 2.0  # 3 unique, 1 new
    social = (("account", "acme"), ("network", "x"), ("window", "1h"))
    assert got["kpi_social_engagement_rate", social] == 0.03  # 30 likes / 1000 followers
    assert got["kpistream_events_processed_total", ()] == 21  # from the health hash
    assert got["kpistream_events_rejected_total", (("reason", "malformed_json"),)] == 1
    assert got["kpi_revenue_total", (("currency", "EUR"), ("site", "shop.example"))] == 49.5
    # Paired counters start at 0 where their pair exists; a bounce rate is never a counter.
    assert got["kpi_orders_total", (("currency", "EUR"), ("site", "shop.example"))] == 1.0
    assert got["kpi_engaged_sessions_total", (("site", "shop.example"),)] == 0.0
    assert not any(name.startswith("kpi_bounced_sessions") for name, _ in got)
    assert got["kpistream_consumer_lag_records", ()] == 14.0  # (32 - 25) + (7 - 0)
    assert got["kpistream_kafka_up", ()] == 1.0
    assert got["kpistream_worker_up", ()] == 0.0  # no worker ever reported
    assert got["kpistream_events_rejected_total", (("reason", "malformed_json"),)] == 1.0


if __name__ == "__main__":
    print(exposition(), end="")
