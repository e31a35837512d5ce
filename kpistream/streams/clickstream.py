"""The clickstream topic's :class:`kpistream.streams.logic.StreamLogic`: website events to web
KPIs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from kpistream.config.settings import Settings
from kpistream.contract.routing import clickstream_key
from kpistream.schemas.events import Clickstream, ClickstreamEvent, ItemEvent, PageView, Purchase
from kpistream.streams.event_kpis import ITEMS
from kpistream.streams.labels import Dimensions, LabelBudget
from kpistream.streams.logic import decoder_of
from kpistream.streams.processor import PartitionProcessor
from kpistream.streams.session_kpis import channel_of, landing_path


class ClickstreamLogic:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.clickstream_topic
        self.decoder = decoder_of(settings, Clickstream)
        self.dims = Dimensions(
            sites=settings.site_allowlist,
            campaigns=settings.campaign_allowlist,
            max_sites=settings.max_sites,
            max_campaigns=settings.max_campaigns,
            max_landing_pages=settings.max_landing_pages,
            max_channels=settings.max_channels,
            max_currencies=settings.max_currencies,
        )

    def new_partition(self) -> PartitionProcessor:
        s = self.settings
        return PartitionProcessor(
            session_gap_ms=s.session_gap_s * 1000,
            allowed_lateness_ms=s.allowed_lateness_s * 1000,
            dimensions=self.dims,
            conversion_goals=s.conversion_goal_types,
            max_cached_visitors=s.visitor_cache,
        )

    def ownership_key(self, event: Any) -> str:
        return clickstream_key(event)

    def budget(self, dimension: str) -> LabelBudget:
        return self.dims.budget(dimension)

    def budgets(self) -> dict[str, LabelBudget]:
        return {name: self.dims.budget(name) for name in Dimensions.NAMES}

    def dimension_values(self, events: Iterable[Any]) -> dict[str, set[str]]:
        return dimension_values(events)


def dimension_values(events: Iterable[ClickstreamEvent]) -> dict[str, set[str]]:
    """Raw values of each bounded dimension in a batch, for label admission."""
    sites: set[str] = set()
    campaigns: set[str] = set()
    pages: set[str] = set()
    channels: set[str] = set()
    currencies: set[str] = set()
    for event in events:
        sites.add(event.site)
        cls = event.__class__  # exact classes: isinstance on a struct class is slow
        if cls is PageView:
            view = cast(PageView, event)
            pages.add(landing_path(view))
            channels.add(channel_of(view))
        elif cls in ITEMS:
            campaign = cast(ItemEvent, event).campaign
            if campaign is not None:
                campaigns.add(campaign)
        elif cls is Purchase:
            currencies.add(cast(Purchase, event).currency)
    return {
        "site": sites,
        "campaign": campaigns,
        "landing_page": pages,
        "channel": channels,
        "currency": currencies,
    }
