"""What an event counts at its own time (docs/kpis.md): page views, impressions and clicks
per item kind and campaign, revenue and orders per currency, survey answers (NPS, CSAT, CES).
"""

from __future__ import annotations

from typing import cast

from kpistream.kpis import catalogue as K
from kpistream.kpis.catalogue import MICROS
from kpistream.kpis.fields import SiteFields
from kpistream.schemas.events import (
    Click,
    ClickstreamEvent,
    Impression,
    ItemEvent,
    PageView,
    Purchase,
    SurveyResponse,
)
from kpistream.streams.labels import Dimensions
from kpistream.streams.tally import Tally

#: Impressions and clicks (events are told apart by exact class: ``isinstance`` on a struct
#: class is slow).
ITEMS = frozenset((Impression, Click))


def purchase_counts(names: SiteFields, purchase: Purchase, currency: str) -> list[tuple[str, int]]:
    """Revenue (in millionths) and one order, in the purchase's currency label."""
    return [
        (names.of(K.REVENUE.code, currency), round(purchase.value * MICROS)),
        (names.of(K.ORDERS.code, currency), 1),
    ]


def survey_counts(names: SiteFields, event: SurveyResponse) -> list[tuple[str, int]]:
    """An answer, and a promoter or detractor (NPS), satisfied (CSAT) or its score (CES)."""
    one = names.one
    if event.kind == "nps":
        out = [(one[K.NPS_ANSWERS.code], 1)]
        if event.score >= 9:
            out.append((one[K.NPS_PROMOTERS.code], 1))
        elif event.score <= 6:
            out.append((one[K.NPS_DETRACTORS.code], 1))
        return out
    if event.kind == "csat":
        out = [(one[K.CSAT_ANSWERS.code], 1)]
        if event.score >= 4:
            out.append((one[K.CSAT_SATISFIED.code], 1))
        return out
    return [(one[K.CES_ANSWERS.code], 1), (one[K.CES_SUM.code], event.score)]


class EventCounts:
    """The event-time counters of one batch."""

    __slots__ = ("_items", "_page_views", "dims", "ones", "tally")

    def __init__(self, tally: Tally, dims: Dimensions) -> None:
        self.tally = tally
        self.dims = dims
        self.ones = tally.ones  # Tally.one, inline: it runs for most events
        self._page_views = K.PAGE_VIEWS.code
        #: (site fields, class, item kind, raw campaign) -> the item counter's field name
        self._items: dict[tuple[SiteFields, type, str, str | None], str] = {}

    def count(self, names: SiteFields, event: ClickstreamEvent, cls: type, minute: int) -> None:
        """Count one event (of exact class ``cls``) in its minute."""
        if cls is PageView:
            slot = (minute, names.one[self._page_views])
            self.ones[slot] = self.ones.get(slot, 0) + 1
        elif cls in ITEMS:
            item = cast(ItemEvent, event)
            what = (names, cls, item.item_kind, item.campaign)
            name = self._items.get(what)
            if name is None:
                kind = K.IMPRESSIONS.code if cls is Impression else K.CLICKS.code
                campaign = self.dims.campaign.label(item.campaign)
                name = self._items[what] = names.of(kind, item.item_kind, campaign)
            slot = (minute, name)
            self.ones[slot] = self.ones.get(slot, 0) + 1
        elif cls is Purchase:
            purchase = cast(Purchase, event)
            currency = self.dims.currency.label(purchase.currency)
            self.tally.add_all(minute, purchase_counts(names, purchase, currency))
        elif cls is SurveyResponse:
            self.tally.add_all(minute, survey_counts(names, cast(SurveyResponse, event)))
