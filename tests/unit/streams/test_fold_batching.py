"""How events are cut into batches never changes what they count.

The fold moves a session's start-bucket counters, flags, goals and carts once per batch, from
what the session counted before the batch to what it counts after it. That is exact only if
the per-event moves in between cancel out; this checks it on simulated traffic with
out-of-order events, retries, conflicting ids and erasures, cut into batches of one event, of
a few and of all of them.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import msgspec
import pytest

from kpistream.contract import health as H
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import split
from kpistream.schemas.decoder import EventDecoder
from kpistream.schemas.events import AddToCart, CheckoutStart, Clickstream, Forget, Purchase
from kpistream.sources.simulator import sessions
from kpistream.streams.clickstream import dimension_values
from kpistream.streams.labels import Dimensions
from kpistream.streams.processor import PartitionProcessor

START_MS = 1_763_800_000_000
NOW_MS = START_MS + 86_400_000
GAP_MS = 30 * 60_000


def traffic() -> list[Any]:
    """About 4,000 simulated events; a third of them shuffled, carts, checkouts and
    purchases that arrive after later ones, retries (same content), reused ids (other
    content) and the erasure of two visitors mixed in."""
    rng = random.Random(11)
    raw: list[bytes | None] = [
        msgspec.json.encode(e) for e in sessions(3, start_ms=START_MS, count=500)
    ]
    events: list[Any] = EventDecoder(Clickstream).decode_batch(raw, clock_ms=lambda: NOW_MS)
    third = events[: len(events) // 3]
    rng.shuffle(third)
    events[: len(third)] = third
    commerce = [
        i for i, e in enumerate(events) if isinstance(e, (AddToCart, CheckoutStart, Purchase))
    ]
    for n, i in enumerate(reversed(commerce)):  # an earlier cart, checkout or purchase, later
        if n % 2 == 0:
            e = events[i]
            earlier = msgspec.structs.replace(e, event_id=f"{e.event_id}-early", ts=e.ts - 20_000)
            events.insert(min(i + 40, len(events)), earlier)
    for i in range(0, len(events), 37):  # a retry a few events later
        events.insert(min(i + 5, len(events)), events[i])
    for i in range(10, len(events), 211):  # an id reused with other content
        events.insert(i + 3, msgspec.structs.replace(events[i], ts=events[i].ts + 1))
    for i in (len(events) // 2, 3 * len(events) // 4):
        e = events[i]
        events.insert(
            i + 1, Forget(event_id=f"f{i}", ts=e.ts, site=e.site, visitor_id=e.visitor_id)
        )
    return events


def fold(events: list[Any], size: int) -> dict[str, Any]:
    dims = Dimensions()
    for name, values in dimension_values(events).items():
        dims.budget(name).learn(values, full=False)
    p = PartitionProcessor(session_gap_ms=GAP_MS, allowed_lateness_ms=20 * 60_000, dimensions=dims)
    buckets: Counter[tuple[int, str]] = Counter()
    totals: Counter[str] = Counter()
    days: Counter[tuple[int, str]] = Counter()
    health: Counter[str] = Counter()
    uniques: dict[tuple[int, str], set[str]] = {}
    rejected: list[int] = []
    visitors: dict[Any, Any] = {}
    for start in range(0, len(events), size):
        batch = events[start : start + size]
        p.fill({k: None for k in p.needs(batch)})
        delta = p.process(batch, now_ms=NOW_MS)
        p.committed()
        buckets.update(delta.buckets)
        totals.update(delta.totals)
        days.update(delta.days)
        health.update(delta.health)
        for slot, ids in delta.uniques.items():
            uniques.setdefault(slot, set()).update(ids)
        rejected += [start + index for index, _ in delta.rejections]
        visitors.update(delta.visitors)
    # End every open session: what they count once ended must agree too.
    delta = p.advance(NOW_MS + 10 * GAP_MS)
    buckets.update(delta.buckets)
    totals.update(delta.totals)
    return {
        "buckets": +buckets,
        "totals": +totals,
        "days": +days,
        "health": +health,
        "uniques": uniques,
        "rejected": rejected,
        "visitors": visitors,
    }


@pytest.fixture(scope="module")
def events() -> list[Any]:
    return traffic()


@pytest.fixture(scope="module")
def whole(events: list[Any]) -> dict[str, Any]:
    return fold(events, len(events))


@pytest.mark.parametrize("size", [1, 7, 250])
def test_batch_size_does_not_change_the_counts(
    events: list[Any], whole: dict[str, Any], size: int
) -> None:
    got = fold(events, size)
    for part in whole:
        assert got[part] == whole[part], part


def test_the_traffic_exercises_what_moves(whole: dict[str, Any]) -> None:
    """The comparison above means something only if the traffic reaches every kind of move."""
    codes = {split(name)[0] for _, name in whole["buckets"]} | {
        split(name)[0] for name in whole["totals"]
    }
    moved = [K.SESSIONS, K.BOUNCES, K.ENGAGED, K.NON_BOUNCED, K.CONVERSIONS, K.LANDING_SESSIONS]
    moved += [K.CHECKOUT_STARTED, K.CART_COMPLETED, K.CART_ABANDONED, K.NEW_VISITORS, K.LEADS]
    assert {c.code for c in moved} <= codes
    health = {split(name)[0] for name in whole["health"]}
    assert {H.PROCESSED, H.DUPLICATE, H.REJECTED} <= health
    assert whole["rejected"]
