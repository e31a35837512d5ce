"""Embedded runtime: a real Kafka-compatible broker (Tansu) and a real redis-server.

Both run as child processes on free loopback ports and die with their parent (Linux
``PR_SET_PDEATHSIG``), so a killed ``kpistream up`` leaves nothing behind. A running stack
writes a small JSON file under the state directory so that ``kpistream produce`` finds it.
"""

from kpistream.runtime.processes import (
    START_TIMEOUT_S,
    ProcessGroup,
    UserError,
    check_port,
    free_cluster_port,
    free_port,
    spawn,
    stop,
    wait_port,
)
from kpistream.runtime.servers import (
    EmbeddedCluster,
    EmbeddedServer,
    broker_binary,
    check_redis,
    redis_binary,
    redis_cli_binary,
    start_broker,
    start_redis,
    start_redis_cluster,
    wait_cluster,
)
from kpistream.runtime.stacks import (
    StackInfo,
    alive,
    ensure_topics,
    published,
    running_stack,
    running_stacks,
    state_dir,
    workdir,
)

__all__ = [
    "START_TIMEOUT_S",
    "EmbeddedCluster",
    "EmbeddedServer",
    "ProcessGroup",
    "StackInfo",
    "UserError",
    "alive",
    "broker_binary",
    "check_port",
    "check_redis",
    "ensure_topics",
    "free_cluster_port",
    "free_port",
    "published",
    "redis_binary",
    "redis_cli_binary",
    "running_stack",
    "running_stacks",
    "spawn",
    "start_broker",
    "start_redis",
    "start_redis_cluster",
    "state_dir",
    "stop",
    "wait_cluster",
    "wait_port",
    "workdir",
]
