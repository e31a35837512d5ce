"""Event builders and the pure processor's harness, shared by the unit tests: clickstream
events on site ``shop`` at hand-picked times, a processor with known labels, and a runner that
sums the deltas of several batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeVar

from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import Click, ClickstreamEvent, Impression, PageView
from kpistream.streams.labels import Dimensions
from kpistream.streams.processor import PartitionProcessor

MIN = 60_000
#: The wall clock of every batch: after every event here (the watermark cap never bites).
NOW_MS = 4_000_000_000_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % (60 * MIN)  # an hour boundary (event time)
M0 = T0 // MIN  # its minute bucket
GAP = 30 * MIN


def processor(
    lateness_ms: int = 10 * MIN, goals: tuple[str, ...] = ("lead", "purchase")
) -> PartitionProcessor:
    dims = Dimensions(campaigns=["bf"])
    dims.site.learn({"shop"}, full=True)
    dims.landing_page.learn({"/", "/pricing"}, full=True)
    dims.channel.learn({"direct", "google/cpc"}, full=True)
    dims.currency.learn({"EUR"}, full=True)
    return PartitionProcessor(
        session_gap_ms=GAP, allowed_lateness_ms=lateness_ms, dimensions=dims, conversion_goals=goals
    )


def pick(buckets: Counter[tuple[int, str]], *names: str) -> dict[tuple[int, str], int]:
    """The non-zero buckets of the given fields only."""
    return {k: v for k, v in buckets.items() if k[1] in names and v}


_n = 0


def pv(ts: int, visitor: str = "v1", session_id: str | None = None) -> PageView:
    global _n
    _n += 1
    return PageView(
        event_id=f"e{_n}", ts=ts, site="shop", visitor_id=visitor, path="/", session_id=session_id
    )


ItemT = TypeVar("ItemT", Click, Impression)


def _item(kind: type[ItemT], ts: int, visitor: str, campaign: str | None) -> ItemT:
    global _n
    _n += 1
    return kind(
        event_id=f"e{_n}",
        ts=ts,
        site="shop",
        visitor_id=visitor,
        item_kind="ad",
        item_id="a1",
        campaign=campaign,
    )


def click(ts: int, visitor: str = "v1", campaign: str | None = "bf") -> Click:
    return _item(Click, ts, visitor, campaign)


def imp(ts: int, visitor: str = "v1", campaign: str | None = "bf") -> Impression:
    return _item(Impression, ts, visitor, campaign)


class Totals(Counter[str]):
    """The KPI totals of several batches, and (``.health``) their service-health counts."""

    health: Counter[str]


def run(p: PartitionProcessor, *batches: Iterable[ClickstreamEvent | Rejection]):  # type: ignore[no-untyped-def]
    buckets: Counter[tuple[int, str]] = Counter()
    totals = Totals()
    totals.health = Counter()
    for batch in batches:
        delta = p.process(batch, now_ms=NOW_MS)
        buckets.update(delta.buckets)
        totals.update(delta.totals)
        totals.health.update(delta.health)
    return +buckets, totals  # unary + drops zero entries


def ev(cls: Any, ts: int, visitor: str = "v1", **fields: Any) -> Any:
    """Any clickstream event of ``cls`` on site ``shop``."""
    global _n
    _n += 1
    return cls(event_id=f"k{_n}", ts=ts, site="shop", visitor_id=visitor, **fields)


def social(cls: Any, ts: int, account: str = "acme", **fields: Any) -> Any:
    """Any social event of ``cls`` on instagram."""
    global _n
    _n += 1
    return cls(event_id=f"s{_n}", ts=ts, network="instagram", account=account, **fields)
