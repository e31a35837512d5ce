"""The streams, declared once: each one's topic, partitions, consumer group, event types, the
fields that route an event to its owner, and its processor. Topic creation, `kpistream
produce`, the worker and the tests read this list; a new stream is one entry here, its event
types in the contract and its processor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kpistream.config.settings import Settings
from kpistream.schemas.events import CLICKSTREAM_TYPES, ORDER_TYPES, SOCIAL_TYPES, type_name
from kpistream.streams.clickstream import ClickstreamLogic
from kpistream.streams.customers import CustomerLogic
from kpistream.streams.logic import StreamLogic
from kpistream.streams.social import SocialLogic


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    topic: Callable[[Settings], str]
    partitions: Callable[[Settings], int]
    #: the consumer group of its workers: one per stream, so each is balanced on its own
    group: Callable[[Settings], str]
    #: the wire ``type`` names of its events
    types: frozenset[str]
    #: the two fields whose values decide an event's owning partition (owner, key): the key
    #: is also the Kafka record key
    routed_by: tuple[str, str]
    logic: Callable[[Settings], StreamLogic]
    #: its consumers' Kafka client id (brokers' logs and quotas name it)
    client_id: str


CLICKSTREAM = Stream(
    name="clickstream",
    topic=lambda s: s.clickstream_topic,
    partitions=lambda s: s.partitions,
    group=lambda s: s.consumer_group,
    types=frozenset(type_name(t) for t in CLICKSTREAM_TYPES),
    routed_by=("site", "visitor_id"),
    logic=ClickstreamLogic,
    client_id="kpistream-worker",
)
SOCIAL = Stream(
    name="social",
    topic=lambda s: s.social_topic,
    # Accounts are fewer than visitors by orders of magnitude: half the partitions.
    partitions=lambda s: max(1, s.partitions // 2),
    group=lambda s: f"{s.consumer_group}-social",
    types=frozenset(type_name(t) for t in SOCIAL_TYPES),
    routed_by=("network", "account"),
    logic=SocialLogic,
    client_id="kpistream-social",
)
ORDERS = Stream(
    name="orders",
    topic=lambda s: s.orders_topic,
    # Customers' orders are far fewer than page views: half the partitions.
    partitions=lambda s: max(1, s.partitions // 2),
    group=lambda s: f"{s.consumer_group}-orders",
    types=frozenset(type_name(t) for t in ORDER_TYPES),
    routed_by=("site", "customer_id"),
    logic=CustomerLogic,
    client_id="kpistream-orders",
)
STREAMS: tuple[Stream, ...] = (CLICKSTREAM, SOCIAL, ORDERS)
#: Where a line of no known type goes: its workers dead-letter it with the reason.
FALLBACK = CLICKSTREAM
_BY_TYPE = {name: stream for stream in STREAMS for name in stream.types}


def stream_of(event_type: object) -> Stream:
    """The stream an event of this wire type belongs to (:data:`FALLBACK` for any other)."""
    return _BY_TYPE.get(event_type, FALLBACK) if isinstance(event_type, str) else FALLBACK
