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
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from kpistream import runtime
from kpistream.contract.keys import PartitionKeys
from kpistream.produce import produce
from kpistream.runtime import ensure_topics
from tests.faults import oracle
from tests.faults.common import many_lines, now_ms, settings_for
from tests.support.stack import on_cluster, start_streams
from tests.support.waits import wait_until

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


async def test_a_master_killed_while_events_flow_fails_over_and_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, workers, workdir: Path
) -> None:
    # A cluster of its own: this test takes one of its masters away.
    cluster = runtime.start_redis_cluster(
        workdir / f"failover-{uuid.uuid4().hex[:6]}", node_timeout_ms=1000
    )
    try:
        settings = settings_for(
            on_cluster(settings_factory, cluster), partitions=6, batch_max_records=100
        )
        await ensure_topics(settings)
        lines = many_lines(15)
        size = len(lines) // SLICES + 1

        async def flow() -> None:
            for start in range(0, len(lines), size):
                await produce(settings, lines[start : start + size])
                await asyncio.sleep(PAUSE_S)

        flowing = asyncio.create_task(flow())
        streams = await start_streams(workers, settings)
        keys = PartitionKeys(settings.redis_prefix, settings.clickstream_topic, 0)
        meta = keys.key("meta")
        await wait_until(
            "partition 0 has committed",
            lambda: (settings.clickstream_topic, 0) in oracle.stored_offsets(settings),
        )
        part = (settings.clickstream_topic, 0)
        offset_at_kill = oracle.stored_offsets(settings)[part]
        victim = next(node for node in cluster.nodes if node.port == master_port(cluster, meta))
        victim.process.kill()
        victim.process.wait()
        assert not flowing.done(), "the events stopped flowing before the master was killed"
        await wait_until(
            "a replica serves partition 0's slot",
            lambda: master_port(cluster, meta, avoid=victim.port) != victim.port,
            timeout_s=60,
        )
        await flowing
        await oracle.assert_exact(settings, now_ms=now_ms())
        # Partition 0 went on committing on the promoted replica, and lost nothing doing so.
        assert oracle.stored_offsets(settings)[part] > offset_at_kill
        for consumer in streams:  # before the cluster goes
            await consumer.stop()
    finally:
        cluster.stop()


def command(client: redis.Redis, *args: object) -> Any:
    """A raw command (redis-py's single-server client has no typed cluster commands)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def node_id(port: int, password: str) -> str:
    client = redis.Redis(port=port, password=password, decode_responses=True)
    try:
        return str(command(client, "CLUSTER", "MYID"))
    finally:
        client.close()


def migrate_slot(cluster: runtime.EmbeddedCluster, slot: int, source: int, target: int) -> int:
    """Move one hash slot from the master on port ``source`` to the one on ``target`` the way
    ``redis-cli --cluster reshard`` does (importing, migrating, MIGRATE a few keys at a
    time, then the new owner announced to every master), slowly enough that the worker
    writes to the slot while it moves. Returns how many keys moved."""
    password = cluster.password
    src = redis.Redis(port=source, password=password, decode_responses=True)
    dst = redis.Redis(port=target, password=password, decode_responses=True)
    try:
        src_id, dst_id = node_id(source, password), node_id(target, password)
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
            client = redis.Redis(port=node.port, password=password)
            try:
                if client.info("replication").get("role") == "master":
                    command(client, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            finally:
                client.close()
        return moved
    finally:
        src.close()
        dst.close()


async def test_a_partition_slot_resharded_while_events_flow_ends_exact(  # type: ignore[no-untyped-def]
    settings_factory, workers, workdir: Path
) -> None:
    cluster = runtime.start_redis_cluster(workdir / f"reshard-{uuid.uuid4().hex[:6]}")
    try:
        settings = settings_for(
            on_cluster(settings_factory, cluster), partitions=4, batch_max_records=100
        )
        await ensure_topics(settings)
        lines = many_lines(16)
        size = len(lines) // SLICES + 1

        async def flow() -> None:
            for start in range(0, len(lines), size):
                await produce(settings, lines[start : start + size])
                await asyncio.sleep(PAUSE_S)

        flowing = asyncio.create_task(flow())
        streams = await start_streams(workers, settings)
        keys = PartitionKeys(settings.redis_prefix, settings.clickstream_topic, 0)
        part = (settings.clickstream_topic, 0)
        await wait_until(
            "partition 0 has committed", lambda: part in oracle.stored_offsets(settings)
        )
        source = master_port(cluster, keys.state)
        target = next(
            node.port
            for node in cluster.nodes
            if node.port != source and _is_master(node.port, cluster.password)
        )
        slot = key_slot(keys.state.encode())
        offset_before = oracle.stored_offsets(settings)[part]
        moved = await asyncio.to_thread(migrate_slot, cluster, slot, source, target)
        assert moved > 0, "the partition's slot held no keys"
        assert not flowing.done(), "the events stopped flowing before the slot moved"
        assert master_port(cluster, keys.state) == target
        await flowing
        await oracle.assert_exact(settings, now_ms=now_ms())
        assert oracle.stored_offsets(settings)[part] > offset_before
        for consumer in streams:
            await consumer.stop()
    finally:
        cluster.stop()


def _is_master(port: int, password: str) -> bool:
    client = redis.Redis(port=port, password=password)
    try:
        return client.info("replication").get("role") == "master"
    finally:
        client.close()
