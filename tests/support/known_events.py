"""A hand-computed event set and the exact KPI values it must produce.

T is an hour boundary two hours ago, so every event is in the past (the future-skew rule
uses the wall clock). The watermark ends at T+65:30, minute 65, so:
  5m  window = minutes 61..65,  1h window = minutes 6..65,  24h window = everything.

shop sessions (start minute: bounce?)  v1 0:no(2 views)  v2 1:yes  v3 2:no(click)
                                        v4 10:yes  v6 64:no(2 views)
blog sessions                           v5 59:yes
ad/bf impressions at minutes 1, 2, 2, 10; one ad/bf click at minute 2
cta/none impressions at minute 64 twice; one cta/none click at minute 65
"""

from __future__ import annotations

import json
import time
from typing import Any

MIN = 60_000
T = (time.time_ns() // 1_000_000 // (60 * MIN) - 2) * 60 * MIN


def _events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(kind: str, at_s: int, visitor: str, site: str = "shop", **fields: Any) -> None:
        out.append(
            {
                "event_id": f"{visitor}-{len(out)}",
                "type": kind,
                "ts": T + at_s * 1000,
                "site": site,
                "visitor_id": visitor,
                **fields,
            }
        )

    ad = {"item_kind": "ad", "item_id": "ad-1", "campaign": "bf"}
    cta = {"item_kind": "cta", "item_id": "cta-1"}
    add("page_view", 10, "v1", path="/")
    add("page_view", 40, "v1", path="/pricing")
    add("page_view", 60, "v2", path="/", utm_source="google", utm_medium="cpc")
    add("impression", 65, "v2", **ad)
    add("page_view", 120, "v3", path="/")
    add("impression", 130, "v3", **ad)
    add("impression", 140, "v3", **ad)
    add("click", 150, "v3", **ad)
    add("page_view", 600, "v4", path="/blog")
    add("impression", 610, "v4", **ad)
    add("page_view", 59 * 60, "v5", site="blog", path="/")
    add("page_view", 64 * 60, "v6", path="/")
    add("impression", 64 * 60 + 30, "v6", **cta)
    add("impression", 64 * 60 + 31, "v6", **cta)
    add("page_view", 65 * 60, "v6", path="/cart")
    add("click", 65 * 60 + 30, "v6", **cta)
    return out


EVENTS = _events()
BAD_LINES = [
    b"{",
    json.dumps(
        {"event_id": "x1", "type": "teleport", "ts": T, "site": "shop", "visitor_id": "v9"}
    ).encode(),
    json.dumps(
        {"event_id": "x2", "type": "page_view", "ts": T, "site": "shop", "path": "/"}
    ).encode(),
]
BAD_REASONS = ["malformed_json", "unknown_type", "missing_field"]


def lines() -> list[bytes]:
    """Valid events, three invalid ones, and a tracker retry of v3's click (counted once)."""
    good = [json.dumps(e).encode() for e in EVENTS]
    retry = good[7]
    return good[:5] + BAD_LINES + good[5:9] + [retry] + good[9:]


AD = {"site": "shop", "item_kind": "ad", "campaign": "bf"}
CTA = {"site": "shop", "item_kind": "cta", "campaign": "none"}

#: (metric, labels) -> exact value
EXPECTED: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}


def _expect(metric: str, value: float, **labels: str) -> None:
    EXPECTED[(metric, tuple(sorted(labels.items())))] = value


_expect("kpi_sessions", 1, site="shop", window="5m")
_expect("kpi_bounce_rate", 0.0, site="shop", window="5m")
_expect("kpi_click_through_rate", 0.5, window="5m", **CTA)
_expect("kpi_impressions", 2, window="5m", **CTA)
_expect("kpi_clicks", 1, window="5m", **CTA)
_expect("kpi_sessions", 2, site="shop", window="1h")
_expect("kpi_bounce_rate", 0.5, site="shop", window="1h")
_expect("kpi_sessions", 1, site="blog", window="1h")
_expect("kpi_bounce_rate", 1.0, site="blog", window="1h")
_expect("kpi_click_through_rate", 0.0, window="1h", **AD)
_expect("kpi_impressions", 1, window="1h", **AD)
_expect("kpi_sessions", 5, site="shop", window="24h")
_expect("kpi_bounce_rate", 0.4, site="shop", window="24h")
_expect("kpi_bounce_rate", 1.0, site="blog", window="24h")
_expect("kpi_click_through_rate", 0.25, window="24h", **AD)
_expect("kpi_click_through_rate", 0.5, window="24h", **CTA)
_expect("kpi_sessions_total", 5, site="shop")
_expect("kpi_sessions_total", 1, site="blog")
_expect("kpi_non_bounced_sessions_total", 3, site="shop")
_expect("kpi_non_bounced_sessions_total", 0, site="blog")
_expect("kpi_impressions_total", 4, **AD)
_expect("kpi_clicks_total", 1, **AD)
_expect("kpi_impressions_total", 2, **CTA)
_expect("kpi_clicks_total", 1, **CTA)
_expect("kpistream_events_processed_total", 16)
_expect("kpistream_events_late_total", 0)
_expect("kpistream_events_duplicate_total", 1)
for _reason in BAD_REASONS:
    _expect("kpistream_events_rejected_total", 1, reason=_reason)
_expect("kpistream_events_rejected_total", 0, reason="too_large")
_expect("kpistream_watermark_seconds", (T + (65 * 60 + 30) * 1000) / 1000)

ABSENT = [  # no denominator in the window: no sample, rather than a misleading 0
    ("kpi_bounce_rate", (("site", "blog"), ("window", "5m"))),
    ("kpi_click_through_rate", tuple(sorted({**AD, "window": "5m"}.items()))),
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def assert_served(url: str, *, timeout_s: float = 90) -> None:
    """Poll ``url`` until every valid event is processed, then compare with EXPECTED."""
    import urllib.request

    from tests.support.waits import wait_until_sync

    got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def processed_all() -> bool:
        nonlocal got
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                got = samples(response.read().decode())
        except OSError:
            return False
        return got.get(("kpistream_events_processed_total", ())) == len(EVENTS)

    try:
        wait_until_sync("every valid event is processed", processed_all, timeout_s=timeout_s)
    except AssertionError:
        pass  # assert_matches says what differs
    assert_matches(got)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def assert_matches(got: Samples, expected: Samples | None = None) -> None:
    """Every expected sample is there, exact to 1e-9."""
    import pytest

    for key, value in (EXPECTED if expected is None else expected).items():
        assert key in got, f"missing sample {key}"
        assert got[key] == pytest.approx(value, abs=1e-9), key
