"""Ownership of events by (site, visitor) and (network, account), whatever the producer."""

from __future__ import annotations

import zlib

from kpistream.contract.routing import clickstream_key, misplaced, owner, social_key
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import Like, PageView


def test_owner_is_crc32_of_the_ownership_key_modulo_partitions() -> None:
    key = "shop\x1fv-1"
    assert owner(key, 6) == zlib.crc32(b"shop\x1fv-1") % 6
    assert owner(key, 1) == 0
    # Stable and spread: 600 visitors over 6 partitions all land, none is empty.
    spread = {owner(f"shop\x1fv-{i}", 6) for i in range(600)}
    assert spread == set(range(6))


def test_site_and_visitor_decide_not_the_visitor_alone() -> None:
    a = PageView(event_id="1", ts=1, site="a.example", visitor_id="v", path="/")
    b = PageView(event_id="2", ts=1, site="b.example", visitor_id="v", path="/")
    assert clickstream_key(a) == "a.example\x1fv" and clickstream_key(b) == "b.example\x1fv"
    like = Like(event_id="3", ts=1, network="instagram", account="acme", post_id="p")
    assert social_key(like) == "instagram\x1facme"


def test_misplaced_lists_foreign_events_but_not_rejections_or_forwarded_ones() -> None:
    events = [
        PageView(event_id=str(i), ts=1, site="shop", visitor_id=f"v{i}", path="/") for i in range(8)
    ]
    batch: list[object] = [*events, Rejection("malformed_json", "x")]
    forwarded = [False] * 9
    forwarded[0] = True  # forwarded once: stays, even if another partition owns it
    moved = misplaced(batch, forwarded, partition=1, partitions=4, key=clickstream_key)
    want = [
        (i, owner(clickstream_key(e), 4))
        for i, e in enumerate(events)
        if i != 0 and owner(clickstream_key(e), 4) != 1
    ]
    assert moved == want and want  # some of eight visitors live elsewhere
