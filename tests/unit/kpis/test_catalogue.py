"""The KPI catalogue is consistent, and its quotients compute what docs/kpis.md defines."""

from __future__ import annotations

from kpistream.alerting.formulas import CATALOGUE, goal_kpi
from kpistream.kpis import catalogue as K
from kpistream.kpis.tables import formula


def test_the_declarations_are_consistent() -> None:
    assert K.problems() == []


def test_one_stem_names_the_metric_the_goal_and_the_recording_rule() -> None:
    for q in K.QUOTIENTS:
        assert q.metric.removeprefix("kpi_").startswith(q.stem)
        assert CATALOGUE[q.stem].gauge == q.metric


def test_goal_formulas_are_generated_from_the_declaration() -> None:
    assert goal_kpi(K.BOUNCE_RATE).value == "clamp_min(1 - {non_bounced_sessions} / {sessions}, 0)"
    assert goal_kpi(K.CONVERSION_RATE).value == "{conversions} / {on_sessions} {sessions}"
    cart = goal_kpi(K.CART_ABANDONMENT_RATE)
    assert cart.value == "{carts_abandoned} / ({carts_abandoned} + {carts_completed})"
    assert cart.volume_name == "kpi_carts_decided"
    nps = goal_kpi(K.NET_PROMOTER_SCORE)
    assert nps.value == "100 * ({nps_promoters} - {nps_detractors}) / {nps_answers}"
    social = goal_kpi(K.SOCIAL_ENGAGEMENT_RATE)
    assert social.parts["followers"].gauge and social.volume == "{followers}"


def test_formulas_in_words() -> None:
    assert formula(K.NET_PROMOTER_SCORE) == "100 x (nps promoters - nps detractors) ÷ nps answers"
    assert formula(K.TIME_ON_SITE) == "session duration seconds ÷ ended sessions"


def test_a_quotient_value_is_factor_times_numerator_over_denominator() -> None:
    assert K.NET_PROMOTER_SCORE.value(2 - 1, 4) == 25.0
    assert K.BOUNCE_RATE.value(1, 4) == 0.25
