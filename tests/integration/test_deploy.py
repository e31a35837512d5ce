"""docker-compose.yml and deploy/ checked without Docker: spec validation, promtool, and the
compose services' own commands run natively against the real broker and Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpistream.cli import parser
from kpistream.config.settings import Settings, child_environment, env_name
from kpistream.runtime import free_port, spawn, stop
from tests.support import known_events as K
from tests.support.stack import require_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    tool = require_binary("docker-compose", "docker-compose")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_compose_starts_in_dependency_order_with_healthchecks() -> None:
    every = compose()["services"]
    services = {name: service for name, service in every.items() if "profiles" not in service}
    assert {
        "kafka",
        "redis",
        "worker",
        "exporter",
        "collector",
        "prometheus",
        "alertmanager",
        "grafana",
    } == services.keys()
    for name in services.keys() - {"worker"}:
        assert "healthcheck" in services[name], name
    healthy = {"condition": "service_healthy"}
    assert services["prometheus"]["depends_on"] == {"exporter": healthy, "alertmanager": healthy}
    assert services["grafana"]["depends_on"] == {"prometheus": healthy}
    # Prometheus gets the generated rules, Grafana the provisioning and generated dashboards.
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    mounts = {v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert mounts == {"./deploy/grafana/provisioning", "./deploy/grafana/dashboards"}
    for mount in mounts | {"./deploy/prometheus", "./deploy/alertmanager"}:
        assert (ROOT / mount).is_dir(), mount
    assert services["worker"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert "container_name" not in services["worker"] and "ports" not in services["worker"], (
        "the worker must stay scalable with --scale worker=N"
    )
    assert "--appendonly" in services["redis"]["command"]
    known = {env_name(name) for name in Settings.__struct_fields__}
    assert services["collector"]["depends_on"] == services["worker"]["depends_on"]
    assert services["kafka"]["environment"]["KAFKA_LOG_RETENTION_HOURS"] == 168  # 7 days
    for name in ("worker", "exporter", "collector"):
        assert set(services[name]["environment"]) <= known, name
        parser().parse_args(services[name]["command"])  # a real kpistream subcommand


def test_prometheus_config_passes_promtool() -> None:
    promtool = require_binary("promtool", "prometheus")
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    targets = yaml.safe_load(config.read_text())["scrape_configs"][0]["static_configs"][0]
    port = compose()["services"]["exporter"]["environment"]["KPISTREAM_METRICS_PORT"]
    assert targets["targets"] == [f"exporter:{port}"]


@pytest.mark.slow
def test_compose_worker_and_exporter_commands_run_natively(
    settings_factory: Any, tmp_path: Path
) -> None:
    settings = settings_factory()
    services = compose()["services"]
    port = free_port()
    # The compose environment, with addresses and names pointed at this test's broker/Redis.
    env = child_environment(settings, services["worker"]["environment"])
    env[env_name("metrics_port")] = str(port)
    children = [
        spawn(
            [sys.executable, "-m", "kpistream", *services[name]["command"]],
            log_path=tmp_path / f"{name}.log",
            env=env,
        )
        for name in ("worker", "exporter")
    ]
    try:
        events = tmp_path / "events.jsonl"
        events.write_bytes(b"\n".join(K.lines()) + b"\n")
        sent = subprocess.run(
            [sys.executable, "-m", "kpistream", "produce", str(events)],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        K.assert_served(f"http://127.0.0.1:{port}/metrics")
    finally:
        for child in children:
            stop(child)


def test_compose_cluster_profile_runs_three_masters_with_a_replica_each() -> None:
    services = compose()["services"]
    cluster = {
        name for name, service in services.items() if "cluster" in service.get("profiles", ())
    }
    nodes = {f"redis-node-{n}" for n in range(1, 7)}
    assert cluster == nodes | {"redis-cluster"}
    for name in nodes:
        command = services[name]["command"]
        for flag in ("--cluster-enabled", "--appendonly", "--requirepass", "--masterauth"):
            assert flag in command, (name, flag)
        assert "healthcheck" in services[name] and services[name]["volumes"] == [f"{name}:/data"]
    assert services["redis-cluster"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in nodes
    }
    script = services["redis-cluster"]["command"][0]
    assert "--cluster-replicas 1" in script and "--cluster-yes" in script
    # Workers, exporter and collector switch with two lines of .env (REDIS_HOSTS and
    # KPISTREAM_REDIS_CLUSTER): both are in their environment.
    for name in ("worker", "exporter", "collector"):
        env = services[name]["environment"]
        assert env["KPISTREAM_REDIS_CLUSTER"] == "${KPISTREAM_REDIS_CLUSTER:-false}"
        assert "@${REDIS_HOSTS:-redis:6379}/0" in env["KPISTREAM_REDIS"]
