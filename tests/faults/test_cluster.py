"""A Redis Cluster losing a master while events flow (issue 13).

The master that holds a partition's slot is killed (SIGKILL: no goodbye to its replica);
the cluster promotes the replica after the node timeout. The cluster client learns the new
slot map and sends the step again. Each atomic step reaches a replica whole or not at all,
and every step names the offset it expects: if the promoted replica lacks the last steps,
the next one is refused, the worker claims the partition again from the replica's state and
offset and replays from there. Either way the oracle finds every counter exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from kpistream import runtime
from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.contract.keys import PartitionKeys
from kpistream.produce import produce
from kpistream.runtime import ensure_topics
from tests.faults import oracle
from tests.faults.common import (
    many_lines,
    now_ms,
    produce_slowly,
    settings_for,
    spawn_worker,
    website_only,
)
from tests.support.stack import on_cluster, start_streams
from tests.support.waits import wait_for_totals, wait_until

SLICES = 60
PAUSE_S = 0.2


def master_port(cluster: runtime.EmbeddedCluster, key: str, *, avoid: int = 0) -> int:
    """The port of the master that serves ``key``'s slot now, asked of a live node."""
    seed = next(node for node in cluster.nodes if node.port != avoid)
    client = redis.RedisCluster(host="127.0.0.1", port=seed.port, password=cluster.password)
    try:
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        return int(node.port)
    finally:
        client.close()


@dataclass
class Flow:
    """A cluster of its own (the test takes it apart), events flowing into it, workers
    counting them, and partition 0 of the clickstream committed at least once."""

    cluster: runtime.EmbeddedCluster
    settings: Settings
    flowing: asyncio.Task[None]
    keys: PartitionKeys  # partition 0's

    @property
    def part(self) -> tuple[str, int]:
        return (self.keys.topic, self.keys.partition)

    def offset(self) -> int:
        return oracle.stored_offsets(self.settings)[self.part]

    async def ends_exact(self) -> None:
        assert not self.flowing.done(), "the events stopped flowing before the fault"
        before = self.offset()
        await self.flowing
        await oracle.assert_exact(self.settings, now_ms=now_ms())
        # Partition 0 went on committing after the fault, and lost nothing doing so.
        assert self.offset() > before


@contextlib.asynccontextmanager
async def flowing(
    settings_factory: Any, workers: Any, workdir: Path, name: str, **cluster: Any
) -> AsyncIterator[Flow]:
    started = runtime.start_redis_cluster(workdir / f"{name}-{uuid.uuid4().hex[:6]}", **cluster)
    try:
        settings = settings_for(
            on_cluster(settings_factory, started), partitions=4, batch_max_records=100
        )
        await ensure_topics(settings)
        task = produce_slowly(settings, many_lines(15), slices=SLICES, pause_s=PAUSE_S)
        streams = await start_streams(workers, settings)
        flow = Flow(
            started,
            settings,
            task,
            PartitionKeys(settings.redis_prefix, settings.clickstream_topic, 0),
        )
        await wait_until(
            "partition 0 has committed", lambda: flow.part in oracle.stored_offsets(settings)
        )
        yield flow
        for consumer in streams:  # before the cluster goes
            await consumer.stop()
    finally:
        started.stop()


async def test_a_master_killed_while_events_flow_fails_over_and_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, workers, workdir: Path
) -> None:
    async with flowing(
        settings_factory, workers, workdir, "failover", node_timeout_ms=1000
    ) as flow:
        meta = flow.keys.key("meta")
        victim = next(n for n in flow.cluster.nodes if n.port == master_port(flow.cluster, meta))
        victim.process.kill()
        victim.process.wait()
        await wait_until(
            "a replica serves partition 0's slot",
            lambda: master_port(flow.cluster, meta, avoid=victim.port) != victim.port,
            timeout_s=60,
        )
        await flow.ends_exact()


def command(client: redis.Redis, *args: object) -> Any:
    """A raw command (redis-py's single-server client has no typed cluster commands)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def node_client(port: int, password: str) -> Iterator[redis.Redis]:
    """A client of one cluster node alone (no redirections followed)."""
    client = redis.Redis(port=port, password=password, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def is_master(client: redis.Redis) -> bool:
    return client.info("replication").get("role") == "master"


def migrate_slot(cluster: runtime.EmbeddedCluster, slot: int, source: int, target: int) -> int:
    """Move one hash slot from the master on port ``source`` to the one on ``target`` the way
    ``redis-cli --cluster reshard`` does (importing, migrating, MIGRATE a few keys at a
    time, then the new owner announced to every master), slowly enough that the worker
    writes to the slot while it moves. Returns how many keys moved."""
    password = cluster.password
    with node_client(source, password) as src, node_client(target, password) as dst:
        src_id, dst_id = command(src, "CLUSTER", "MYID"), command(dst, "CLUSTER", "MYID")
        command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while keys := command(src, "CLUSTER", "GETKEYSINSLOT", slot, 50):
            command(
                src, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "AUTH", password, "KEYS", *keys
            )
            moved += len(keys)
            time.sleep(0.01)  # pace the migration so that commits meet it half done
    for node in cluster.nodes:  # every master learns the new owner
        with node_client(node.port, password) as client:
            if is_master(client):
                command(client, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    return moved


async def test_a_partition_slot_resharded_while_events_flow_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, workers, workdir: Path
) -> None:
    async with flowing(settings_factory, workers, workdir, "reshard") as flow:
        cluster, state = flow.cluster, flow.keys.state
        source = master_port(cluster, state)
        masters = []
        for node in cluster.nodes:
            with node_client(node.port, cluster.password) as client:
                if node.port != source and is_master(client):
                    masters.append(node.port)
        target = masters[0]
        moved = await asyncio.to_thread(
            migrate_slot, cluster, key_slot(state.encode()), source, target
        )
        assert moved > 0, "the partition's slot held no keys"
        assert master_port(cluster, state) == target
        await flow.ends_exact()


async def test_a_worker_starts_while_the_first_node_named_is_dead(  # type: ignore[no-untyped-def]
    settings_factory, workdir, tmp_path
) -> None:
    """The URL names every node; its first is killed and its replica takes over. A real
    `kpistream worker` started then finds the cluster through another node (it exited with
    "cannot reach Redis" when the start-up check pinged the first node alone) and counts."""
    cluster = runtime.start_redis_cluster(
        workdir / f"first-dead-{uuid.uuid4().hex[:6]}", node_timeout_ms=1000
    )
    worker = None
    try:
        settings = on_cluster(settings_factory, cluster)(startup_timeout_s=0)
        await ensure_topics(settings)
        first = cluster.nodes[0]
        first.process.kill()
        first.process.wait()

        def healthy_without_it() -> bool:
            """The dead node marked failed (not merely suspected) and the cluster ok: its
            replica took over. (Right after the kill the cluster still says ok.)"""
            with node_client(cluster.nodes[1].port, cluster.password) as client:
                info = str(command(client, "CLUSTER", "INFO"))
                nodes = str(command(client, "CLUSTER", "NODES"))
            dead = next(line for line in nodes.splitlines() if f":{first.port}@" in line)
            return (
                "cluster_state:ok" in info and " fail " in f" {dead.split()[2].replace(',', ' ')} "
            )

        await wait_until("the cluster is healthy again", healthy_without_it, timeout_s=30)
        runtime.check_redis(settings.redis)  # the start-up check of up, worker and exporter
        worker = spawn_worker(settings, tmp_path / "worker.log")
        lines = website_only(many_lines(seed=19))[:2000]
        await produce(settings, lines)
        await wait_for_totals(settings, {H.PROCESSED: len(lines)}, timeout_s=90)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
    finally:
        if worker is not None:
            runtime.stop(worker)
        cluster.stop()
