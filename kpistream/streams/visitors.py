"""Per-visitor state across sessions: first seen, lead, first purchase.

A visitor (pseudonymous id, per site) is *new* in a window when its first-ever event lies in
that window: we count first visits in the bucket of that first event, and returning visitors
are the window's unique visitors minus its new ones. A visitor becomes a *lead* at its first
``lead`` event and a *customer from a lead* when its first purchase comes after that.

Each visitor's state is one Redis key with a TTL of the retention limit, refreshed when the
visitor is seen; a visitor unseen for longer is forgotten and counts as new again. The owner
of a partition keeps the most recently seen visitors in memory (an LRU of
``KPISTREAM_VISITOR_CACHE`` per partition) and loads what a batch needs with one ``MGET``.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from kpistream.contract.visitor import Visitor, VisitorKey, decode_visitor

#: Visitors cached per partition between batches by default; the least recently seen go
#: first (correctness does not depend on it: a miss is one more key in the batch's MGET).
DEFAULT_CACHED_VISITORS = 20_000


class VisitorBook:
    """The visitors of one partition that the current batch touches, plus a cache."""

    def __init__(self, *, max_cached: int = DEFAULT_CACHED_VISITORS) -> None:
        #: in order of last use (a dict keeps insertion order; put() re-inserts at the end)
        self.known: dict[VisitorKey, Visitor | None] = {}  # None: not in Redis
        self.dirty: set[VisitorKey] = set()
        self.max_cached = max_cached

    def missing(self, keys: Iterable[VisitorKey]) -> list[VisitorKey]:
        return [k for k in set(keys) if k not in self.known]

    def fill(self, loaded: dict[VisitorKey, bytes | None]) -> None:
        """Visitors read from the store (None: not stored)."""
        self.known.update(
            (key, None if raw is None else decode_visitor(raw)) for key, raw in loaded.items()
        )

    def get(self, key: VisitorKey) -> Visitor | None:
        """The visitor's state; None for a visitor never seen (or forgotten after retention)."""
        return self.known.get(key)

    def put(self, key: VisitorKey, visitor: Visitor) -> None:
        """A new visitor (or one changed for another object)."""
        self.known.pop(key, None)
        self.known[key] = visitor
        self.dirty.add(key)

    def seen(self, key: VisitorKey) -> None:
        """A known visitor was seen (and maybe changed in place): written back with the
        batch, its TTL refreshed, and it becomes the most recently used."""
        self.dirty.add(key)

    def erase(self, key: VisitorKey) -> None:
        """Forget a visitor: deleted from Redis with the batch, and new if seen again."""
        self.known.pop(key, None)
        self.known[key] = None
        self.dirty.add(key)

    def take_dirty(self) -> dict[VisitorKey, Visitor | None]:
        """Visitors to write with the batch (None: delete, erased); they become the most
        recently used."""
        known = self.known
        out: dict[VisitorKey, Visitor | None] = {}
        for key in self.dirty:
            out[key] = known[key] = known.pop(key)
        return out

    def compact(self) -> None:
        """Drop the cache after a flood (its entries are the flood's visitors, scattered
        over the memory the flood's sessions used, which they would keep from being given
        back); visitors seen again are read from Redis. Unwritten changes stay."""
        self.known = {key: self.known[key] for key in self.dirty}

    def committed(self) -> int:
        """The batch is in Redis: forget the least recently seen visitors beyond the cap.
        Returns how many were forgotten."""
        self.dirty.clear()
        excess = len(self.known) - self.max_cached
        if excess <= 0:
            return 0
        for key in list(islice(self.known, excess)):
            del self.known[key]
        if excess > self.max_cached:  # a flood passed: a fresh dict gives its table back
            self.known = dict(self.known)
        return excess
