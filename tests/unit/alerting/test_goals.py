"""SMART goals: every letter's failure is named, in one line per problem."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpistream.alerting.dashboards import catalogue_gauges
from kpistream.alerting.formulas import CATALOGUE
from kpistream.alerting.goals import GoalsError, check, load, load_checked
from kpistream.cli import main
from kpistream.kpis import catalogue as K

TODAY = datetime.date(2026, 11, 23)
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "goals.example.yml"

GOOD: dict[str, Any] = {
    "name": "shop-bounce",
    "kpi": "bounce_rate",
    "scope": {"site": "shop.example"},
    "target": 0.45,
    "direction": "below",
    "deadline": "2027-03-31",
    "owner": "web-team",
    "alert": {"threshold": 0.6, "window": "15m", "for": "15m", "min_volume": 200},
}


def problems(tmp_path: Path, **changes: Any) -> list[str]:
    goal = {**GOOD, **changes}
    goal = {k: v for k, v in goal.items() if v is not None}
    path = tmp_path / "goals.yml"
    path.write_text(yaml.safe_dump({"goals": [goal]}))
    return check(load(path), today=TODAY)


def alert(**changes: Any) -> dict[str, Any]:
    out = {**GOOD["alert"], **changes}
    return {k: v for k, v in out.items() if v is not None}


def test_the_shipped_example_goals_are_smart() -> None:
    goals = load_checked(EXAMPLE, today=TODAY)
    kpis = {g.kpi for g in goals}
    assert {
        "bounce_rate",
        "click_through_rate",
        "cart_abandonment_rate",
        "social_engagement_rate",
        "conversion_rate",
    } <= kpis
    assert any(g.alert is not None and g.alert.relative for g in goals)


def test_a_smart_goal_has_no_problems(tmp_path: Path) -> None:
    assert problems(tmp_path) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"kpi": "bounce"}, "not specific: unknown KPI 'bounce'"),
        ({"scope": {}}, "not specific: the scope must name site for bounce_rate"),
        (
            {"scope": {"site": "s", "campaign": "c"}},
            "not specific: bounce_rate has no label campaign (scope: site)",
        ),
        ({"direction": None}, "not specific: no direction"),
        ({"target": None}, "not measurable: no target value"),
        ({"target": 1.5}, "not measurable: target 1.5 is outside 0..1"),
        ({"alert": None}, "not measurable: no alert"),
        (
            {"alert": alert(threshold=1.3)},
            "not measurable: impossible threshold 1.3: a bounce rate lies in 0..1",
        ),
        (
            {"alert": alert(threshold=None)},
            "not measurable: the alert needs a threshold or a worse_by, not both",
        ),
        ({"alert": alert(window=None)}, "not measurable: the alert has no window"),
        ({"alert": alert(window="15 minutes")}, "not measurable: alert window '15 minutes'"),
        ({"alert": alert(worse_by=1.5, threshold=None)}, "not measurable: worse_by 1.5"),
        ({"target": 0.0}, "not achievable: a bounce rate of 0 is never reached"),
        ({"owner": None}, "not relevant: no owner"),
        (
            {"alert": alert(threshold=0.4)},
            "not realistic: the alert threshold 0.4 is not worse than the target 0.45",
        ),
        ({"alert": alert(min_volume=None)}, "not realistic: the alert needs a min_volume"),
        ({"deadline": None}, "not time-bound: no deadline"),
        ({"deadline": "2026-11-22"}, "not time-bound: the deadline 2026-11-22 has passed"),
    ],
)
def test_each_failing_letter_is_named(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    found = problems(tmp_path, **changes)
    assert len(found) == 1, found
    assert found[0].startswith(f"goal shop-bounce: {expected}"), found


def test_an_above_goal_alerts_below_its_target(tmp_path: Path) -> None:
    ctr = {
        "kpi": "click_through_rate",
        "scope": {"site": "s", "campaign": "c"},
        "target": 0.03,
        "direction": "above",
    }
    assert problems(tmp_path, **ctr, alert=alert(threshold=0.01)) == []
    [problem] = problems(tmp_path, **ctr, alert=alert(threshold=0.05))
    assert "not realistic: the alert threshold 0.05 is not worse than the target 0.03" in problem


def test_a_goals_file_of_the_wrong_shape_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "goals.yml"
    path.write_text("goals:\n  - name: x\n    kpi: bounce_rate\n    colour: red\n")
    with pytest.raises(GoalsError, match=r"goals.yml: Object contains unknown field `colour`"):
        load(path)
    path.write_text("goals: [")
    with pytest.raises(GoalsError, match=r"goals.yml: not YAML"):
        load(path)


def test_goals_check_prints_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "goals.yml"
    bad = {**GOOD, "deadline": None, "alert": alert(threshold=1.3)}
    path.write_text(yaml.safe_dump({"goals": [{k: v for k, v in bad.items() if v}]}))
    assert main(["goals", "check", str(path), "--today", "2026-11-23"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"kpistream: error: {path}: goal shop-bounce: not measurable: impossible threshold "
        "1.3: a bounce rate lies in 0..1",
        f"{path}: goal shop-bounce: not time-bound: no deadline",
    ]
    assert main(["goals", "check", str(EXAMPLE), "--today", "2026-11-23"]) == 0
    assert "5 goals, all SMART" in capsys.readouterr().out


def test_the_goal_catalogue_uses_only_what_the_exporter_declares() -> None:
    counters = {f"{c.metric}_total" for c in K.COUNTS if c.total}
    gauges = {g.metric for g in catalogue_gauges()}
    for spec in CATALOGUE.values():
        assert spec.gauge in gauges, spec.name
        assert set(spec.required) <= set(spec.scope), spec.name
        for part in spec.parts.values():
            assert part.metric in (gauges if part.gauge else counters), (spec.name, part)
            assert set(part.labels) <= set(spec.scope), (spec.name, part)
