"""Per-visitor state across sessions: first seen, lead, first purchase.

A visitor (pseudonymous id, per site) is *new* in a window when its first-ever event lies in
that window: we count first visits in the bucket of that first event, and returning visitors
are the window's unique visitors minus its new ones. A visitor becomes a *lead* at its first
``lead`` event and a *customer from a lead* when its first purchase comes after that.

Each visitor's state is one Redis key with a TTL of the retention limit, refreshed when the
visitor is seen; a visitor unseen for longer is forgotten and counts as new again. The owner
of a partition keeps a bounded cache and loads what a batch needs with one ``MGET``.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

VisitorKey = tuple[str, str]  # (site, visitor_id)

#: Visitors cached per partition between batches; beyond this the cache is cleared
#: (correctness does not depend on it: a miss is one more key in the batch's MGET).
MAX_CACHED_VISITORS = 200_000


class Visitor(msgspec.Struct, array_like=True):
    first_seen_ms: int
    lead_ms: int | None = None
    first_purchase_ms: int | None = None
    lead_customer_counted: bool = False

    @property
    def is_lead_customer(self) -> bool:
        return (
            self.lead_ms is not None
            and self.first_purchase_ms is not None
            and self.first_purchase_ms > self.lead_ms
        )


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Visitor)


def encode_visitor(visitor: Visitor) -> bytes:
    return _ENCODER.encode(visitor)


def decode_visitor(raw: bytes) -> Visitor:
    return _DECODER.decode(raw)


class VisitorBook:
    """The visitors of one partition that the current batch touches, plus a cache."""

    def __init__(self) -> None:
        self.known: dict[VisitorKey, Visitor | None] = {}  # None: not in Redis
        self.dirty: set[VisitorKey] = set()

    def missing(self, keys: Iterable[VisitorKey]) -> list[VisitorKey]:
        return [k for k in set(keys) if k not in self.known]

    def fill(self, loaded: dict[VisitorKey, Visitor | None]) -> None:
        self.known.update(loaded)

    def get(self, key: VisitorKey) -> Visitor | None:
        """The visitor's state; None for a visitor never seen (or forgotten after retention)."""
        return self.known.get(key)

    def put(self, key: VisitorKey, visitor: Visitor) -> None:
        self.known[key] = visitor
        self.dirty.add(key)

    def take_dirty(self) -> dict[VisitorKey, Visitor]:
        out = {}
        for key in self.dirty:
            visitor = self.known[key]
            assert visitor is not None
            out[key] = visitor
        return out

    def committed(self) -> None:
        self.dirty.clear()
        if len(self.known) > MAX_CACHED_VISITORS:
            self.known.clear()
