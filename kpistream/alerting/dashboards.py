"""Grafana dashboards generated from the KPI catalogue and the goals (grafana-foundation-sdk).

Two dashboards: *kpistream KPIs*, one panel per window gauge the exporter declares, in rows
for the tiers reach, interaction, transaction and experience, with a site and a window
variable and each goal's alert threshold (red) and target (green) drawn on its KPI's panel;
and *kpistream pipeline*, the health of the stream (events/s, rejects by reason, lag,
watermark age, Redis up, batch time, fenced writes). A test keeps every declared gauge on
the KPI dashboard, so the dashboards cannot drift from the catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus as gp
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gm
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode

from kpistream.alerting.formulas import CATALOGUE
from kpistream.alerting.goals import Goal
from kpistream.config.settings import Settings
from kpistream.kpis import catalogue as K

#: The provisioned Prometheus datasource (deploy/grafana/provisioning/datasources).
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="kpistream-prometheus")
KPI_UID = "kpistream-kpis"
PIPELINE_UID = "kpistream-pipeline"


@dataclass(frozen=True, slots=True)
class Gauge:
    metric: str
    labels: tuple[str, ...]  # without window
    doc: str
    windowed: bool
    unit: str = "short"  # Grafana's
    long_window: bool = False  # kept in day buckets: only the long window exists


def catalogue_gauges() -> list[Gauge]:
    """Every gauge the exporter declares, as the dashboard must show them."""
    out = [
        Gauge(c.metric, c.labels, c.help, True, K.GRAFANA_UNIT[c.unit], c.long_window)
        for c in K.COUNTS
        if c.window
    ]
    out += [
        Gauge(
            q.metric,
            q.labels,
            q.help,
            True,
            K.GRAFANA_UNIT[q.unit],
            all(isinstance(d, K.Count) and d.long_window for d in q.denominator),
        )
        for q in K.QUOTIENTS
    ]
    out += [Gauge(f.metric, f.labels, f.help, f.windowed) for f in K.FAMILIES if f.type == "gauge"]
    return out


def tiers() -> dict[str, list[Gauge]]:
    """The KPI dashboard's rows: each tier's gauges in catalogue order (counts, quotients, then
    the other families)."""
    by_metric = {g.metric: g for g in catalogue_gauges()}
    rows: dict[str, list[Gauge]] = {tier.value: [] for tier in K.Tier}
    entries: tuple[K.Entry, ...] = (*K.COUNTS, *K.QUOTIENTS, *K.FAMILIES)
    for entry in entries:
        if entry.tier is not None and entry.metric in by_metric:
            rows[entry.tier.value].append(by_metric[entry.metric])
    return rows


@dataclass(frozen=True, slots=True)
class Query:
    title: str
    expr: str
    legend: str


def kpi_queries(settings: Settings) -> Iterator[tuple[str, Gauge, Query]]:
    """(tier, gauge, query) of every KPI panel, in dashboard order."""
    long_window = next(iter(settings.long_windows))
    for tier, gauges in tiers().items():
        for gauge in gauges:
            metric = gauge.metric
            matchers = []
            if "site" in gauge.labels:
                matchers.append('site=~"$site"')
            if gauge.windowed:
                window = long_window if gauge.long_window else "$window"
                matchers.append(f'window="{window}"')
            legend = " ".join(f"{{{{{label}}}}}" for label in gauge.labels) or metric
            expr = f"{metric}{{{','.join(matchers)}}}"
            yield tier, gauge, Query(gauge.doc, expr, legend)


def _thresholds(metric: str, goals: list[Goal]) -> tuple[list[gm.Threshold], list[str]]:
    """Alert thresholds (red) and targets (green) of the goals on this KPI, and their notes."""
    steps: dict[float, str] = {}
    notes = []
    for goal in goals:
        spec = CATALOGUE[goal.kpi]
        if spec.gauge != metric or goal.alert is None or goal.target is None:
            continue
        steps[goal.target] = "green"
        scope = ", ".join(f"{k}={v}" for k, v in goal.ordered_scope())
        note = f"Goal {goal.name} ({scope}): {goal.direction} {goal.target:g} by {goal.deadline}"
        if goal.alert.threshold is not None:
            steps[goal.alert.threshold] = "red"
            note += f"; alert at {goal.alert.threshold:g}"
        notes.append(note)
    base = [gm.Threshold(value=None, color="transparent")]
    return base + [gm.Threshold(value=v, color=c) for v, c in sorted(steps.items())], notes


def _panel(query: Query, *, unit: str, description: str = "") -> ts.Panel:
    return (
        ts.Panel()
        .title(query.title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(8)
        .with_target(
            gp.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id("A")
            .datasource(DATASOURCE)
        )
    )


def _board(title: str, uid: str, *, refresh: str, since: str) -> gd.Dashboard:
    return (
        gd.Dashboard(title)
        .uid(uid)
        .tags(["kpistream", "generated"])
        .refresh(refresh)
        .time(since, "now")
    )


def kpi_dashboard(settings: Settings, goals: list[Goal]) -> gd.Dashboard:
    windows = list(settings.window_minutes())
    default = "1h" if "1h" in windows else windows[0]
    board = (
        _board("kpistream KPIs", KPI_UID, refresh="30s", since="now-6h")
        .with_variable(
            gd.QueryVariable("site")
            .label("site")
            .datasource(DATASOURCE)
            .query("label_values(kpi_sessions, site)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_variable(
            gd.CustomVariable("window")
            .label("window")
            .values(",".join(windows))
            .current(gm.VariableOption(text=default, value=default, selected=True))
        )
    )
    tier = None
    for row, gauge, query in kpi_queries(settings):
        if row != tier:
            board = board.with_row(gd.Row(row))
            tier = row
        steps, notes = _thresholds(gauge.metric, goals)
        panel = _panel(query, unit=gauge.unit, description="\n".join(notes))
        if len(steps) > 1:
            panel = panel.thresholds(
                gd.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE).steps(steps)
            ).thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
        board = board.with_panel(panel)
    return board


PIPELINE: tuple[tuple[Query, str], ...] = (
    (
        Query(
            "Events processed per second",
            "sum(rate(kpistream_events_processed_total[$__rate_interval]))",
            "processed",
        ),
        "short",
    ),
    (
        Query(
            "Events rejected per second, by reason",
            "sum by (reason) (rate(kpistream_events_rejected_total[$__rate_interval]))",
            "{{reason}}",
        ),
        "short",
    ),
    (
        Query(
            "Late and duplicate events per second",
            "sum(rate(kpistream_events_late_total[$__rate_interval])) or vector(0)",
            "late",
        ),
        "short",
    ),
    (
        Query(
            "Consumer lag by partition (records)",
            "max by (topic, partition) (kpistream_partition_lag_records)",
            "{{topic}}:{{partition}}",
        ),
        "short",
    ),
    (
        Query(
            "Stalled partitions (a batch that cannot be read)",
            "sum(kpistream_partition_stalled)",
            "stalled",
        ),
        "short",
    ),
    (
        Query(
            "Events forwarded to their owning partition per second",
            "sum(rate(kpistream_events_rerouted_total[$__rate_interval]))",
            "rerouted",
        ),
        "short",
    ),
    (
        Query(
            "Label budgets used (values / budget)",
            "max by (dimension) (kpistream_label_values) / "
            "max by (dimension) (kpistream_label_budget)",
            "{{dimension}}",
        ),
        "percentunit",
    ),
    (
        Query(
            "Watermark age by partition (event time behind the wall clock)",
            "max by (topic, partition) (kpistream_partition_watermark_age_seconds)",
            "{{topic}}:{{partition}}",
        ),
        "s",
    ),
    (Query("Redis up", "min(kpistream_redis_up)", "up"), "short"),
    (
        Query(
            "Batch processing time, p95",
            "histogram_quantile(0.95, sum by (le) "
            "(rate(kpistream_batch_processing_seconds_bucket[$__rate_interval])))",
            "p95",
        ),
        "s",
    ),
    (
        Query(
            "Fenced writes (zombie workers) per second",
            "sum(rate(kpistream_fenced_writes_total[$__rate_interval]))",
            "fenced",
        ),
        "short",
    ),
    (Query("Partitions with state", "max(kpistream_partitions)", "partitions"), "short"),
)


def pipeline_dashboard() -> gd.Dashboard:
    board = _board("kpistream pipeline", PIPELINE_UID, refresh="10s", since="now-1h").with_row(
        gd.Row("Health")
    )
    for query, unit in PIPELINE:
        board = board.with_panel(_panel(query, unit=unit))
    return board


def render(board: gd.Dashboard) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(board.build()) + "\n"


def panel_exprs(rendered: str) -> list[str]:
    """Every query expression of a rendered dashboard (for tests and checks)."""
    board = json.loads(rendered)
    return [t["expr"] for p in board["panels"] if "targets" in p for t in p["targets"]]
