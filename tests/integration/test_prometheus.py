"""A real Prometheus scrapes the exporter of a running pipeline and evaluates the generated
rules; every dashboard panel query and every rule expression must return finite data (issue 5).
Relative goals compare with last week, so the storage gets last week's history first, written
by Prometheus's own backfill tools.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import json
import math
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpistream.alerting import dashboards, rules
from kpistream.alerting.goals import load_checked
from kpistream.config.settings import Settings
from kpistream.produce import produce
from kpistream.runtime import ensure_topics, free_port, spawn, stop, wait_port
from kpistream.sinks.exporter import serve
from kpistream.sources import encode
from kpistream.sources.simulator import follower_snapshots, sessions, social_events
from tests.support.stack import require_binary, start_streams
from tests.support.waits import get, wait_for_events, wait_until, wait_until_sync

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
        ts = start_ms + n
        base: dict[str, Any] = {"ts": ts, "site": "shop.example", "visitor_id": f"lead-{seed}-{n}"}
        events.append({"event_id": f"l{seed}{n}", "type": "lead", "form_id": "demo", **base})
        base["ts"] = ts + 1000
        events.append(
            {"event_id": f"p{seed}{n}", "type": "purchase", "value": 10, "currency": "EUR", **base}
        )
    events += sessions(seed, start_ms=start_ms + 2000, count=300)
    events += social_events(rng, start_ms, 120) + follower_snapshots(start_ms)
    return [encode(e) for e in events]


def wait_ready(url: str, log: Path, timeout_s: float = 30) -> None:
    """The port opens before the server is ready (Prometheus answers 503 while its TSDB
    starts): wait for the readiness endpoint to say 200."""

    def ready() -> bool:
        try:
            get(url)
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    wait_until_sync(f"{url} is ready (see {log})", ready, timeout_s=timeout_s, every_s=0.1)


class Prometheus:
    def __init__(
        self,
        workdir: Path,
        exporter_port: int,
        *,
        rules_path: Path = RULES,
        alertmanager_port: int | None = None,
        data_dir: Path | None = None,
    ) -> None:
        binary = require_binary("prometheus", "prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            # Scrape and evaluate every second so a test sees increases within seconds.
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules_path)],
            "scrape_configs": [
                {
                    "job_name": "kpistream",
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                }
            ],
        }
        if alertmanager_port is not None:
            targets = [f"127.0.0.1:{alertmanager_port}"]
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": targets}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        self.process = spawn(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={data_dir or workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log_path=self.log,
        )
        wait_port(self.port, self.process, "prometheus", self.log)
        wait_ready(f"http://127.0.0.1:{self.port}/-/ready", self.log)

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


#: Last week's hand-made history for one relative goal: shop.example had 1,000 sessions and
#: 200 purchase conversions an hour, a conversion rate of exactly 0.2.
LAST_WEEK_PER_HOUR = {
    'kpi_sessions_total{site="shop.example"}': 1_000,
    'kpi_conversions_total{site="shop.example",goal="purchase"}': 200,
}
WEEK_S = 7 * 24 * 3600


def last_week(instance: str, now_s: int) -> str:
    """OpenMetrics of LAST_WEEK_PER_HOUR's counters, growing at their hourly rate from 3 h
    before to 1 h after this time last week, a sample every 15 s, as the scrape would label
    them."""
    lines = []
    for series, per_hour in LAST_WEEK_PER_HOUR.items():
        name, labels = series.split("{")
        family = name.removesuffix("_total")
        lines.append(f"# TYPE {family} counter")
        labels = f'{{job="kpistream",instance="{instance}",{labels}'
        start = now_s - WEEK_S - 3 * 3600
        for step in range(4 * 3600 // 15 + 1):
            lines.append(f"{name}{labels} {per_hour * step / 240} {start + step * 15}")
    return "\n".join(lines) + "\n# EOF\n"


def backfill(workdir: Path, data: Path, exporter_port: int, records: dict[str, str]) -> None:
    """Write last week into Prometheus's storage as Prometheus's own tools do: the raw
    counters as blocks (`promtool tsdb create-blocks-from openmetrics`), then the recording
    rules evaluated over them by a Prometheus serving those blocks (`create-blocks-from
    rules`), so `offset 1w` finds last week's recorded KPI. That tool cannot evaluate a rule
    on the output of another one it is backfilling: rules that read other rules go in a
    later round, against a Prometheus that serves the earlier rounds' blocks."""
    promtool = require_binary("promtool", "prometheus")
    now_s = int(time.time())
    history = workdir / "last-week.om"
    history.write_text(last_week(f"127.0.0.1:{exporter_port}", now_s))

    def run(*args: str) -> None:
        done = subprocess.run([promtool, "tsdb", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    run("create-blocks-from", "openmetrics", str(history), str(data))
    pending = dict(records)
    round_ = 0
    while pending:
        ready = {
            name: expr
            for name, expr in pending.items()
            if not any(other in expr for other in pending if other != name)
        }
        assert ready, f"rules that read each other: {sorted(pending)}"
        group = [{"record": name, "expr": expr} for name, expr in ready.items()]
        rules_path = workdir / f"round-{round_}.yml"
        rules_path.write_text(yaml.safe_dump({"groups": [{"name": "backfill", "rules": group}]}))
        reader = Prometheus(workdir / f"round-{round_}", exporter_port, data_dir=data)
        recorded = workdir / f"recorded-{round_}"
        try:
            run(
                "create-blocks-from",
                "rules",
                f"--start={now_s - WEEK_S - 3600}",
                f"--end={now_s - WEEK_S + 3600}",
                f"--url=http://127.0.0.1:{reader.port}",
                f"--output-dir={recorded}",
                "--eval-interval=15s",
                str(rules_path),
            )
        finally:
            stop(reader.process)
        for block in recorded.iterdir():
            shutil.move(block, data / block.name)
        pending = {name: expr for name, expr in pending.items() if name not in ready}
        round_ += 1


@dataclass
class Pipeline:
    settings: Settings
    exporter_port: int


@pytest.fixture
async def pipeline(settings_factory, workers) -> AsyncIterator[Pipeline]:  # type: ignore[no-untyped-def]
    """Broker, Redis, clickstream and social workers, and the exporter, all real."""
    # One partition, so one flush event moves the only watermark; event time only.
    settings: Settings = settings_factory(
        partitions=1, session_gap_s=60, allowed_lateness_s=5, exporter_cache_s=0.0
    )
    await ensure_topics(settings)
    await start_streams(workers, settings)
    port = free_port()
    server = serve(settings, port=port)
    yield Pipeline(settings, port)
    server.shutdown()


async def feed(settings: Settings, prometheus: Prometheus) -> None:
    """Three steps, each scraped, so every counter the rules use grows between scrapes: the
    first sessions, later sessions (which end the first ones: carts abandoned), then a page
    view that ends the later ones."""
    await prometheus.scrapes(2)
    t = now_ms()
    flush = {"type": "page_view", "site": "shop.example", "visitor_id": "flush", "path": "/"}
    steps = [
        traffic(1, t - 280_000),
        traffic(2, t - 170_000),
        [encode({"event_id": "flush", "ts": t - 2_000, **flush})],
    ]
    sent = 0
    for lines in steps:
        await produce(settings, lines)
        sent += len(lines)
        await wait_for_events(settings, sent)
        await prometheus.scrapes(3)
    await asyncio.sleep(2)  # two more rule evaluations after the last scrape


@pytest.mark.slow
async def test_prometheus_evaluates_every_panel_query_and_rule_with_data(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    goals = load_checked(GOALS, today=datetime.date(2026, 11, 23))
    goal_alerts, records = rules.alerts(goals)
    # The relative goal compares with last week: give the storage last week's history.
    data = tmp_path / "data"
    backfill(tmp_path, data, pipeline.exporter_port, records)
    prometheus = Prometheus(tmp_path, pipeline.exporter_port, data_dir=data)
    try:
        await feed(pipeline.settings, prometheus)
        empty = []
        for record in records:
            if not finite(prometheus.query(record)):
                empty.append(f"recording rule {record}")
        assert any(alert.baseline for alert in goal_alerts), "the example has a relative goal"
        for alert in goal_alerts:
            prometheus.query(alert.condition)  # the whole expression evaluates
            for part in (alert.value, alert.volume, *alert.baseline):
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
        health = len(rules.PIPELINE_ALERTS)
        assert sum(len(g["rules"]) for g in loaded) == len(records) + len(goal_alerts) + health
    finally:
        stop(prometheus.process)


class Webhook:
    """A local receiver that keeps every notification Alertmanager posts."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_alertmanager(workdir: Path, webhook_port: int) -> tuple[Any, int]:
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    config = {
        # Notify at once: the test waits for the first notification.
        "route": {"receiver": "test", "group_wait": "1s", "group_interval": "1s"},
        "receivers": [
            {"name": "test", "webhook_configs": [{"url": f"http://127.0.0.1:{webhook_port}/"}]}
        ],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "alertmanager.log"
    process = spawn(
        [
            binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no HA peers: no gossip port
        ],
        log_path=log,
    )
    wait_port(port, process, "alertmanager", log)
    wait_ready(f"http://127.0.0.1:{port}/-/ready", log)
    return process, port


@pytest.mark.slow
async def test_a_goal_crossed_by_live_traffic_notifies_through_alertmanager(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """A goal whose threshold the simulated bounce rate (about half the sessions) is above:
    the rule generated from it fires in a real Prometheus and Alertmanager posts it, with
    the goal, the owner and the current value, to a webhook."""
    goals_path = tmp_path / "goals.yml"
    goal = {
        "name": "shop-bounce-alarm",
        "kpi": "bounce_rate",
        "scope": {"site": "shop.example"},
        "target": 0.2,
        "direction": "below",
        "deadline": "2027-06-30",
        "owner": "web-team",
        "alert": {
            "threshold": 0.25,
            "window": "15m",
            "for": "1s",
            "min_volume": 50,
            "severity": "critical",
        },
    }
    goals_path.write_text(yaml.safe_dump({"goals": [goal]}))
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(rules.render(load_checked(goals_path, today=datetime.date(2026, 11, 23))))
    webhook = Webhook()
    alertmanager, am_port = start_alertmanager(tmp_path, webhook.port)
    prometheus = Prometheus(
        tmp_path, pipeline.exporter_port, rules_path=rules_path, alertmanager_port=am_port
    )
    try:
        await feed(pipeline.settings, prometheus)
        await wait_until("Alertmanager posted the alert", lambda: webhook.received)
    finally:
        stop(prometheus.process)
        stop(alertmanager)
        webhook.server.shutdown()
    [alert] = webhook.received[0]["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "ShopBounceAlarm",
        "severity": "critical",
        "owner": "web-team",
        "goal_name": "shop-bounce-alarm",
        "kpi": "bounce_rate",
        "site": "shop.example",
    }
    summary = alert["annotations"]["summary"]
    match = re.fullmatch(r"Goal shop-bounce-alarm: bounce rate ([\d.]+)% is above 25%", summary)
    assert match is not None, summary
    assert 25 < float(match.group(1)) <= 100


@pytest.mark.slow
async def test_a_relative_goal_fires_against_last_weeks_history(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """A relative goal (purchase conversion 30% worse than the same hour last week) in a
    real Prometheus whose storage holds last week: the baseline its rule reads is exactly
    last week's 200 / 1,000, and today's simulated rate (about 6%) makes it fire."""
    goal = {
        "name": "shop-conversion-drop",
        "kpi": "conversion_rate",
        "scope": {"site": "shop.example", "goal": "purchase"},
        "target": 0.25,
        "direction": "above",
        "deadline": "2027-06-30",
        "owner": "growth",
        "alert": {
            "worse_by": 0.3,
            "compared_to": "1w",
            "window": "1h",
            "for": "1s",
            "min_volume": 50,
            "severity": "critical",
        },
    }
    goals_path = tmp_path / "goals.yml"
    goals_path.write_text(yaml.safe_dump({"goals": [goal]}))
    goals = load_checked(goals_path, today=datetime.date(2026, 11, 23))
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(rules.render(goals))
    [alert], records = rules.alerts(goals)
    data = tmp_path / "data"
    backfill(tmp_path, data, pipeline.exporter_port, records)
    prometheus = Prometheus(tmp_path, pipeline.exporter_port, rules_path=rules_path, data_dir=data)
    try:
        [baseline], [volume] = (prometheus.query(part) for part in alert.baseline)
        assert float(baseline["value"][1]) == pytest.approx(0.2, abs=1e-9)
        assert float(volume["value"][1]) == pytest.approx(1000, abs=1e-6)
        await feed(pipeline.settings, prometheus)
        firing = f'ALERTS{{alertname="{alert.name}",alertstate="firing"}}'
        await wait_until("the relative alert fires", lambda: prometheus.query(firing))
        [now] = prometheus.query(alert.value)
        assert 0 < float(now["value"][1]) < 0.7 * 0.2
    finally:
        stop(prometheus.process)
