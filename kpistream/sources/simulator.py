"""Traffic simulator: realistic website sessions and social activity for the demo and bench.

About 45% of sessions bounce (one page view, no interaction); the rest view 2-6 pages a few
seconds apart. Pages show ads, CTAs and banners of a few campaigns; each impression is
clicked with a probability around 3% (a plausible display CTR). Of the multi-page sessions a
third put something in the cart, about half of those start a checkout and most checkouts end
in a purchase; some sessions leave a lead or answer a survey. Visitor ids are random
pseudonyms. ``sessions()`` is deterministic for a given seed.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator, Sequence
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

    def emit(event_type: str, **fields: Any) -> None:
        events.append(
            {
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "type": event_type,
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
    if pages > 1 and rng.random() < 0.33:
        value = round(rng.uniform(15, 240), 2)
        emit("add_to_cart", item_id=f"sku-{rng.randint(1, 40)}", value=value, currency="EUR")
        ts += rng.randint(think_ms // 4, think_ms)
        if rng.random() < 0.5:
            emit("checkout_start", value=value, currency="EUR")
            ts += rng.randint(think_ms // 4, think_ms)
            if rng.random() < 0.7:
                emit("purchase", value=value, currency="EUR")
    if rng.random() < 0.06:
        emit("lead", form_id="newsletter")
    if rng.random() < 0.05:
        kind = rng.choice(("nps", "csat", "ces"))
        emit("survey_response", kind=kind, score=_survey_score(rng, kind))
    return events


def _survey_score(rng: random.Random, kind: str) -> int:
    """Skewed like real answers: mostly satisfied, a tail of unhappy visitors."""
    if kind == "nps":
        return min(10, max(0, round(rng.gauss(7.5, 2.2))))
    if kind == "csat":
        return min(5, max(1, round(rng.gauss(4.0, 1.0))))
    return min(7, max(1, round(rng.gauss(3.0, 1.4))))


Account = tuple[str, str, int]  # (network, account, followers)

ACCOUNTS: tuple[Account, ...] = (("instagram", "acme", 5_000), ("linkedin", "acme-corp", 1_200))


def social_events(
    rng: random.Random, now_ms: int, seconds: float, accounts: Sequence[Account] = ACCOUNTS
) -> list[dict[str, Any]]:
    """Roughly ``seconds`` worth of social activity for ``accounts``, all at ``now_ms``."""
    events: list[dict[str, Any]] = []
    for network, account, followers in accounts:
        rate = followers / 5_000  # engagement events per second, by audience size
        base = {"ts": now_ms, "network": network, "account": account}
        kinds: list[tuple[str, dict[str, Any]]] = []
        for kind, share in (("like", 0.7), ("comment", 0.2), ("share", 0.1)):
            if rng.random() < rate * share * seconds * 3:
                kinds.append((kind, {"post_id": f"post-{rng.randint(1, 3)}"}))
        if rng.random() < rate * seconds:
            post = {"post_id": f"post-{rng.randint(1, 3)}", "count": rng.randint(20, 200)}
            kinds.append(("post_impression", post))
        if rng.random() < rate * seconds * 0.3:
            kinds.append(("follow" if rng.random() < 0.7 else "unfollow", {}))
        for kind, fields in kinds:
            event_id = uuid.UUID(int=rng.getrandbits(128)).hex
            events.append({"event_id": event_id, "type": kind, **base, **fields})
    return events


def follower_snapshots(now_ms: int, accounts: Sequence[Account] = ACCOUNTS) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"snapshot-{network}-{account}-{now_ms}",
            "type": "followers_snapshot",
            "ts": now_ms,
            "network": network,
            "account": account,
            "followers": followers,
        }
        for network, account, followers in accounts
    ]


def social(
    seed: int,
    *,
    start_ms: int,
    seconds: int,
    accounts: Sequence[Account] = ACCOUNTS,
    snapshot_every_s: int = 30,
) -> Iterator[dict[str, Any]]:
    """``seconds`` of social activity second by second, in event-time order, with a follower
    snapshot of every account at the start and every ``snapshot_every_s`` seconds."""
    rng = random.Random(seed)
    for second in range(seconds):
        now_ms = start_ms + second * 1000
        if second % snapshot_every_s == 0:
            yield from follower_snapshots(now_ms, accounts)
        yield from social_events(rng, now_ms, 1.0, accounts)


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
