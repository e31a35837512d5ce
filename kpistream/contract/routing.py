"""Which partition owns an event, whatever the producer did (DESIGN invariant 8).

Sessions, carts and unique visitors need all of a visitor's events in one partition, and a
follower count all of an account's. Producers we did not write key and partition as they
like: librdkafka hashes keys with CRC32, the Java client and aiokafka with murmur2, others
send no key at all. So kpistream decides ownership itself: an event belongs to partition
``owner(ownership key, partitions)``, where the ownership key is ``site + US + visitor_id``
(clickstream) or ``network + US + account`` (social). ``kpistream produce`` and the
collector send each event straight to its owner; a worker that finds an event elsewhere
forwards it there before its batch commits (at least once; the owner deduplicates by
``event_id``) and counts it as re-routed. A forwarded record carries the
:data:`FORWARDED_HEADER` and is never forwarded again, so two workers that disagree about the
partition count cannot bounce an event between them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from kpistream.schemas.decoder import Rejection

#: Record header of a forwarded event; its value names where the event first arrived.
FORWARDED_HEADER = "kpistream-forwarded-from"
US = "\x1f"


def owner(key: str, partitions: int) -> int:
    """The partition that owns an ownership key (stable across processes and versions)."""
    return zlib.crc32(key.encode()) % partitions


def ownership_key(scope: str, ident: str) -> str:
    """``site`` and ``visitor_id``, or ``network`` and ``account``, as one key."""
    return f"{scope}{US}{ident}"


def clickstream_key(event: Any) -> str:
    return ownership_key(event.site, event.visitor_id)


def social_key(event: Any) -> str:
    return ownership_key(event.network, event.account)


def orders_key(event: Any) -> str:
    return ownership_key(event.site, event.customer_id)


class Rerouted:
    """Marker in a decoded batch: this record was forwarded to its owning partition."""

    __slots__ = ()


REROUTED = Rerouted()


def misplaced(
    decoded: Sequence[Any],
    forwarded: Sequence[bool],
    *,
    partition: int,
    partitions: int,
    key: Any,
) -> list[tuple[int, int]]:
    """(index, owner) of the valid events of one partition's batch that another partition
    owns. Records that were forwarded once stay where they landed."""
    out = []
    owners: dict[str, int] = {}  # a visitor's events come in runs: each key hashed once
    for i, event in enumerate(decoded):
        if forwarded[i] or event.__class__ is Rejection:  # exact class: isinstance is slow
            continue
        ident = key(event)
        target = owners.get(ident)
        if target is None:
            target = owners[ident] = owner(ident, partitions)
        if target != partition:
            out.append((i, target))
    return out


def is_forwarded(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    return bool(headers) and any(name == FORWARDED_HEADER for name, _ in headers or ())
