"""The stream registry: every event type has one stream, and `produce` routes by it."""

from __future__ import annotations

from pathlib import Path

from kpistream.config.settings import load
from kpistream.contract.routing import ownership_key
from kpistream.produce import route
from kpistream.schemas.events import CLICKSTREAM_TYPES, SOCIAL_TYPES, type_name
from kpistream.sources import Source, encode
from kpistream.sources.files import JsonLines
from kpistream.streams.registry import CLICKSTREAM, FALLBACK, ORDERS, SOCIAL, STREAMS, stream_of

SETTINGS = load(
    {
        "clickstream_topic": "clicks",
        "social_topic": "posts",
        "orders_topic": "buys",
        "partitions": 5,
    },
    env={},
)


def test_every_event_type_belongs_to_exactly_one_stream() -> None:
    for cls in CLICKSTREAM_TYPES:
        assert stream_of(type_name(cls)) is CLICKSTREAM
    for social in SOCIAL_TYPES:
        assert stream_of(type_name(social)) is SOCIAL
    assert stream_of("order") is ORDERS
    assert not CLICKSTREAM.types & SOCIAL.types and not ORDERS.types & (
        CLICKSTREAM.types | SOCIAL.types
    )
    assert stream_of("teleport") is FALLBACK and stream_of(None) is FALLBACK
    assert [s.topic(SETTINGS) for s in STREAMS] == ["clicks", "posts", "buys"]
    assert [s.partitions(SETTINGS) for s in STREAMS] == [5, 2, 2]
    assert len({s.group(SETTINGS) for s in STREAMS}) == len(STREAMS)


def test_produce_routes_by_the_registry() -> None:
    like = {"type": "like", "network": "x", "account": "acme", "event_id": "l"}
    view = {"type": "page_view", "site": "shop", "visitor_id": "v1", "event_id": "p"}
    assert route(encode(like), SETTINGS) == ("posts", b"acme", ownership_key("x", "acme"))
    assert route(encode(view), SETTINGS) == ("clicks", b"v1", ownership_key("shop", "v1"))
    assert route(b"not json", SETTINGS) == ("clicks", None, None)
    buy = {"type": "order", "site": "shop", "customer_id": "c-1", "order_id": "A-1"}
    assert route(encode(buy), SETTINGS) == ("buys", b"c-1", ownership_key("shop", "c-1"))
    assert route(encode({**like, "network": 7}), SETTINGS) == ("posts", b"acme", None)


def test_a_file_of_json_lines_is_a_source(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  {"b": 2}  \r\n')
    source: Source = JsonLines(path)  # the protocol holds
    assert list(JsonLines(path).lines()) == [b'{"a": 1}', b'{"b": 2}']
    assert source.lines() is not None
