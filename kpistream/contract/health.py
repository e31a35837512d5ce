"""Service-health fields, kept in a hash of their own (``P:{t:n}:health``), apart from the
KPI counters.

They describe the pipeline, not the traffic: events processed, late, duplicate, rejected by
reason, forwarded, skipped offsets, and the batch-processing-time histogram.
"""

from __future__ import annotations

PROCESSED = "_processed"
LATE = "_late"
DUPLICATE = "_dup"
REJECTED = "_rej"  # reason
#: Events forwarded to the partition that owns them (counted where they arrived; the
#: forwarded copy is counted again where it lands).
REROUTED = "_rerouted"
#: Offsets the log skipped between two batches (transaction markers, compaction, retention)
#: after the worker re-read and confirmed that the broker has nothing there.
SKIPPED = "_skipped"
BATCH_BUCKET = "_bh"  # le (seconds, as text)
BATCH_SUM_US = "_bsum_us"
BATCH_COUNT = "_bcount"

#: Upper bounds of the batch-processing-time histogram, seconds.
BATCH_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
