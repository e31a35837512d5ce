"""A real Prometheus scrapes the exporter of a running pipeline and evaluates the generated
rules; every dashboard panel query and every rule expression must return finite data (issue 5).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import random
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpistream.produce import encode, produce
from kpistream.runtime import ensure_topics, free_port, spawn, stop, wait_port
from kpistream.settings import Settings
from kpistream.simulator import follower_snapshots, sessions, social_events
from sinks import dashboards, rules
from sinks.exporter import serve
from sinks.goals import load_checked
from streams.social import SocialLogic
from tests.conftest import require_binary
from tests.integration.waits import get, wait_for_events, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "kpistream.rules.yml"
GOALS = ROOT / "deploy" / "goals.example.yml"
#: Dashboard variables as a user would pick them: every site, the shortest window.
VARIABLES = {"$site": ".*", "$window": "5m", "$__rate_interval": "5m"}


def now_ms() -> int:
    return int(datetime.datetime.now().timestamp() * 1000)


def traffic(seed: int, start_ms: int) -> list[bytes]:
    """Simulated sessions and social activity, plus two visitors who become leads and then
    customers (the simulator's purchases come before its leads)."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for n in range(2):  # first: events this old would be late after the sessions
        base = {"ts": start_ms + n, "site": "shop.example", "visitor_id": f"lead-{seed}-{n}"}
        events.append({"event_id": f"l{seed}{n}", "type": "lead", "form_id": "demo", **base})
        base["ts"] += 1000
        events.append(
            {"event_id": f"p{seed}{n}", "type": "purchase", "value": 10, "currency": "EUR", **base}
        )
    events += sessions(seed, start_ms=start_ms + 2000, count=300)
    events += social_events(rng, start_ms, 120) + follower_snapshots(start_ms)
    return [encode(e) for e in events]


class Prometheus:
    def __init__(self, binary: str, workdir: Path, exporter_port: int) -> None:
        config = {
            # Scrape and evaluate every second so a test sees increases within seconds.
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "kpistream",
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        self.process = spawn(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log_path=self.log,
        )
        wait_port(self.port, self.process, "prometheus", self.log)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        reply = json.loads(get(url))
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def scrapes(self, n: int) -> None:
        """Wait until the exporter has been scraped ``n`` more times."""
        first = self._scrapes()
        await wait_until(f"{n} more scrapes", lambda: self._scrapes() >= first + n)

    def _scrapes(self) -> int:
        result = self.query("count_over_time(up[1h])")
        return int(result[0]["value"][1]) if result else 0


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


@pytest.mark.slow
async def test_prometheus_evaluates_every_panel_query_and_rule_with_data(  # type: ignore[no-untyped-def]
    settings_factory, workers, tmp_path
) -> None:
    binary = require_binary("prometheus", "prometheus")
    # One partition, so one flush event moves the only watermark; event time only.
    settings: Settings = settings_factory(
        partitions=1, session_gap_s=60, allowed_lateness_s=5, exporter_cache_s=0.0
    )
    await ensure_topics(settings)
    await workers(settings)
    await workers(settings, logic=SocialLogic(settings), group_id=f"{settings.consumer_group}-s")
    exporter_port = free_port()
    server = serve(settings, port=exporter_port)
    prometheus = Prometheus(binary, tmp_path, exporter_port)
    try:
        await prometheus.scrapes(2)
        # Three steps, each scraped, so every counter the rules use grows between scrapes:
        # the first sessions, later sessions (which end the first ones: carts abandoned),
        # then a page view that ends the later ones.
        t = now_ms()
        steps = [
            traffic(1, t - 280_000),
            traffic(2, t - 170_000),
            [
                encode(
                    {
                        "event_id": "flush",
                        "type": "page_view",
                        "ts": t - 2_000,
                        "site": "shop.example",
                        "visitor_id": "flush",
                        "path": "/",
                    }
                )
            ],
        ]
        sent = 0
        for lines in steps:
            await produce(settings, lines)
            sent += len(lines)
            await wait_for_events(settings, sent)
            await prometheus.scrapes(3)
        await asyncio.sleep(2)  # two more rule evaluations after the last scrape

        goals = load_checked(GOALS, today=datetime.date(2026, 11, 23))
        goal_alerts, records = rules.alerts(goals)
        empty = []
        for record in records:
            if not finite(prometheus.query(record)):
                empty.append(f"recording rule {record}")
        for alert in goal_alerts:
            prometheus.query(alert.condition)  # the whole expression evaluates
            for part in (alert.value, alert.volume):
                if not finite(prometheus.query(part)):
                    empty.append(f"alert {alert.name}: {part}")
        for name in ("kpis.json", "pipeline.json"):
            text = (ROOT / "deploy" / "grafana" / "dashboards" / name).read_text()
            for expr in dashboards.panel_exprs(text):
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                if not finite(prometheus.query(expr)):
                    empty.append(f"{name} panel: {expr}")
        assert empty == [], "queries without data:\n" + "\n".join(empty)
        # The site variable's query, label_values(kpi_sessions, site), as Grafana asks it.
        sites = prometheus.api("label/site/values", **{"match[]": "kpi_sessions"})
        assert sites == ["blog.example", "shop.example"]
        # The rules Prometheus loaded are exactly the generated file's.
        loaded = prometheus.api("rules")["groups"]
        assert sum(len(g["rules"]) for g in loaded) == len(records) + len(goal_alerts)
    finally:
        stop(prometheus.process)
        server.shutdown()
