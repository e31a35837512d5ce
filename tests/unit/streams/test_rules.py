"""The KPI rules as pure functions of typed values, without the processor around them: the
one move of a contribution between buckets, a session's signature and marks, what an
account of a session adds, what a session's end and an event's own minute count."""

from __future__ import annotations

from collections import Counter

import pytest

from kpistream.contract.delta import BatchDelta
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import SiteFields, field
from kpistream.schemas.events import Purchase, SurveyResponse
from kpistream.streams import session_kpis as SK
from kpistream.streams.event_kpis import purchase_counts, survey_counts
from kpistream.streams.labels import Dimensions
from kpistream.streams.sessionizer import Session
from kpistream.streams.tally import Tally

SITE = SiteFields("shop", [c.code for c in K.COUNTS if c.labels == K.SITE])
T0 = 1_700_000_040_000  # a minute boundary
M0 = T0 // 60_000


def one(code: str) -> str:
    return field(code, "shop")


def dims() -> Dimensions:
    d = Dimensions()
    d.landing_page.learn({"/"}, full=True)
    d.channel.learn({"direct"}, full=True)
    return d


def test_a_move_leaves_its_old_bucket_or_counts_once_in_the_totals() -> None:
    delta = BatchDelta()
    tally = Tally(delta)
    tally.move("x", None, 5)  # first time: bucket and total
    tally.move("x", 5, 3)  # earlier: the bucket moves, the total stays
    tally.move("d", None, 19_000, days=True)
    assert +delta.buckets == Counter({(3, "x"): 1})
    assert delta.totals == Counter({"x": 1, "d": 1})
    assert delta.days == Counter({(19_000, "d"): 1})


def test_moving_a_set_of_fields_touches_only_what_changed_in_the_same_bucket() -> None:
    delta = BatchDelta()
    tally = Tally(delta)
    tally.move_all(None, (7, ["s", "bounce"]))
    tally.move_all((7, ["s", "bounce"]), (7, ["s", "engaged"]))
    assert delta.buckets == Counter({(7, "s"): 1, (7, "bounce"): 0, (7, "engaged"): 1})
    tally.move_all((7, ["s", "engaged"]), (6, ["s", "engaged"]))  # an earlier start
    assert +delta.buckets == Counter({(6, "s"): 1, (6, "engaged"): 1})
    assert not delta.totals  # start buckets only: totals are counted by the rules


@pytest.mark.parametrize(
    ("page_views", "interacted", "bounce"),
    [(0, False, True), (1, False, True), (2, False, False), (1, True, False)],
)
def test_bounce_is_at_most_one_page_view_and_no_interaction(
    page_views: int, interacted: bool, bounce: bool
) -> None:
    s = Session(T0, T0, {}, page_views=page_views, interacted=interacted)
    assert SK.signature(s).bounce is bounce


@pytest.mark.parametrize(
    ("duration_ms", "page_views", "goals", "engaged"),
    [
        (10_000, 1, set(), False),
        (10_001, 1, set(), True),
        (0, 2, set(), True),
        (0, 1, {"lead"}, True),
    ],
)
def test_engaged_is_longer_than_ten_seconds_two_page_views_or_a_conversion(
    duration_ms: int, page_views: int, goals: set[str], engaged: bool
) -> None:
    s = Session(T0, T0 + duration_ms, {}, page_views=page_views, goals=goals)
    assert SK.signature(s).engaged is engaged


def test_marks_of_a_cart_completed_by_the_first_purchase_at_or_after_it() -> None:
    s = Session(T0, T0 + 9_000, {}, cart_ms=T0 + 2_000, purchases_ms=[T0 + 1_000, T0 + 5_000])
    m = SK.marks(s)
    assert (m.start_minute, m.checkout_ms, m.cart_done_ms, m.checkout_done_ms) == (
        M0,
        None,
        T0 + 5_000,
        None,
    )


def test_account_of_a_new_session_then_of_its_next_batch() -> None:
    delta = BatchDelta()
    tally = Tally(delta)
    s = Session(T0, T0, {}, page_views=1, landing="/", channel="direct")
    SK.account(tally, SITE, dims(), s, SK.NOTHING, {})
    start = {one(K.SESSIONS.code), one(K.BOUNCES.code)}
    start |= {field(K.LANDING_SESSIONS.code, "shop", "/")}
    start |= {field(K.CHANNEL_SESSIONS.code, "shop", "direct")}
    assert +delta.buckets == Counter({(M0, name): 1 for name in start})
    assert delta.totals == Counter({one(K.SESSIONS.code): 1})
    # The next batch: a second page view and a checkout a minute later.
    was = SK.marks(s)
    s.page_views, s.last_ms, s.checkout_ms = 2, T0 + 60_000, T0 + 60_000
    SK.account(tally, SITE, dims(), s, was, {})
    start = start - {one(K.BOUNCES.code)} | {one(K.ENGAGED.code)}
    expected = Counter({(M0, name): 1 for name in start})
    expected[M0 + 1, one(K.CHECKOUT_STARTED.code)] = 1
    assert +delta.buckets == expected
    assert delta.totals == Counter(
        {
            one(K.SESSIONS.code): 1,
            one(K.NON_BOUNCED.code): 1,
            one(K.ENGAGED.code): 1,
            one(K.CHECKOUT_STARTED.code): 1,
        }
    )
    SK.account(tally, SITE, dims(), s, SK.marks(s), {})  # nothing new: nothing moves
    assert +delta.buckets == expected


def test_a_session_end_counts_time_on_site_and_what_it_left_open() -> None:
    s = Session(T0, T0 + 42_000, {}, cart_ms=T0, checkout_ms=T0 + 1, purchases_ms=[T0])
    assert SK.ended(s, SITE) == [
        (one(K.ENDED.code), 1),
        (one(K.DURATION.code), 42_000),
        (one(K.CHECKOUT_ABANDONED.code), 1),  # the purchase came before the checkout
    ]


@pytest.mark.parametrize(
    ("kind", "score", "codes"),
    [
        ("nps", 9, [K.NPS_ANSWERS, K.NPS_PROMOTERS]),
        ("nps", 7, [K.NPS_ANSWERS]),
        ("nps", 6, [K.NPS_ANSWERS, K.NPS_DETRACTORS]),
        ("csat", 4, [K.CSAT_ANSWERS, K.CSAT_SATISFIED]),
        ("csat", 3, [K.CSAT_ANSWERS]),
    ],
)
def test_survey_answers(kind: str, score: int, codes: list[K.Count]) -> None:
    event = SurveyResponse(event_id="e", ts=T0, site="shop", visitor_id="v", kind=kind, score=score)  # type: ignore[arg-type]
    assert survey_counts(SITE, event) == [(one(c.code), 1) for c in codes]


def test_ces_sums_its_scores_and_revenue_is_exact_in_millionths() -> None:
    ces = SurveyResponse(event_id="e", ts=T0, site="shop", visitor_id="v", kind="ces", score=5)
    assert survey_counts(SITE, ces) == [(one(K.CES_ANSWERS.code), 1), (one(K.CES_SUM.code), 5)]
    buy = Purchase(
        event_id="p", ts=T0, site="shop", visitor_id="v", value=0.1 + 0.2, currency="EUR"
    )
    assert purchase_counts(SITE, buy, "EUR") == [
        (field(K.REVENUE.code, "shop", "EUR"), 300_000),
        (field(K.ORDERS.code, "shop", "EUR"), 1),
    ]
