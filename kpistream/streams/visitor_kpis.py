"""What a visitor counts for (docs/kpis.md), across its sessions: unique in a minute, new in
the minute of its first event, a lead on the day of its first ``lead``, a customer from a lead
on the day of its first purchase after that. The visitors' state and cache are
:mod:`kpistream.streams.visitors`.
"""

from __future__ import annotations

from kpistream.contract.visitor import Visitor
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import SiteFields
from kpistream.kpis.windows import day_of, minute_of
from kpistream.schemas.events import Lead, Purchase
from kpistream.streams.tally import Tally
from kpistream.streams.visitors import VisitorBook


def earlier(known_ms: int | None, ts: int) -> bool:
    """Whether ``ts`` comes first: nothing known yet, or before what was."""
    return known_ms is None or ts < known_ms


class VisitorCounts:
    """The visitor counters of one batch."""

    __slots__ = ("_new", "book", "tally", "uniques")

    def __init__(
        self, tally: Tally, book: VisitorBook, uniques: dict[tuple[int, str], set[str]]
    ) -> None:
        self.tally = tally
        self.book = book
        self.uniques = uniques
        self._new = K.NEW_VISITORS.code

    def seen(
        self, names: SiteFields, site: str, visitor_id: str, cls: type, ts: int, minute: int
    ) -> None:
        """A visitor's event (of exact class ``cls``) at ``ts``, in ``minute``."""
        slot = (minute, names.site)
        ids = self.uniques.get(slot)
        if ids is None:
            self.uniques[slot] = {visitor_id}
        else:
            ids.add(visitor_id)
        key = (site, visitor_id)
        book = self.book
        visitor = book.get(key)
        if visitor is None:
            visitor = Visitor(ts)
            book.put(key, visitor)
            self.tally.one(minute, names.one[self._new])
        else:
            book.seen(key)
            if ts < visitor.first_seen_ms:  # new in an earlier minute
                self.tally.move(names.one[self._new], minute_of(visitor.first_seen_ms), minute)
                visitor.first_seen_ms = ts
        if cls is Lead or cls is Purchase:
            self._lead(names, visitor, cls, ts)

    def _lead(self, names: SiteFields, visitor: Visitor, cls: type, ts: int) -> None:
        """A lead or a purchase: the visitor's first lead, and lead -> customer."""
        tally = self.tally
        if cls is Lead:
            if earlier(visitor.lead_ms, ts):
                was = None if visitor.lead_ms is None else day_of(visitor.lead_ms)
                tally.move(names.one[K.LEADS.code], was, day_of(ts), days=True)
                visitor.lead_ms = ts
        elif earlier(visitor.first_purchase_ms, ts):
            visitor.first_purchase_ms = ts
        # Only a lead or a purchase can make a customer from a lead, once.
        if not visitor.lead_customer_counted and visitor.is_lead_customer:
            visitor.lead_customer_counted = True
            assert visitor.first_purchase_ms is not None
            day = day_of(visitor.first_purchase_ms)
            tally.move(names.one[K.LEAD_CUSTOMERS.code], None, day, days=True)
