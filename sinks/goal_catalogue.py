"""The KPIs a goal can name, as PromQL over the exporter's ``_total`` counters.

Each KPI is a formula over *parts*: a counter's increase over the alert window (or, for
followers, a gauge), summed to the goal's scope. Ratios are always a ratio of summed
increases, never an average of ratios (KPIS.md). Formulas use ``{part}`` for a part's
recorded series and ``{on_part}`` for the vector-matching clause a part needs when it has
fewer labels than the scope (sessions have no ``goal`` label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SITE = ("site",)
ITEMS = ("site", "item_kind", "campaign")
SOCIAL = ("network", "account")


@dataclass(frozen=True, slots=True)
class Part:
    metric: str  # a counter (its increase over the window) or, with gauge=True, a gauge
    labels: tuple[str, ...]
    gauge: bool = False


@dataclass(frozen=True, slots=True)
class GoalKpi:
    name: str
    title: str  # for people: "bounce rate"
    scope: tuple[str, ...]  # labels a goal's scope may name, in this order
    required: tuple[str, ...]  # labels it must name
    parts: dict[str, Part]
    value: str  # PromQL formula over the parts
    volume: str  # PromQL formula: what min_volume counts
    volume_unit: str  # "sessions"
    low: float
    high: float | None  # None: unbounded above
    kind: Literal["ratio", "mean", "score"]
    gauge: str  # the exporter's event-time window gauge of the same KPI
    unit: str = "percentunit"  # Grafana unit
    volume_name: str | None = None  # a name for the volume series when it is a formula

    @property
    def percent(self) -> bool:
        return self.unit == "percentunit"


def _site(metric: str) -> Part:
    return Part(metric, SITE)


def _social(metric: str) -> Part:
    return Part(metric, SOCIAL)


CATALOGUE: dict[str, GoalKpi] = {
    k.name: k
    for k in (
        GoalKpi(
            "bounce_rate",
            "bounce rate",
            SITE,
            SITE,
            {
                "sessions": _site("kpi_sessions_total"),
                "non_bounced": _site("kpi_non_bounced_sessions_total"),
            },
            value="clamp_min(1 - {non_bounced} / {sessions}, 0)",
            volume="{sessions}",
            volume_unit="sessions",
            low=0,
            high=1,
            kind="ratio",
            gauge="kpi_bounce_ratio",
        ),
        GoalKpi(
            "engagement_rate",
            "engagement rate",
            SITE,
            SITE,
            {
                "sessions": _site("kpi_sessions_total"),
                "engaged": _site("kpi_engaged_sessions_total"),
            },
            value="{engaged} / {sessions}",
            volume="{sessions}",
            volume_unit="sessions",
            low=0,
            high=1,
            kind="ratio",
            gauge="kpi_engagement_ratio",
        ),
        GoalKpi(
            "click_through_rate",
            "click-through rate",
            ITEMS,
            SITE,
            {
                "clicks": Part("kpi_clicks_total", ITEMS),
                "impressions": Part("kpi_impressions_total", ITEMS),
            },
            value="{clicks} / {impressions}",
            volume="{impressions}",
            volume_unit="impressions",
            low=0,
            high=1,
            kind="ratio",
            gauge="kpi_click_through_ratio",
        ),
        GoalKpi(
            "conversion_rate",
            "conversion rate",
            ("site", "goal"),
            ("site", "goal"),
            {
                "conversions": Part("kpi_conversions_total", ("site", "goal")),
                "sessions": _site("kpi_sessions_total"),
            },
            value="{conversions} / {on_sessions} {sessions}",
            volume="{sessions}",
            volume_unit="sessions",
            low=0,
            high=1,
            kind="ratio",
            gauge="kpi_conversion_ratio",
        ),
        GoalKpi(
            "cart_abandonment_rate",
            "cart abandonment rate",
            SITE,
            SITE,
            {
                "abandoned": _site("kpi_carts_abandoned_total"),
                "completed": _site("kpi_carts_completed_total"),
            },
            value="{abandoned} / ({abandoned} + {completed})",
            volume="({abandoned} + {completed})",
            volume_unit="carts decided",
            volume_name="kpi_carts_decided",
            low=0,
            high=1,
            kind="ratio",
            gauge="kpi_cart_abandonment_ratio",
        ),
        GoalKpi(
            "checkout_abandonment_rate",
            "checkout abandonment rate",
            SITE,
            SITE,
            {
                "abandoned": _site("kpi_checkouts_abandoned_total"),
                "completed": _site("kpi_checkouts_completed_total"),
            },
            value="{abandoned} / ({abandoned} + {completed})",
            volume="({abandoned} + {completed})",
            volume_unit="checkouts decided",
            volume_name="kpi_checkouts_decided",
            low=0,
            high=1,
            kind="ratio",
            gauge="kpi_checkout_abandonment_ratio",
        ),
        GoalKpi(
            "social_engagement_rate",
            "social engagement rate",
            SOCIAL,
            SOCIAL,
            {
                "likes": _social("kpi_likes_total"),
                "comments": _social("kpi_comments_total"),
                "shares": _social("kpi_shares_total"),
                "followers": Part("kpi_followers", SOCIAL, gauge=True),
            },
            value="({likes} + {comments} + {shares}) / {followers}",
            volume="{followers}",
            volume_unit="followers",
            low=0,
            high=None,  # a viral post can bring more reactions than followers
            kind="ratio",
            gauge="kpi_social_engagement_ratio",
        ),
        GoalKpi(
            "csat",
            "customer satisfaction",
            SITE,
            SITE,
            {
                "answers": _site("kpi_csat_answers_total"),
                "satisfied": _site("kpi_csat_satisfied_total"),
            },
            value="{satisfied} / {answers}",
            volume="{answers}",
            volume_unit="answers",
            low=0,
            high=1,
            kind="ratio",
            gauge="kpi_csat_ratio",
        ),
        GoalKpi(
            "net_promoter_score",
            "Net Promoter Score",
            SITE,
            SITE,
            {
                "answers": _site("kpi_nps_answers_total"),
                "promoters": _site("kpi_nps_promoters_total"),
                "detractors": _site("kpi_nps_detractors_total"),
            },
            value="100 * ({promoters} - {detractors}) / {answers}",
            volume="{answers}",
            volume_unit="answers",
            low=-100,
            high=100,
            kind="score",
            gauge="kpi_net_promoter_score",
            unit="none",
        ),
        GoalKpi(
            "pages_per_session",
            "pages per session",
            SITE,
            SITE,
            {
                "page_views": _site("kpi_page_views_total"),
                "sessions": _site("kpi_sessions_total"),
            },
            value="{page_views} / {sessions}",
            volume="{sessions}",
            volume_unit="sessions",
            low=0,
            high=None,
            kind="mean",
            gauge="kpi_pages_per_session",
            unit="none",
        ),
        GoalKpi(
            "time_on_site",
            "time on site",
            SITE,
            SITE,
            {
                "duration": _site("kpi_session_duration_seconds_total"),
                "ended": _site("kpi_ended_sessions_total"),
            },
            value="{duration} / {ended}",
            volume="{ended}",
            volume_unit="ended sessions",
            low=0,
            high=None,
            kind="mean",
            gauge="kpi_time_on_site_seconds",
            unit="s",
        ),
    )
}
