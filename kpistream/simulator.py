"""Traffic simulator: realistic website sessions for the demo and the benchmark.

About 45% of sessions bounce (one page view, no interaction); the rest view 2-6 pages a few
seconds apart. Pages show ads, CTAs and banners of a few campaigns; each impression is
clicked with a probability around 3% (a plausible display CTR). Visitor ids are random
pseudonyms. ``sessions()`` is deterministic for a given seed.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from typing import Any

SITES = ("shop.example", "blog.example")
PATHS = ("/", "/pricing", "/products/boots", "/products/jackets", "/blog/fall-guide", "/cart")
CAMPAIGNS = ("black-friday", "newsletter-nov", "retargeting")
ITEM_KINDS = ("ad", "cta", "banner")
CHANNELS = (("google", "cpc"), ("newsletter", "email"), ("facebook", "social"), (None, None))
BOUNCE_PROBABILITY = 0.45
CLICK_PROBABILITY = {"ad": 0.02, "cta": 0.06, "banner": 0.01}


def session_events(
    rng: random.Random, start_ms: int, *, think_ms: int = 8_000
) -> list[dict[str, Any]]:
    """All events of one simulated session, in event-time order."""
    site = rng.choice(SITES)
    visitor = uuid.UUID(int=rng.getrandbits(128)).hex
    source, medium = rng.choice(CHANNELS)
    campaign = rng.choice(CAMPAIGNS) if source else None
    pages = 1 if rng.random() < BOUNCE_PROBABILITY else rng.randint(2, 6)
    events: list[dict[str, Any]] = []
    ts = start_ms

    def emit(kind: str, **fields: Any) -> None:
        events.append(
            {
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "type": kind,
                "ts": ts,
                "site": site,
                "visitor_id": visitor,
                **fields,
            }
        )

    for page in range(pages):
        view: dict[str, Any] = {"path": rng.choice(PATHS)}
        if page == 0 and source:
            view.update(utm_source=source, utm_medium=medium, utm_campaign=campaign)
        emit("page_view", **view)
        for _ in range(rng.randint(0, 3)):
            kind = rng.choice(ITEM_KINDS)
            item = {
                "item_kind": kind,
                "item_id": f"{kind}-{rng.randint(1, 5)}",
                "campaign": rng.choice(CAMPAIGNS),
            }
            ts += rng.randint(50, 500)
            emit("impression", **item)
            # A bounce has no interaction, so only multi-page sessions click.
            if pages > 1 and rng.random() < CLICK_PROBABILITY[kind] * 1.8:
                ts += rng.randint(500, 3000)
                emit("click", **item)
        ts += rng.randint(think_ms // 4, think_ms)
    return events


def sessions(
    seed: int, *, start_ms: int, count: int, spacing_ms: int = 50
) -> Iterator[dict[str, Any]]:
    """``count`` sessions starting ``spacing_ms`` apart, merged into event-time order."""
    rng = random.Random(seed)
    heap: list[tuple[int, int, dict[str, Any]]] = []
    seq = 0
    for n in range(count):
        start = start_ms + n * spacing_ms
        while heap and heap[0][0] <= start:
            yield heapq.heappop(heap)[2]
        for event in session_events(rng, start):
            heapq.heappush(heap, (event["ts"], seq, event))
            seq += 1
    while heap:
        yield heapq.heappop(heap)[2]
