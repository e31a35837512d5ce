"""The demo's live KPI tables, built from the same metric families the exporter serves."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Group
from rich.table import Table

from kpistream.sinks import fields as F
from kpistream.sinks.kpi_collector import kpi_families
from kpistream.sinks.window_store import StoreSnapshot

Labels = frozenset[tuple[str, str]]

REACH: tuple[tuple[str, str, str], ...] = (
    # header, metric, format
    ("sessions", "kpi_sessions", "{:,.0f}"),
    ("visitors", "kpi_unique_visitors", "{:,.0f}"),
    ("bounce", "kpi_bounce_ratio", "{:.1%}"),
    ("engaged", "kpi_engagement_ratio", "{:.1%}"),
    ("pages", "kpi_pages_per_session", "{:.2f}"),
    ("on site", "kpi_time_on_site_seconds", "{:.0f} s"),
)
RESULTS: tuple[tuple[str, str, str], ...] = (
    ("cart ab.", "kpi_cart_abandonment_ratio", "{:.1%}"),
    ("checkout ab.", "kpi_checkout_abandonment_ratio", "{:.1%}"),
    ("NPS", "kpi_net_promoter_score", "{:+.0f}"),
    ("CSAT", "kpi_csat_ratio", "{:.0%}"),
)


def _fmt(template: str, value: float | None) -> str:
    return "-" if value is None else template.format(value)


def kpi_table(snapshot: StoreSnapshot, window: str) -> Group:
    by_metric: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in kpi_families(snapshot):
        for sample in family.samples:
            sample_labels = dict(sample.labels)
            if sample_labels.pop("window", window) == window:
                by_metric[sample.name][frozenset(sample_labels.items())] = sample.value

    def site_value(metric: str, site: str, **extra: str) -> float | None:
        return by_metric[metric].get(frozenset({"site": site, **extra}.items()))

    counts: dict[str, int] = snapshot.windows.get(window) or {}
    sites = sorted({dict(k)["site"] for k in by_metric["kpi_sessions"]})
    traffic = Table(title=f"kpistream: live KPIs, last {window} of event time", expand=False)
    results = Table(expand=False)
    for table, columns, extra in (
        (traffic, REACH, ("CTR",)),
        (results, RESULTS, ("conv.", "revenue")),
    ):
        table.add_column("site")
        for header in [c[0] for c in columns] + list(extra):
            table.add_column(header, justify="right")
    for site in sites:
        impressions = clicks = 0
        for name, n in counts.items():
            kind, *parts = F.split(name)
            if parts and parts[0] == site:
                impressions += n if kind == F.IMPRESSIONS else 0
                clicks += n if kind == F.CLICKS else 0
        ctr = _fmt("{:.2%}", clicks / impressions if impressions else None)
        traffic.add_row(site, *[_fmt(t, site_value(m, site)) for _, m, t in REACH], ctr)
        revenue = [
            f"{v:,.0f} {dict(k)['currency']}"
            for k, v in by_metric["kpi_revenue"].items()
            if dict(k)["site"] == site
        ]
        results.add_row(
            site,
            *[_fmt(t, site_value(m, site)) for _, m, t in RESULTS],
            _fmt("{:.1%}", site_value("kpi_conversion_ratio", site, goal="purchase")),
            ", ".join(revenue) or "-",
        )
    t = snapshot.totals
    rejected = sum(v for k, v in t.items() if k.startswith(F.REJECTED))
    results.caption = (
        f"events processed {t[F.PROCESSED]:,}  rejected {rejected:,}  late {t[F.LATE]:,}  "
        f"duplicate {t[F.DUPLICATE]:,}  partitions {snapshot.partitions}"
    )
    social = Table(title="social accounts", expand=False)
    for header in ("network", "account", "followers", "engagement", "post impressions"):
        social.add_column(header, justify="left" if header in ("network", "account") else "right")
    accounts = sorted(by_metric["kpi_followers"].items(), key=lambda i: sorted(i[0]))
    for account, followers in accounts:
        rate = by_metric["kpi_social_engagement_ratio"].get(account)
        reach = by_metric["kpi_post_impressions"].get(account)
        named = dict(account)
        social.add_row(
            named["network"],
            named["account"],
            f"{followers:,.0f}",
            _fmt("{:.2%}", rate),
            _fmt("{:,.0f}", reach),
        )
    return Group(traffic, results, social)
