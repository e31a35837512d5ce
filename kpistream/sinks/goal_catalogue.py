"""The KPIs a goal can name, as PromQL over the exporter's ``_total`` counters.

Each KPI is a formula over *parts*: a counter's increase over the alert window (or, for
followers, a gauge), summed to the goal's scope. Ratios are always a ratio of summed
increases, never an average of ratios (docs/kpis.md). Formulas use ``{part}`` for a part's
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


def _site_quotient(
    name: str,
    title: str,
    parts: tuple[tuple[str, str], tuple[str, str]],
    *,
    volume_unit: str,
    gauge: str,
    kind: Literal["ratio", "mean"],
    unit: str = "percentunit",
) -> GoalKpi:
    """A per-site KPI that is one counter's increase over another's (the volume)."""
    (top, top_metric), (bottom, bottom_metric) = parts
    return GoalKpi(
        name,
        title,
        SITE,
        SITE,
        {top: _site(top_metric), bottom: _site(bottom_metric)},
        value=f"{{{top}}} / {{{bottom}}}",
        volume=f"{{{bottom}}}",
        volume_unit=volume_unit,
        low=0,
        high=1 if kind == "ratio" else None,
        kind=kind,
        gauge=gauge,
        unit=unit,
    )


def _abandonment(thing: str) -> GoalKpi:
    """Carts or checkouts abandoned / decided (abandoned + completed)."""
    return GoalKpi(
        f"{thing}_abandonment_rate",
        f"{thing} abandonment rate",
        SITE,
        SITE,
        {
            "abandoned": _site(f"kpi_{thing}s_abandoned_total"),
            "completed": _site(f"kpi_{thing}s_completed_total"),
        },
        value="{abandoned} / ({abandoned} + {completed})",
        volume="({abandoned} + {completed})",
        volume_unit=f"{thing}s decided",
        volume_name=f"kpi_{thing}s_decided",
        low=0,
        high=1,
        kind="ratio",
        gauge=f"kpi_{thing}_abandonment_ratio",
    )


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
        _site_quotient(
            "engagement_rate",
            "engagement rate",
            (("engaged", "kpi_engaged_sessions_total"), ("sessions", "kpi_sessions_total")),
            volume_unit="sessions",
            gauge="kpi_engagement_ratio",
            kind="ratio",
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
        _abandonment("cart"),
        _abandonment("checkout"),
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
        _site_quotient(
            "csat",
            "customer satisfaction",
            (("satisfied", "kpi_csat_satisfied_total"), ("answers", "kpi_csat_answers_total")),
            volume_unit="answers",
            gauge="kpi_csat_ratio",
            kind="ratio",
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
        _site_quotient(
            "pages_per_session",
            "pages per session",
            (("page_views", "kpi_page_views_total"), ("sessions", "kpi_sessions_total")),
            volume_unit="sessions",
            gauge="kpi_pages_per_session",
            kind="mean",
            unit="none",
        ),
        _site_quotient(
            "time_on_site",
            "time on site",
            (
                ("duration", "kpi_session_duration_seconds_total"),
                ("ended", "kpi_ended_sessions_total"),
            ),
            volume_unit="ended sessions",
            gauge="kpi_time_on_site_seconds",
            kind="mean",
            unit="s",
        ),
    )
}
