"""The demo's live KPI tables, built from the same metric families the exporter serves."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Group
from rich.table import Table

from kpistream.contract import health as H
from kpistream.contract.read_model import StoreSnapshot
from kpistream.kpis import catalogue as K
from kpistream.kpis.series import parse
from kpistream.sinks.kpi_collector import kpi_families

Labels = frozenset[tuple[str, str]]

#: How the demo prints a value, by the KPI's unit.
FORMATS: dict[K.Unit, str] = {
    "count": "{:,.0f}",
    "ratio": "{:.1%}",
    "seconds": "{:.0f} s",
    "pages": "{:.2f}",
    "points": "{:+.0f}",
    "currency": "{:,.2f}",
}
FIRST_TABLE = (K.Tier.REACH, K.Tier.INTERACTION)


def _columns(first: bool) -> tuple[tuple[str, str, str], ...]:
    """(header, metric, format) of the quotients the catalogue gives a demo column."""
    return tuple(
        (q.column, q.metric, FORMATS[q.unit])
        for q in K.QUOTIENTS
        if q.column is not None and (q.tier in FIRST_TABLE) == first
    )


REACH: tuple[tuple[str, str, str], ...] = (
    ("sessions", K.SESSIONS.metric, FORMATS["count"]),
    ("visitors", K.FAMILIES[0].metric, FORMATS["count"]),
    *_columns(True),
)
RESULTS = _columns(False)


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
    sites = sorted({dict(k)["site"] for k in by_metric[K.SESSIONS.metric]})
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
            series = parse(name)
            if series is not None and series.labels.get("site") == site:
                impressions += n if series.kind is K.IMPRESSIONS else 0
                clicks += n if series.kind is K.CLICKS else 0
        ctr = _fmt("{:.2%}", clicks / impressions if impressions else None)
        traffic.add_row(site, *[_fmt(t, site_value(m, site)) for _, m, t in REACH], ctr)
        revenue = [
            f"{v:,.0f} {dict(k)['currency']}"
            for k, v in by_metric[K.REVENUE.metric].items()
            if dict(k)["site"] == site
        ]
        results.add_row(
            site,
            *[_fmt(t, site_value(m, site)) for _, m, t in RESULTS],
            _fmt("{:.1%}", site_value(K.CONVERSION_RATE.metric, site, goal="purchase")),
            ", ".join(revenue) or "-",
        )
    t = snapshot.health
    rejected = sum(v for k, v in t.items() if k.startswith(H.REJECTED))
    results.caption = (
        f"events processed {t[H.PROCESSED]:,}  rejected {rejected:,}  late {t[H.LATE]:,}  "
        f"duplicate {t[H.DUPLICATE]:,}  partitions {snapshot.partitions}"
    )
    social = Table(title="social accounts", expand=False)
    for header in ("network", "account", "followers", "engagement", "post impressions"):
        social.add_column(header, justify="left" if header in ("network", "account") else "right")
    accounts = sorted(by_metric[K.FOLLOWERS.metric].items(), key=lambda i: sorted(i[0]))
    for account, followers in accounts:
        rate = by_metric[K.SOCIAL_ENGAGEMENT_RATE.metric].get(account)
        reach = by_metric[K.POST_IMPRESSIONS.metric].get(account)
        named = dict(account)
        social.add_row(
            named["network"],
            named["account"],
            f"{followers:,.0f}",
            _fmt("{:.2%}", rate),
            _fmt("{:,.0f}", reach),
        )
    return Group(traffic, results, social)
