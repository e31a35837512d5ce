"""What every peer computes, and how it reports: per site, sessions (a visitor's events with
no gap over 30 minutes), bounces (sessions with one page view and no interaction) and the
impressions and clicks a click-through rate divides. Each peer runs as its own process:
``python -m bench.peers.<name> BROKER TOPIC EVENTS`` and prints one JSON line,
``{"seconds": ..., "sites": {site: [sessions, bounces, impressions, clicks]}}``.

Plain Python with no import of kpistream, so the peers can run in their own environment.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

GAP_MS = 30 * 60_000
INTERACTIONS = frozenset(
    ("click", "add_to_cart", "checkout_start", "purchase", "lead", "survey_response")
)


@dataclass
class Session:
    start_ms: int
    last_ms: int
    page_views: int = 0
    interacted: bool = False

    @property
    def bounce(self) -> bool:
        return self.page_views <= 1 and not self.interacted


@dataclass
class Totals:
    """Per site: [sessions, bounces, impressions, clicks]; bounces move as sessions grow."""

    sites: dict[str, list[int]] = field(default_factory=dict)

    def add(self, site: str, index: int, n: int = 1) -> None:
        self.sites.setdefault(site, [0, 0, 0, 0])[index] += n


def apply(totals: Totals, session: Session | None, event: dict[str, object]) -> Session:
    """One event (in event-time order per visitor) on its visitor's latest session."""
    ts = int(event["ts"])  # type: ignore[call-overload]
    site, kind = str(event["site"]), event["type"]
    if session is None or ts > session.last_ms + GAP_MS:
        session = Session(ts, ts)
        totals.add(site, 0)
        was_bounce = False
    else:
        was_bounce = session.bounce
        session.last_ms = max(session.last_ms, ts)
    if kind == "page_view":
        session.page_views += 1
    elif kind in INTERACTIONS:
        session.interacted = True
    if kind == "impression":
        totals.add(site, 2)
    elif kind == "click":
        totals.add(site, 3)
    if session.bounce != was_bounce:
        totals.add(site, 1, 1 if session.bounce else -1)
    return session


def args() -> tuple[str, str, int]:
    broker, topic, events = sys.argv[1:4]
    return broker, topic, int(events)


def report(seconds: float, totals: dict[str, list[int]]) -> None:
    print(json.dumps({"seconds": seconds, "sites": totals}), flush=True)
