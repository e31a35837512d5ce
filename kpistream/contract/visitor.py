"""The visitor record kept in Redis per (site, visitor id): first seen, lead, first purchase;
what :mod:`kpistream.streams.visitors` keeps and :mod:`kpistream.sinks.window_store` stores."""

from __future__ import annotations

import msgspec

VisitorKey = tuple[str, str]  # (site, visitor_id)


class Visitor(msgspec.Struct, array_like=True, gc=False):
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
