"""The gap check of a partition's batch: it must start at the stored offset.

aiokafka drops what one ``getmany`` drained of other partitions when a record batch of one
partition cannot be read, though it moved their positions; so a batch that starts later than
the stored offset is re-read from there once, and the gap is accepted (and counted as
skipped) only when the second read starts at the same place: the broker has nothing there
(transaction markers, compaction, retention). Records before the stored offset (a fetch that
began earlier) are dropped: they are counted already.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord

log = logging.getLogger(__name__)

Records = list[ConsumerRecord[Any, Any]]


@dataclass(frozen=True, slots=True)
class Verdict:
    #: the records to apply: those at or after the stored offset
    records: Records
    #: offsets confirmed empty before them
    skipped: int = 0
    #: (stored offset, first offset) of a gap seen for the first time: read it again from the
    #: stored offset, remembering it, and apply nothing now
    reread: tuple[int, int] | None = None


def check(
    records: Records, stored: int | None, seen_before: tuple[int, int] | None, tag: str
) -> Verdict:
    """What to do with a batch of a partition whose stored offset is ``stored`` (None: no
    position yet) when the gap ``seen_before`` was met by the last read."""
    if stored is None:
        return Verdict(records)
    records = [r for r in records if r.offset >= stored]
    if not records or records[0].offset == stored:
        return Verdict(records)
    gap = (stored, records[0].offset)
    if gap != seen_before:
        log.warning(
            "partition %s: a batch starts at offset %d, after the stored offset %d; "
            "re-reading from %d to count what lies between",
            tag,
            gap[1],
            gap[0],
            gap[0],
        )
        return Verdict([], reread=gap)
    log.info(
        "partition %s: offsets %d..%d hold no records (transaction markers, compaction or "
        "retention); skipped",
        tag,
        gap[0],
        gap[1] - 1,
    )
    return Verdict(records, skipped=gap[1] - gap[0])
