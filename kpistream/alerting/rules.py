"""Prometheus recording and alerting rules generated from checked goals.

Recording rules are named ``level:metric:operation`` (Prometheus' convention): the level is
the goal's scope labels, the operation the window, e.g. ``site:kpi_sessions:increase15m`` and
``site:kpi_bounce_rate:ratio15m``. Each KPI is computed from the summed increases of its
``_total`` counters, never from averaged ratios. Alerts compare that KPI with the goal's
threshold (absolute) or with the same window ``compared_to`` ago (relative), and only where
the window holds at least ``min_volume`` (sessions, impressions, carts ...), now and, for a
relative alert, in the baseline too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from kpistream.alerting.formulas import GoalKpi, Part
from kpistream.alerting.goals import Goal

RECORDING_GROUP = "kpistream-kpis"
ALERTING_GROUP = "kpistream-goals"
PIPELINE_GROUP = "kpistream-pipeline"

#: Alerts on the pipeline itself, whatever the goals: a partition that cannot be read, no
#: worker consuming, a Redis that lost its state, a label budget that folds new values.
PIPELINE_ALERTS: list[dict[str, Any]] = [
    {
        "alert": "KpistreamPartitionStalled",
        "expr": "max by (topic, partition) (kpistream_partition_stalled) == 1",
        "for": "2m",
        "labels": {"severity": "critical", "owner": "pipeline"},
        "annotations": {
            "summary": "Partition {{ $labels.topic }}:{{ $labels.partition }} is stalled",
            "description": (
                "A record batch of {{ $labels.topic }}:{{ $labels.partition }} cannot be read "
                "(a codec this install lacks, or a corrupt batch); its events are not counted "
                "and its lag grows. The worker log names the offset."
            ),
        },
    },
    {
        "alert": "KpistreamNoWorkerConsuming",
        "expr": "max(kpistream_worker_up) == 0",
        "for": "1m",
        "labels": {"severity": "critical", "owner": "pipeline"},
        "annotations": {
            "summary": "No kpistream worker is consuming",
            "description": (
                "No worker has reported a partition for over a minute: the KPIs stand still "
                "while events wait (kpistream_consumer_lag_records, read from the broker, "
                "shows how many). Start `kpistream worker`, or read its log for why it exits."
            ),
        },
    },
    {
        "alert": "KpistreamStateRebuilt",
        "expr": "increase(kpistream_state_resets_total[15m]) > 0",
        "labels": {"severity": "warning", "owner": "pipeline"},
        "annotations": {
            "summary": "Redis lost kpistream's state; partitions are rebuilt from Kafka",
            "description": (
                "{{ $value }} partitions were found without state in the last 15m and are "
                "being rebuilt from the earliest offset the topics retain; history older "
                "than the retention is gone. Check Redis persistence."
            ),
        },
    },
    {
        "alert": "KpistreamLabelBudgetFull",
        "expr": "max by (dimension) (kpistream_label_values) >= "
        "max by (dimension) (kpistream_label_budget) and "
        "max by (dimension) (delta(kpistream_label_refused_values[1h])) > 0",
        "for": "15m",
        "labels": {"severity": "info", "owner": "pipeline"},
        "annotations": {
            "summary": "The label budget of {{ $labels.dimension }} is full",
            "description": (
                "New {{ $labels.dimension }} values fold into 'other'. Raise "
                "KPISTREAM_MAX_*, wait for quiet values to free their slots "
                "(KPISTREAM_LABEL_IDLE_DAYS), or `kpistream labels reset`."
            ),
        },
    },
]


@dataclass(frozen=True, slots=True)
class GoalAlert:
    """One goal's alert, with the parts a test can evaluate on their own."""

    goal: Goal
    value: str  # the KPI over the window, in the goal's scope
    volume: str  # what min_volume counts, in the goal's scope
    condition: str  # the whole alert expression
    baseline: tuple[str, ...] = ()  # a relative alert's value and volume `compared_to` ago

    @property
    def name(self) -> str:
        return "".join(part.capitalize() for part in self.goal.name.split("-"))


def _level(labels: list[str]) -> str:
    return "_".join(labels)


def _stem(metric: str) -> str:
    return metric.removesuffix("_total")


def _by(part: Part, labels: list[str]) -> list[str]:
    """The scope labels this part has: what it is summed by."""
    return [label for label in labels if label in part.labels]


def _matchers(goal: Goal, labels: list[str]) -> str:
    pairs = [f"{label}={json.dumps(goal.scope[label])}" for label in labels]
    return "{" + ",".join(pairs) + "}"


class _Builder:
    def __init__(self) -> None:
        self.records: dict[str, str] = {}  # record name -> expr, in first-use order

    def record(self, name: str, expr: str) -> str:
        assert self.records.get(name, expr) == expr, name
        self.records[name] = expr
        return name

    def part(self, part: Part, labels: list[str], window: str) -> str:
        by = _by(part, labels)
        if part.gauge:
            return self.record(
                f"{_level(by)}:{part.metric}:sum", f"sum by ({', '.join(by)}) ({part.metric})"
            )
        return self.record(
            f"{_level(by)}:{_stem(part.metric)}:increase{window}",
            f"sum by ({', '.join(by)}) (increase({part.metric}[{window}]))",
        )

    def formula(self, spec: GoalKpi, template: str, labels: list[str], window: str) -> str:
        names: dict[str, str] = {}
        for key, part in spec.parts.items():
            if "{" + key + "}" not in template:
                continue
            names[key] = self.part(part, labels, window)
            by = _by(part, labels)
            names[f"on_{key}"] = f"on ({', '.join(by)}) group_left" if by != labels else ""
        return " ".join(template.format(**names).split())

    def alert(self, goal: Goal) -> GoalAlert:
        spec, alert = goal.spec, goal.alert
        assert alert is not None and alert.window is not None and alert.min_volume is not None
        labels = [label for label, _ in goal.ordered_scope()]
        window = alert.window
        value_name = self.record(
            f"{_level(labels)}:kpi_{spec.name}:{spec.kind}{window}",
            self.formula(spec, spec.value, labels, window),
        )
        common = _volume_labels(spec)
        volume_labels = [label for label in labels if label in common]
        volume_expr = self.formula(spec, spec.volume, volume_labels, window)
        volume_name = volume_expr
        if volume_expr not in self.records:  # a formula, not one part: record it too
            assert spec.volume_name is not None, spec.name
            volume_name = self.record(
                f"{_level(volume_labels)}:{spec.volume_name}:increase{window}", volume_expr
            )
        value = value_name + _matchers(goal, labels)
        volume = volume_name + _matchers(goal, volume_labels)
        worse = ">" if goal.direction == "below" else "<"
        on = f"on ({', '.join(volume_labels)})"
        if alert.threshold is not None:
            condition = (
                f"{value} {worse} {alert.threshold:g}\nand {on} {volume} >= {alert.min_volume}"
            )
        else:
            assert alert.worse_by is not None
            factor = 1 + alert.worse_by if goal.direction == "below" else 1 - alert.worse_by
            back = f"offset {alert.compared_to}"
            baseline = (f"{value} {back}", f"{volume} {back}")
            condition = (
                f"{value} {worse} {factor:g} * ({baseline[0]})\n"
                f"and {on} {volume} >= {alert.min_volume}\n"
                f"and {on} ({baseline[1]}) >= {alert.min_volume}"
            )
            return GoalAlert(goal, value, volume, condition, baseline)
        return GoalAlert(goal, value, volume, condition)


def _volume_labels(spec: GoalKpi) -> set[str]:
    """Labels every part of the volume formula has (the volume series keeps those)."""
    used = [part for key, part in spec.parts.items() if "{" + key + "}" in spec.volume]
    return set.intersection(*(set(part.labels) for part in used))


def alerts(goals: list[Goal]) -> tuple[list[GoalAlert], dict[str, str]]:
    """Each goal's alert, and the recording rules they need (name -> expr)."""
    builder = _Builder()
    return [builder.alert(goal) for goal in goals], builder.records


def _threshold_text(goal: Goal) -> str:
    spec, alert = goal.spec, goal.alert
    assert alert is not None
    side = "above" if goal.direction == "below" else "below"
    if alert.threshold is not None:
        return f"{side} {_fmt(spec, alert.threshold)}"
    assert alert.worse_by is not None
    return f"{alert.worse_by:.0%} {side} its level {alert.compared_to} earlier"


def _fmt(spec: GoalKpi, value: float) -> str:
    return f"{round(value * 100, 4):g}%" if spec.percent else f"{value:g}"


def _value_template(spec: GoalKpi) -> str:
    return "{{ $value | humanizePercentage }}" if spec.percent else '{{ printf "%.2f" $value }}'


def rule_groups(goals: list[Goal]) -> dict[str, Any]:
    """The rule file: one group of recording rules, one of alerts."""
    goal_alerts, records = alerts(goals)
    alerting = []
    for a in goal_alerts:
        goal, spec, alert = a.goal, a.goal.spec, a.goal.alert
        assert alert is not None
        scope = ", ".join(f"{k}={v}" for k, v in goal.ordered_scope())
        threshold = _threshold_text(goal)
        target = f"{goal.direction} {_fmt(spec, goal.target or 0)} by {goal.deadline}"
        alerting.append(
            {
                "alert": a.name,
                "expr": a.condition,
                "for": alert.for_,
                "labels": {
                    "severity": alert.severity,
                    "owner": goal.owner,
                    "goal_name": goal.name,
                    "kpi": spec.name,
                },
                "annotations": {
                    "summary": (
                        f"Goal {goal.name}: {spec.title} {_value_template(spec)} is {threshold}"
                    ),
                    "description": (
                        f"The {spec.title} of {scope} over the last {alert.window} has been "
                        f"{threshold} for {alert.for_}, with at least {alert.min_volume} "
                        f"{spec.volume_unit} in the window. Goal: {target}. "
                        f"Owner: {goal.owner}."
                    ),
                },
            }
        )
    recording = [{"record": name, "expr": expr} for name, expr in records.items()]
    return {
        "groups": [
            {"name": RECORDING_GROUP, "rules": recording},
            {"name": ALERTING_GROUP, "rules": alerting},
            {"name": PIPELINE_GROUP, "rules": PIPELINE_ALERTS},
        ]
    }


HEADER = "# Generated by `kpistream rules` from a goals file; edit the goals, not this file.\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, as people write rule files."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def render(goals: list[Goal]) -> str:
    return HEADER + yaml.dump(rule_groups(goals), Dumper=_Dumper, sort_keys=False, width=100)
