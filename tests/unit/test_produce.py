"""Routing a raw line: the fast typed path and the generic one agree."""

from __future__ import annotations

import json

import pytest

from kpistream.config.settings import Settings
from kpistream.contract.routing import ownership_key
from kpistream.produce import _route_slowly, route

S = Settings()


@pytest.mark.parametrize(
    "line",
    [
        json.dumps({"type": "page_view", "site": "shop", "visitor_id": "v1", "ts": 1}).encode(),
        b"\xef\xbb\xbf" + json.dumps({"type": "like", "network": "x", "account": "acme"}).encode(),
        json.dumps({"type": "page_view", "site": "shop", "visitor_id": 42}).encode(),
        json.dumps({"type": "page_view", "site": "shop"}).encode(),
        json.dumps({"type": 7, "site": "shop", "visitor_id": "v"}).encode(),
        json.dumps({"type": "like", "network": ["x"], "account": "acme"}).encode(),
        b"[1, 2]",
        b"{nope",
        b"",
    ],
)
def test_the_fast_route_agrees_with_the_generic_one(line: bytes) -> None:
    assert route(line, S) == _route_slowly(line.removeprefix(b"\xef\xbb\xbf"), S)


def test_a_clickstream_line_is_keyed_by_visitor_and_owned_by_site_and_visitor() -> None:
    line = json.dumps({"type": "page_view", "site": "shop", "visitor_id": "v1"}).encode()
    assert route(line, S) == (S.clickstream_topic, b"v1", ownership_key("shop", "v1"))
