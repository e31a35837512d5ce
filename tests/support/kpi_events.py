"""Hand-computed fixture for every web KPI, decided by the idle watermark (no later event).

T is an hour boundary two hours ago. Site "shop" (durations are first to last event):

  A  pv "/" (google/cpc) 0:00, pv "/pricing" 1:40, add_to_cart 1:00, checkout 2:00,
     purchase 50.00 EUR 3:00          -> engaged, purchase, cart+checkout completed, 180 s
  B  pv "/pricing" 5:00, add_to_cart 5:20, checkout 5:30
                                      -> engaged (30 s), cart+checkout abandoned by timeout
  C  pv "/" 10:00, purchase 25.50 EUR 10:30, then (produced later) add_to_cart 10:10
                                      -> purchase before its add_to_cart: cart completed; 30 s
  D  pv "/" 15:00, impression 15:11   -> bounce, engaged at second 11
  E  pv "/blog" 20:00, lead 20:05     -> engaged by conversion (lead), 5 s
  F  pv "/" 25:00                     -> bounce, not engaged, 0 s

  sessions 6, bounces 2, engaged 5, page views 7, purchase 2 (A, C), lead 1 (E)
  time on site (180+30+30+11+5+0)/6 = 42.666.. s; carts 1 abandoned / 3 decided;
  checkouts 1 / 2; revenue 75.50 EUR in 2 orders, AOV 37.75
  landing "/": A C D F, purchase A C -> 0.5; "/blog": E, lead -> 1.0
  channel google/cpc: A, purchase -> 1.0; direct: B C D E F, purchase C -> 0.2, lead E -> 0.2

Survey answers come after the shop's events (all within the 120 s lateness of each other).
Site "feedback": NPS 10 9 0 5 7 -> (2 - 2) / 5 = 0; CSAT 5 4 2 -> 2/3; CES 2 3 7 -> 4.
Site "feedback2": NPS 10 3 6 -> 100 * (1 - 2) / 3 = -33.33..
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.known_events import T

S = 1000
_events: list[dict[str, Any]] = []


def _add(event_type: str, at_s: float, visitor: str, site: str = "shop", **fields: Any) -> None:
    _events.append(
        {
            "event_id": f"{site}-{visitor}-{len(_events)}",
            "type": event_type,
            "ts": T + int(at_s * S),
            "site": site,
            "visitor_id": visitor,
            **fields,
        }
    )


_add("page_view", 0, "a", path="/", utm_source="google", utm_medium="cpc")
_add("add_to_cart", 60, "a", item_id="boots")
_add("page_view", 100, "a", path="/pricing")
_add("checkout_start", 120, "a")
_add("purchase", 180, "a", value=50.0, currency="EUR")
_add("page_view", 300, "b", path="/pricing")
_add("add_to_cart", 320, "b", item_id="boots")
_add("checkout_start", 330, "b")
_add("page_view", 600, "c", path="/")
_add("purchase", 630, "c", value=25.5, currency="EUR")
_add("add_to_cart", 610, "c", item_id="jacket")  # produced after its purchase
_add("page_view", 900, "d", path="/")
_add("impression", 911, "d", item_kind="banner", item_id="b1")
_add("page_view", 1200, "e", path="/blog")
_add("lead", 1205, "e", form_id="newsletter")
_add("page_view", 1500, "f", path="/")
for i, score in enumerate((10, 9, 0, 5, 7)):
    _add("survey_response", 1600 + i, f"n{i}", "feedback", kind="nps", score=score)
for i, score in enumerate((5, 4, 2)):
    _add("survey_response", 1610 + i, f"c{i}", "feedback", kind="csat", score=score)
for i, score in enumerate((2, 3, 7)):
    _add("survey_response", 1620 + i, f"e{i}", "feedback", kind="ces", score=score)
for i, score in enumerate((10, 3, 6)):
    _add("survey_response", 1630 + i, f"m{i}", "feedback2", kind="nps", score=score)

EVENTS = list(_events)
LINES = [json.dumps(e).encode() for e in EVENTS]
SHOP_SESSIONS = 6

Key = tuple[str, tuple[tuple[str, str], ...]]
EXPECTED: dict[Key, float] = {}


def _expect(metric: str, value: float, **labels: str) -> None:
    EXPECTED[(metric, tuple(sorted(labels.items())))] = value


W = {"window": "24h"}
SHOP = {"site": "shop"}
_expect("kpi_sessions", 6, **SHOP, **W)
_expect("kpi_bounce_rate", 2 / 6, **SHOP, **W)
_expect("kpi_engagement_rate", 5 / 6, **SHOP, **W)
_expect("kpi_conversion_rate", 2 / 6, goal="purchase", **SHOP, **W)
_expect("kpi_conversion_rate", 1 / 6, goal="lead", **SHOP, **W)
_expect("kpi_page_views", 7, **SHOP, **W)
_expect("kpi_pages_per_session", 7 / 6, **SHOP, **W)
_expect("kpi_time_on_site_seconds", 256 / 6, **SHOP, **W)
_expect("kpi_cart_abandonment_rate", 1 / 3, **SHOP, **W)
_expect("kpi_checkout_abandonment_rate", 1 / 2, **SHOP, **W)
_expect("kpi_revenue", 75.5, currency="EUR", **SHOP, **W)
_expect("kpi_orders", 2, currency="EUR", **SHOP, **W)
_expect("kpi_average_order_value", 37.75, currency="EUR", **SHOP, **W)
_expect("kpi_landing_conversion_rate", 0.5, landing_page="/", goal="purchase", **SHOP, **W)
_expect("kpi_landing_conversion_rate", 1.0, landing_page="/blog", goal="lead", **SHOP, **W)
_expect("kpi_channel_conversion_rate", 1.0, channel="google/cpc", goal="purchase", **SHOP, **W)
_expect("kpi_channel_conversion_rate", 0.2, channel="direct", goal="purchase", **SHOP, **W)
_expect("kpi_channel_conversion_rate", 0.2, channel="direct", goal="lead", **SHOP, **W)
_expect("kpi_net_promoter_score", 0.0, site="feedback", **W)
_expect("kpi_net_promoter_score", -100 / 3, site="feedback2", **W)
_expect("kpi_csat", 2 / 3, site="feedback", **W)
_expect("kpi_customer_effort_score", 4.0, site="feedback", **W)
# One hand-computed value of every other (KPI, window) pair the exporter serves.
_expect("kpi_carts_abandoned", 1, **SHOP, **W)  # B
_expect("kpi_carts_completed", 2, **SHOP, **W)  # A, C
_expect("kpi_checkouts_started", 2, **SHOP, **W)  # A, B
_expect("kpi_checkouts_completed", 1, **SHOP, **W)  # A
_expect("kpi_checkouts_abandoned", 1, **SHOP, **W)  # B
_expect("kpi_checkout_to_purchase_rate", 1 / 2, **SHOP, **W)
_expect("kpi_impressions", 1, item_kind="banner", campaign="none", **SHOP, **W)  # D
_expect("kpi_click_through_rate", 0.0, item_kind="banner", campaign="none", **SHOP, **W)
_expect("kpi_conversions", 2, goal="purchase", **SHOP, **W)  # A, C
_expect("kpi_conversions", 1, goal="lead", **SHOP, **W)  # E
_expect("kpi_ended_sessions", 6, **SHOP, **W)
_expect("kpi_engaged_sessions", 5, **SHOP, **W)
_expect("kpi_landing_sessions", 4, landing_page="/", **SHOP, **W)  # A C D F
_expect("kpi_landing_conversions", 2, landing_page="/", goal="purchase", **SHOP, **W)
_expect("kpi_channel_sessions", 5, channel="direct", **SHOP, **W)  # B C D E F
_expect("kpi_channel_conversions", 1, channel="google/cpc", goal="purchase", **SHOP, **W)
_expect("kpi_nps_answers", 5, site="feedback", **W)
_expect("kpi_csat_answers", 3, site="feedback", **W)
_expect("kpi_ces_answers", 3, site="feedback", **W)
# The shorter windows end at the idle watermark (the wall clock), over an hour after the
# last event: they hold none.
for _window in ("5m", "1h"):
    _expect("kpi_unique_visitors", 0, **SHOP, window=_window)
    _expect("kpi_visitors", 0, kind="new", **SHOP, window=_window)
_expect("kpi_sessions_total", 6, **SHOP)
_expect("kpi_non_bounced_sessions_total", 4, **SHOP)
_expect("kpi_engaged_sessions_total", 5, **SHOP)
_expect("kpi_conversions_total", 2, goal="purchase", **SHOP)
_expect("kpi_conversions_total", 1, goal="lead", **SHOP)
_expect("kpi_page_views_total", 7, **SHOP)
_expect("kpi_carts_completed_total", 2, **SHOP)
_expect("kpi_carts_abandoned_total", 1, **SHOP)
_expect("kpi_checkouts_completed_total", 1, **SHOP)
_expect("kpi_checkouts_abandoned_total", 1, **SHOP)
_expect("kpi_ended_sessions_total", 6, **SHOP)
_expect("kpi_session_duration_seconds_total", 256, **SHOP)
_expect("kpi_revenue_total", 75.5, currency="EUR", **SHOP)
_expect("kpi_orders_total", 2, currency="EUR", **SHOP)
_expect("kpi_landing_sessions_total", 4, landing_page="/", **SHOP)
_expect("kpi_landing_conversions_total", 2, landing_page="/", goal="purchase", **SHOP)
_expect("kpi_channel_sessions_total", 5, channel="direct", **SHOP)
_expect("kpi_channel_conversions_total", 1, channel="direct", goal="lead", **SHOP)
_expect("kpi_nps_answers_total", 5, site="feedback")
_expect("kpi_nps_promoters_total", 2, site="feedback")
_expect("kpi_nps_detractors_total", 2, site="feedback")
_expect("kpi_csat_answers_total", 3, site="feedback")
_expect("kpi_csat_satisfied_total", 2, site="feedback")
_expect("kpi_ces_answers_total", 3, site="feedback")
_expect("kpi_ces_score_total", 12, site="feedback")

# -- visitors across sessions -------------------------------------------------------------
# Site "loyal": visitor r first seen 25 h before T (outside the 24 h window), back at T+28:20:
#   24h window: unique 1, new 0, returning 1.   Site "shop": 6 unique visitors, all new.
# Site "crm": g lead 28:30 then purchase 28:40 -> lead customer; h lead 28:50 only;
#   i purchase 29:00 then lead 29:10 -> not one. Lead -> customer over 30 days: 1/3.
# (The day-old event is produced first, and these after the surveys: within a partition,
# no event may trail the newest one by more than the 120 s lateness.)
DAY_OLD = {
    "event_id": "loyal-r-day-old",
    "type": "page_view",
    "ts": T - 25 * 3600 * S,
    "site": "loyal",
    "visitor_id": "r",
    "path": "/",
}
_events.clear()
_add("page_view", 1700, "r", "loyal", path="/")
_add("lead", 1710, "g", "crm")
_add("purchase", 1720, "g", "crm", value=10.0, currency="EUR")
_add("lead", 1730, "h", "crm")
_add("purchase", 1740, "i", "crm", value=10.0, currency="EUR")
_add("lead", 1750, "i", "crm")
EVENTS = [DAY_OLD, *EVENTS, *_events]
LINES = [json.dumps(e).encode() for e in EVENTS]

_expect("kpi_unique_visitors", 6, **SHOP, **W)
_expect("kpi_visitors", 6, kind="new", **SHOP, **W)
_expect("kpi_visitors", 0, kind="returning", **SHOP, **W)
_expect("kpi_unique_visitors", 1, site="loyal", **W)
_expect("kpi_visitors", 0, kind="new", site="loyal", **W)
_expect("kpi_visitors", 1, kind="returning", site="loyal", **W)
_expect("kpi_new_visitors_total", 1, site="loyal")
_expect("kpi_new_visitors_total", 6, **SHOP)
_expect("kpi_lead_to_customer_rate", 1 / 3, site="crm", window="30d")
_expect("kpi_lead_to_customer_rate", 0.0, site="shop", window="30d")
_expect("kpi_leads", 3, site="crm", window="30d")
_expect("kpi_lead_customers", 1, site="crm", window="30d")  # g
_expect("kpi_leads_total", 3, site="crm")
_expect("kpi_lead_customers_total", 1, site="crm")
