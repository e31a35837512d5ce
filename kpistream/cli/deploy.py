"""``kpistream goals check``, ``kpistream rules`` and ``kpistream dashboards``: the alerting
and dashboard files, generated from one goals file."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from rich.console import Console

from kpistream.alerting.goals import Goal, GoalsError, load_checked
from kpistream.config.settings import load
from kpistream.runtime import UserError

out = Console()


def _goals(path: str, today: str | None = None) -> list[Goal]:
    try:
        day = datetime.date.fromisoformat(today) if today else datetime.date.today()
    except ValueError:
        raise UserError(f"--today {today!r} is not a date like 2026-11-23") from None
    try:
        return load_checked(Path(path), today=day)
    except GoalsError as exc:
        raise UserError(str(exc)) from None


def cmd_goals_check(args: argparse.Namespace) -> int:
    goals = _goals(args.file, args.today)
    out.print(f"{args.file}: {len(goals)} goals, all SMART", markup=False, highlight=False)
    return 0


def _write(text: str, target: str | None) -> None:
    if target is None:
        sys.stdout.write(text)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def cmd_rules(args: argparse.Namespace) -> int:
    from kpistream.alerting.rules import render

    _write(render(_goals(args.file)), args.output)
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    from kpistream.alerting.dashboards import kpi_dashboard, pipeline_dashboard, render

    goals = _goals(args.file)
    settings = load({}, env=None)
    folder = Path(args.output)
    _write(render(kpi_dashboard(settings, goals)), str(folder / "kpis.json"))
    _write(render(pipeline_dashboard()), str(folder / "pipeline.json"))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    goals = sub.add_parser("goals", help="check a goals file", description="check a goals file")
    goals_sub = goals.add_subparsers(dest="goals_command", required=True)
    check = goals_sub.add_parser("check", help="say which goal is not SMART and why, one line each")
    check.add_argument("file")
    check.add_argument(
        "--today", help="check deadlines as of this date (YYYY-MM-DD; default: today)"
    )
    check.set_defaults(func=cmd_goals_check)
    rules = sub.add_parser(
        "rules",
        help="Prometheus recording and alerting rules from a goals file",
        description="Prometheus recording and alerting rules from a goals file",
    )
    rules.add_argument("file")
    rules.add_argument(
        "-o", "--output", help="write here instead of standard output (default: standard output)"
    )
    rules.set_defaults(func=cmd_rules)
    boards = sub.add_parser(
        "dashboards",
        help="Grafana dashboards (KPIs with the goals' thresholds, pipeline health)",
        description="Grafana dashboards (KPIs with the goals' thresholds, pipeline health)",
    )
    boards.add_argument("file", help="goals file")
    boards.add_argument("-o", "--output", required=True, help="folder for kpis.json, pipeline.json")
    boards.set_defaults(func=cmd_dashboards)
