"""Turn one partition's batch of decoded clickstream events into counter deltas.

Pure and synchronous: no Kafka, no Redis, no clock. The batch consumer feeds it decoded
events; the resulting :class:`BatchDelta` is applied to Redis in one atomic step together with
the partition's next offset. The same code serves the live worker, replays and tests.

Each event is counted exactly once: as processed, late, duplicate (same ``event_id`` as an
event of its open session) or rejected.

Lateness: the partition's watermark is the largest event time accepted so far. An event older
than ``watermark - allowed_lateness_ms`` is counted as late and dropped (its session may
already be evicted); sessions are evicted once no acceptable event can reach them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.decoder import Rejection
from schemas.events import INTERACTION_TYPES, ClickstreamEvent, Impression, ItemEvent, PageView
from sinks import fields as F
from sinks.buckets import minute_of
from streams.labels import LabelBudget
from streams.sessionizer import Sessionizer, SessionKey


@dataclass(slots=True)
class BatchDelta:
    """Everything one batch changes, pre-aggregated so Redis sees each field once."""

    buckets: Counter[tuple[int, str]] = field(default_factory=Counter)  # (minute, field)
    totals: Counter[str] = field(default_factory=Counter)
    touched_sessions: set[SessionKey] = field(default_factory=set)
    evicted_sessions: set[SessionKey] = field(default_factory=set)
    watermark_ms: int = 0

    def count(self, name: str, n: int = 1) -> None:
        self.totals[name] += n


def dimension_values(events: Iterable[ClickstreamEvent]) -> tuple[set[str], set[str]]:
    """Raw site and campaign values of a batch, for label admission before processing."""
    sites: set[str] = set()
    campaigns: set[str] = set()
    for event in events:
        sites.add(event.site)
        if isinstance(event, ItemEvent) and event.campaign is not None:
            campaigns.add(event.campaign)
    return sites, campaigns


class PartitionProcessor:
    """State and rules for one Kafka partition of the clickstream topic."""

    def __init__(
        self,
        *,
        session_gap_ms: int,
        allowed_lateness_ms: int,
        sites: LabelBudget,
        campaigns: LabelBudget,
    ) -> None:
        self.sessionizer = Sessionizer(session_gap_ms=session_gap_ms)
        self.allowed_lateness_ms = allowed_lateness_ms
        self.sites = sites
        self.campaigns = campaigns
        self.watermark_ms = 0

    def process(self, decoded: Iterable[ClickstreamEvent | Rejection]) -> BatchDelta:
        delta = BatchDelta()
        buckets = delta.buckets
        totals = delta.totals
        observe = self.sessionizer.observe
        site_label = self.sites.label
        campaign_label = self.campaigns.label
        lateness = self.allowed_lateness_ms
        watermark = self.watermark_ms
        for event in decoded:
            if isinstance(event, Rejection):
                totals[F.field(F.REJECTED, event.reason)] += 1
                continue
            ts = event.ts
            if ts < watermark - lateness:
                totals[F.LATE] += 1
                continue
            key = (event.site, event.visitor_id, event.session_id or "")
            observed = observe(
                key,
                ts,
                event.event_id,
                page_view=isinstance(event, PageView),
                interaction=isinstance(event, INTERACTION_TYPES),
            )
            if observed is None:
                totals[F.DUPLICATE] += 1
                continue
            session, change = observed
            if ts > watermark:
                watermark = ts
            totals[F.PROCESSED] += 1
            site = site_label(event.site)
            delta.touched_sessions.add(key)
            start_minute = minute_of(session.start_ms)
            sessions_field = F.field(F.SESSIONS, site)
            bounces_field = F.field(F.BOUNCES, site)
            if change.new_session:
                buckets[start_minute, sessions_field] += 1
                totals[sessions_field] += 1
            elif change.moved_from_minute is not None:
                was_bounce = int(session.is_bounce) - change.bounce_delta
                buckets[change.moved_from_minute, sessions_field] -= 1
                buckets[start_minute, sessions_field] += 1
                if was_bounce:
                    buckets[change.moved_from_minute, bounces_field] -= 1
                    buckets[start_minute, bounces_field] += 1
            if change.bounce_delta:
                buckets[start_minute, bounces_field] += change.bounce_delta
            if change.became_non_bounced:
                totals[F.field(F.NON_BOUNCED, site)] += 1
            if isinstance(event, ItemEvent):
                kind = F.IMPRESSIONS if isinstance(event, Impression) else F.CLICKS
                name = F.field(kind, site, event.item_kind, campaign_label(event.campaign))
                buckets[minute_of(ts), name] += 1
                totals[name] += 1
        self.watermark_ms = watermark
        delta.watermark_ms = watermark
        self._evict(delta)
        return delta

    def _evict(self, delta: BatchDelta) -> None:
        horizon = self.watermark_ms - self.allowed_lateness_ms
        emptied, shrunk, never_bounced = self.sessionizer.evict(horizon)
        delta.evicted_sessions.update(emptied)
        delta.touched_sessions.difference_update(emptied)
        delta.touched_sessions.update(shrunk)
        for key in never_bounced:
            delta.totals[F.field(F.NON_BOUNCED, self.sites.label(key[0]))] += 1
