"""SMART goals: the one source that alert rules and dashboard thresholds are generated from.

A goals file is YAML (see ``deploy/goals.example.yml``)::

    goals:
      - name: shop-bounce-rate          # unique; names the alert
        kpi: bounce_rate                # see kpistream.alerting.formulas
        scope: {site: shop.example}
        target: 0.45                    # reach this ...
        direction: below                # ... or lower (below) / higher (above)
        deadline: 2027-03-31
        owner: web-team
        alert:
          threshold: 0.6                # absolute: fire when worse than this, or
          # worse_by: 0.3               # relative: fire when 30% worse than
          # compared_to: 1w             #   the same window this long ago
          window: 15m                   # the KPI over the last 15 minutes
          for: 15m                      # continuously, for 15 minutes
          min_volume: 200               # and only with at least 200 sessions in the window
          severity: warning             # info | warning | critical

:func:`check` says, for each goal, which letter of SMART it fails and why, in one line.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from kpistream.alerting.formulas import CATALOGUE, GoalKpi

#: Prometheus durations kpistream accepts for windows: a number and one unit.
DURATION = re.compile(r"^[1-9][0-9]*[smhdw]$")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class Alert(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    threshold: float | None = None
    worse_by: float | None = None
    compared_to: str = "1w"
    window: str | None = None
    for_: str | None = msgspec.field(default=None, name="for")
    min_volume: int | None = None
    severity: Literal["info", "warning", "critical"] = "warning"

    @property
    def relative(self) -> bool:
        return self.worse_by is not None


class Goal(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    kpi: str
    scope: dict[str, str] = {}
    target: float | None = None
    direction: Literal["above", "below"] | None = None
    deadline: datetime.date | None = None
    owner: str | None = None
    alert: Alert | None = None

    @property
    def spec(self) -> GoalKpi:
        return CATALOGUE[self.kpi]

    def ordered_scope(self) -> list[tuple[str, str]]:
        """The scope's labels in the KPI's own label order."""
        return [(label, self.scope[label]) for label in self.spec.scope if label in self.scope]


class GoalsFile(msgspec.Struct, forbid_unknown_fields=True):
    goals: list[Goal]


class GoalsError(ValueError):
    """A goals file that cannot be used; the message is one line per problem."""


def load(path: Path) -> list[Goal]:
    """Parse a goals file; a syntax or shape error becomes one line naming the place."""
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise GoalsError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise GoalsError(f"{path}: not YAML ({_first_line(exc)})") from None
    try:
        return msgspec.convert(raw, GoalsFile, strict=False).goals
    except msgspec.ValidationError as exc:
        raise GoalsError(f"{path}: {exc}") from None


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def check(goals: list[Goal], *, today: datetime.date) -> list[str]:
    """Every problem, one line each, naming the goal and the SMART letter it fails."""
    problems: list[str] = []
    seen: set[str] = set()
    for goal in goals:
        if goal.name in seen:
            problems.append(f"goal {goal.name}: the name is used twice; names must be unique")
        seen.add(goal.name)
        problems += [f"goal {goal.name}: {p}" for p in _problems(goal, today)]
    return problems


def _problems(goal: Goal, today: datetime.date) -> list[str]:
    if not NAME.match(goal.name):
        return ["the name must be lower-case letters, digits and dashes"]
    spec = CATALOGUE.get(goal.kpi)
    if spec is None:
        known = ", ".join(sorted(CATALOGUE))
        return [f"not specific: unknown KPI {goal.kpi!r} (known: {known})"]
    out = []
    # Specific: which KPI, of what, in which direction.
    missing = [label for label in spec.required if not goal.scope.get(label)]
    if missing:
        out.append(f"not specific: the scope must name {', '.join(missing)} for {spec.name}")
    foreign = sorted(set(goal.scope) - set(spec.scope))
    if foreign:
        allowed = ", ".join(spec.scope)
        out.append(
            f"not specific: {spec.name} has no label {', '.join(foreign)} (scope: {allowed})"
        )
    if goal.direction is None:
        out.append("not specific: no direction (above or below the target is good?)")
    # Measurable: a target and an alert on the KPI's own scale.
    if goal.target is None:
        out.append("not measurable: no target value")
    elif not _in_range(spec, goal.target):
        out.append(f"not measurable: target {goal.target:g} is outside {_range(spec)}")
    out += _alert_problems(goal, spec)
    # Achievable: not a perfect score no real traffic reaches.
    if goal.target is not None and _in_range(spec, goal.target) and goal.direction:
        perfect = spec.low if goal.direction == "below" else spec.high
        if perfect is not None and goal.target == perfect:
            out.append(
                f"not achievable: a {spec.title} of {goal.target:g} is never reached; "
                f"set a target inside {_range(spec)}"
            )
    # Relevant: someone acts on it.
    if not goal.owner:
        out.append("not relevant: no owner to act on its alerts")
    # Time-bound.
    if goal.deadline is None:
        out.append("not time-bound: no deadline")
    elif goal.deadline < today:
        out.append(f"not time-bound: the deadline {goal.deadline} has passed")
    return out


def _alert_problems(goal: Goal, spec: GoalKpi) -> list[str]:
    alert = goal.alert
    if alert is None:
        return ["not measurable: no alert (threshold or worse_by, window, for, min_volume)"]
    out = []
    if (alert.threshold is None) == (alert.worse_by is None):
        out.append("not measurable: the alert needs a threshold or a worse_by, not both")
    elif alert.threshold is not None:
        if not _in_range(spec, alert.threshold):
            out.append(
                f"not measurable: impossible threshold {alert.threshold:g}: "
                f"a {spec.title} lies in {_range(spec)}"
            )
        elif (
            goal.target is not None and goal.direction is not None and _in_range(spec, goal.target)
        ):
            worse = (
                alert.threshold > goal.target
                if goal.direction == "below"
                else alert.threshold < goal.target
            )
            if not worse:
                out.append(
                    f"not realistic: the alert threshold {alert.threshold:g} is not worse "
                    f"than the target {goal.target:g}; it would fire while the goal is met"
                )
    elif alert.worse_by is not None and not 0 < alert.worse_by < 1:
        out.append(f"not measurable: worse_by {alert.worse_by:g} must be a fraction in (0, 1)")
    for key, value in (
        ("window", alert.window),
        ("for", alert.for_),
        ("compared_to", alert.compared_to),
    ):
        if value is None:
            out.append(f"not measurable: the alert has no {key} (a duration such as 15m)")
        elif not DURATION.match(value):
            out.append(f"not measurable: alert {key} {value!r} is not a duration like 15m or 1h")
    if alert.min_volume is None or alert.min_volume < 1:
        out.append(
            f"not realistic: the alert needs a min_volume (least {spec.volume_unit} in the "
            "window), so a handful of visits never pages anyone"
        )
    return out


def _in_range(spec: GoalKpi, value: float) -> bool:
    return spec.low <= value and (spec.high is None or value <= spec.high)


def _range(spec: GoalKpi) -> str:
    return f"{spec.low:g}..{spec.high:g}" if spec.high is not None else f">= {spec.low:g}"


def load_checked(path: Path, *, today: datetime.date) -> list[Goal]:
    """Load and check; any problem raises GoalsError with one line per problem."""
    goals = load(path)
    problems = check(goals, today=today)
    if problems:
        raise GoalsError("\n".join(f"{path}: {p}" for p in problems))
    return goals
