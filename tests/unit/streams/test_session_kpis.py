"""Engagement, conversions, carts, checkouts, revenue, surveys, time on site, landing page and
channel: hand-computed buckets through the pure processor."""

from __future__ import annotations

from typing import Any

from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.schemas.events import (
    AddToCart,
    CheckoutStart,
    Lead,
    PageView,
    Purchase,
    SurveyResponse,
)
from tests.support.factories import GAP, M0, MIN, T0, ev, imp, pick, processor, pv, run

E = fields.field(K.ENGAGED.code, "shop")
LATENESS = 10 * MIN


def end_of_everything(p: Any) -> Any:
    """Move the watermark far enough that every open session ends and is decided."""
    return p.advance(p.watermark_ms + 10 * GAP)


def test_session_becomes_engaged_at_second_eleven_not_ten() -> None:
    b, t = run(
        processor(), [pv(T0, "a"), imp(T0 + 10_000, "a"), pv(T0, "b"), imp(T0 + 11_000, "b")]
    )
    assert pick(b, E) == {(M0, E): 1} and t[E] == 1


def test_conversion_engages_and_counts_once_per_goal() -> None:
    p = processor()
    b, t = run(p, [pv(T0), ev(Lead, T0 + 1_000), ev(Lead, T0 + 2_000)])
    lead = fields.field(K.CONVERSIONS.code, "shop", "lead")
    assert pick(b, E, lead) == {(M0, E): 1, (M0, lead): 1}
    assert t[lead] == 1 and t[E] == 1


def test_cart_left_alone_is_abandoned_at_the_session_end() -> None:
    p = processor(lateness_ms=LATENESS)
    _b, t = run(p, [pv(T0), ev(AddToCart, T0 + MIN, item_id="sku")])
    assert t[fields.field(K.CART_ABANDONED.code, "shop")] == 0
    delta = end_of_everything(p)
    end = (T0 + MIN + GAP) // MIN  # last event + gap
    ca = fields.field(K.CART_ABANDONED.code, "shop")
    assert pick(delta.buckets, ca) == {(end, ca): 1} and delta.totals[ca] == 1
    assert delta.totals[fields.field(K.CART_COMPLETED.code, "shop")] == 0


def test_purchase_before_its_add_to_cart_completes_the_cart_at_the_purchase() -> None:
    p = processor()
    buy = ev(Purchase, T0 + 5 * MIN, value=10.0, currency="EUR")
    b, t = run(p, [pv(T0), buy], [ev(AddToCart, T0 + 2 * MIN, item_id="sku")])
    cc = fields.field(K.CART_COMPLETED.code, "shop")
    assert pick(b, cc) == {(M0 + 5, cc): 1} and t[cc] == 1
    delta = end_of_everything(p)
    assert delta.totals[fields.field(K.CART_ABANDONED.code, "shop")] == 0


def test_a_purchase_before_the_cart_opened_does_not_complete_it() -> None:
    p = processor()
    _b, t = run(
        p,
        [
            pv(T0),
            ev(Purchase, T0 + MIN, value=1.0, currency="EUR"),
            ev(AddToCart, T0 + 2 * MIN, item_id="sku"),
        ],
    )
    assert t[fields.field(K.CART_COMPLETED.code, "shop")] == 0
    assert end_of_everything(p).totals[fields.field(K.CART_ABANDONED.code, "shop")] == 1


def test_earlier_purchase_moves_the_completion_without_recounting() -> None:
    b, t = run(
        processor(),
        [ev(AddToCart, T0, item_id="s"), ev(Purchase, T0 + 9 * MIN, value=1.0, currency="EUR")],
        [ev(Purchase, T0 + 3 * MIN, value=1.0, currency="EUR")],
    )
    cc = fields.field(K.CART_COMPLETED.code, "shop")
    assert pick(b, cc) == {(M0 + 3, cc): 1} and t[cc] == 1


def test_checkout_abandonment_follows_checkout_start() -> None:
    p = processor()
    run(
        p,
        [
            ev(CheckoutStart, T0, "a"),
            ev(CheckoutStart, T0, "b"),
            ev(Purchase, T0 + MIN, "b", value=5.0, currency="EUR"),
        ],
    )
    delta = end_of_everything(p)
    assert delta.totals[fields.field(K.CHECKOUT_ABANDONED.code, "shop")] == 1


def test_checkouts_started_count_at_the_first_checkout_and_move_to_an_earlier_one() -> None:
    p = processor()
    xs = fields.field(K.CHECKOUT_STARTED.code, "shop")
    xc = fields.field(K.CHECKOUT_COMPLETED.code, "shop")
    b, t = run(
        p,
        [
            ev(CheckoutStart, T0 + 2 * MIN, "a"),
            ev(CheckoutStart, T0 + 4 * MIN, "a"),  # the same checkout: not counted again
            ev(CheckoutStart, T0 + MIN, "b"),
            ev(Purchase, T0 + 3 * MIN, "b", value=5.0, currency="EUR"),
        ],
        # Out of order: a's earlier checkout moves its start from minute 2 to minute 1.
        [ev(CheckoutStart, T0 + MIN, "a")],
    )
    assert pick(b, xs) == {(M0 + 1, xs): 2} and t[xs] == 2
    assert pick(b, xc) == {(M0 + 3, xc): 1} and t[xc] == 1
    # Checkout-to-purchase rate over these buckets: 1 completed / 2 started.
    assert K.CHECKOUT_TO_PURCHASE_RATE.value(t[xc], t[xs]) == 0.5


def test_revenue_is_exact_in_micros_and_orders_count() -> None:
    _b, t = run(
        processor(),
        [
            ev(Purchase, T0, value=10.5, currency="EUR"),
            ev(Purchase, T0 + 1, "w", value=20.25, currency="EUR"),
            ev(Purchase, T0 + 2, "x", value=0.1, currency="USD"),
        ],
    )
    rev = fields.field(K.REVENUE.code, "shop", "EUR")
    assert t[rev] == 30_750_000 and t[fields.field(K.ORDERS.code, "shop", "EUR")] == 2
    assert t[fields.field(K.REVENUE.code, "shop", "other")] == 100_000  # USD folded: budget full


def test_survey_counts() -> None:
    answers = [("nps", s) for s in (10, 9, 7, 8, 0, 3)] + [("csat", 5), ("csat", 4), ("csat", 3)]
    answers += [("ces", 1), ("ces", 2), ("ces", 6)]
    _, t = run(
        processor(),
        [ev(SurveyResponse, T0 + i, f"v{i}", kind=k, score=s) for i, (k, s) in enumerate(answers)],
    )

    def f(kind: str) -> int:
        return int(t[fields.field(kind, "shop")])

    assert (f(K.NPS_ANSWERS.code), f(K.NPS_PROMOTERS.code), f(K.NPS_DETRACTORS.code)) == (6, 2, 2)
    assert (f(K.CSAT_ANSWERS.code), f(K.CSAT_SATISFIED.code)) == (3, 2)
    assert (f(K.CES_ANSWERS.code), f(K.CES_SUM.code)) == (3, 9)


def test_time_on_site_is_counted_when_the_session_ends() -> None:
    # Another visitor's page view moves the watermark far on: the first session has ended.
    b, t = run(processor(), [pv(T0), pv(T0 + 90_000)], [pv(T0 + 10 * GAP, "other")])
    end = (T0 + 90_000 + GAP) // MIN  # last event + gap
    dur, ended = fields.field(K.DURATION.code, "shop"), fields.field(K.ENDED.code, "shop")
    assert pick(b, dur, ended) == {(end, dur): 90_000, (end, ended): 1}
    assert t[dur] == 90_000 and t[ended] == 1


def test_landing_page_and_channel_follow_the_earliest_page_view() -> None:
    later = ev(PageView, T0 + 2 * MIN, path="/pricing", utm_source="google", utm_medium="cpc")
    earlier = ev(PageView, T0, path="/")
    b, _ = run(processor(), [later], [earlier])
    ls_root, ls_pricing = (
        fields.field(K.LANDING_SESSIONS.code, "shop", "/"),
        fields.field(K.LANDING_SESSIONS.code, "shop", "/pricing"),
    )
    ch_direct, ch_cpc = (
        fields.field(K.CHANNEL_SESSIONS.code, "shop", "direct"),
        fields.field(K.CHANNEL_SESSIONS.code, "shop", "google/cpc"),
    )
    assert pick(b, ls_root, ls_pricing, ch_direct, ch_cpc) == {(M0, ls_root): 1, (M0, ch_direct): 1}


def test_landing_conversion_totals_count_at_the_end_with_the_final_landing_page() -> None:
    p = processor()
    _, t = run(
        p,
        [ev(PageView, T0 + MIN, path="/pricing"), ev(Lead, T0 + 2 * MIN)],
        [ev(PageView, T0, path="/")],
    )
    assert t[fields.field(K.LANDING_SESSIONS.code, "shop", "/")] == 0
    delta = end_of_everything(p)
    assert delta.totals[fields.field(K.LANDING_SESSIONS.code, "shop", "/")] == 1
    assert delta.totals[fields.field(K.LANDING_CONVERSIONS.code, "shop", "/", "lead")] == 1
    assert delta.totals[fields.field(K.LANDING_SESSIONS.code, "shop", "/pricing")] == 0


def test_configured_goal_types() -> None:
    _, t = run(processor(goals=("add_to_cart",)), [ev(AddToCart, T0, item_id="s"), ev(Lead, T0)])
    assert t[fields.field(K.CONVERSIONS.code, "shop", "add_to_cart")] == 1
    assert t[fields.field(K.CONVERSIONS.code, "shop", "lead")] == 0


def test_advance_only_moves_forward() -> None:
    p = processor()
    run(p, [pv(T0)])
    assert p.advance(T0 - MIN).watermark_ms == 0  # nothing to do: no commit needed
    assert p.advance(T0 + 2 * GAP).watermark_ms == T0 + 2 * GAP
