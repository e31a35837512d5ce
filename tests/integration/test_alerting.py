"""Goals -> rules -> promtool; goals + catalogue -> dashboards; Alertmanager config (issue 5)."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path

import yaml

from kpistream.alerting import dashboards, rules
from kpistream.alerting.goals import Goal, load_checked
from kpistream.config.settings import load
from tests.support.stack import require_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GOALS = DEPLOY / "goals.example.yml"
RULES = DEPLOY / "prometheus" / "rules" / "kpistream.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "rules" / "kpistream.rules.test.yml"
BOARDS = DEPLOY / "grafana" / "dashboards"
#: The example goals' deadlines lie after this day.
TODAY = datetime.date(2026, 11, 23)


def goals() -> list[Goal]:
    return load_checked(GOALS, today=TODAY)


def test_generated_rules_and_dashboards_are_current() -> None:
    stale = "is stale: run `make deploy`"
    assert RULES.read_text() == rules.render(goals()), f"{RULES} {stale}"
    settings = load({}, env={})
    kpis = dashboards.render(dashboards.kpi_dashboard(settings, goals()))
    assert (BOARDS / "kpis.json").read_text() == kpis, f"kpis.json {stale}"
    pipeline = dashboards.render(dashboards.pipeline_dashboard())
    assert (BOARDS / "pipeline.json").read_text() == pipeline, f"pipeline.json {stale}"


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = require_binary("promtool", "prometheus")
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    groups = yaml.safe_load(RULES.read_text())["groups"]
    count = sum(len(g["rules"]) for g in groups)
    assert f"SUCCESS: {count} rules found" in check.stdout
    # Sustained abandonment spike fires; shorter than `for` does not; below the minimum
    # volume does not; a relative conversion drop fires, not without a baseline volume.
    test = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {
        "ShopCartAbandonment",
        "ShopPurchaseConversion",
        "KpistreamPartitionStalled",
        "KpistreamNoWorkerConsuming",
    }


def test_recording_rules_are_named_by_level_and_never_average_ratios() -> None:
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(RULES.read_text())["groups"]}
    records = groups[rules.RECORDING_GROUP]
    for rule in records:
        assert re.fullmatch(
            r"[a-z_]+:kpi_[a-z_]+:(increase|ratio|mean|score)\w*|[a-z_]+:kpi_\w+:sum",
            rule["record"],
        ), rule
        assert "avg" not in rule["expr"] and "_ratio" not in rule["expr"], rule
    by_name = {r["record"]: r["expr"] for r in records}
    assert by_name["site:kpi_sessions:increase15m"] == (
        "sum by (site) (increase(kpi_sessions_total[15m]))"
    )
    assert by_name["site_goal:kpi_conversion_rate:ratio1h"] == (
        "site_goal:kpi_conversions:increase1h / on (site) group_left site:kpi_sessions:increase1h"
    )
    alerts = {r["alert"]: r for r in groups[rules.ALERTING_GROUP]}
    assert len(alerts) == len(goals())
    bounce = alerts["ShopBounceRate"]
    assert bounce["expr"] == (
        'site:kpi_bounce_rate:ratio15m{site="shop.example"} > 0.6\n'
        'and on (site) site:kpi_sessions:increase15m{site="shop.example"} >= 200'
    )
    assert bounce["for"] == "15m"
    assert bounce["labels"] == {
        "severity": "warning",
        "owner": "web-team",
        "goal_name": "shop-bounce-rate",
        "kpi": "bounce_rate",
    }
    assert "above 60%" in bounce["annotations"]["summary"]
    assert "{{ $value | humanizePercentage }}" in bounce["annotations"]["summary"]
    assert "Goal: below 45% by 2027-06-30" in bounce["annotations"]["description"]


def test_the_kpi_dashboard_shows_every_catalogue_gauge_once_with_goal_thresholds() -> None:
    board = json.loads((BOARDS / "kpis.json").read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Reach", "Interaction", "Transaction", "Experience"]
    exprs = dashboards.panel_exprs((BOARDS / "kpis.json").read_text())
    shown = [e.split("{", 1)[0] for e in exprs]
    assert sorted(shown) == sorted(g.metric for g in dashboards.catalogue_gauges())
    assert {v["name"] for v in board["templating"]["list"]} == {"site", "window"}
    panels = {p["targets"][0]["expr"].split("{")[0]: p for p in board["panels"] if "targets" in p}
    bounce = panels["kpi_bounce_rate"]["fieldConfig"]["defaults"]
    steps = [(s["value"], s["color"]) for s in bounce["thresholds"]["steps"]]
    assert steps == [(None, "transparent"), (0.45, "green"), (0.6, "red")]
    assert bounce["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert "thresholds" not in panels["kpi_page_views"]["fieldConfig"]["defaults"]
    pipeline = dashboards.panel_exprs((BOARDS / "pipeline.json").read_text())
    for metric in (
        "kpistream_events_processed_total",
        "kpistream_events_rejected_total",
        "kpistream_partition_lag_records",
        "kpistream_partition_watermark_age_seconds",
        "kpistream_partition_stalled",
        "kpistream_events_rerouted_total",
        "kpistream_label_values",
        "kpistream_redis_up",
    ):
        assert any(metric in expr for expr in pipeline), metric


def test_alertmanager_config_passes_amtool() -> None:
    amtool = require_binary("amtool", "prometheus-alertmanager")
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    owners = {g.owner for g in goals()}
    routed = set(re.findall(r'owner="([\w-]+)"', config.read_text()))
    assert routed <= owners
