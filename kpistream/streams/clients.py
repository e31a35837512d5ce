"""The Kafka clients of a batch consumer, and its rebalance listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from kpistream.config.connections import kafka_options
from kpistream.config.settings import Settings

#: How long the broker may hold a fetch that found nothing (aiokafka's default is 500 ms).
FETCH_MAX_WAIT_MS = 100


def producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """The producer of forwarded events and dead letters: every replica acknowledges."""
    return AIOKafkaProducer(**kafka_options(settings), client_id=client_id, linger_ms=5, acks="all")


def batch_consumer(settings: Settings, group_id: str, client_id: str) -> AIOKafkaConsumer:
    """A consumer in the group that commits nothing itself (positions live in the store)."""
    rebalance_ms = settings.rebalance_timeout_s * 1000
    return AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_max_records,
        # A batch of max_poll_records small events is a few MB; let one fetch carry it.
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        # A broker that holds an empty fetch until the wait ends (not until data comes)
        # would add up to this much to every event's latency.
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        rebalance_timeout_ms=rebalance_ms,
        session_timeout_ms=max(6000, 2 * rebalance_ms),
        heartbeat_interval_ms=1000,
    )


Change = Callable[[list[TopicPartition]], Awaitable[None]]


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands the group's assignments and revocations to the consumer."""

    def __init__(self, assign: Change, revoke: Change) -> None:
        self.assign, self.revoke = assign, revoke

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.assign(assigned)
