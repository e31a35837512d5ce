"""Names of the counter fields inside bucket and totals hashes (see
:mod:`kpistream.sinks.window_store`).

A field is a kind followed by its label values, joined by the ASCII unit separator; label
values never contain it because :func:`kpistream.streams.labels.sanitize` strips control characters.
Where a kind is attributed in time is part of its definition (docs/kpis.md):

- session start: SESSIONS, BOUNCES, ENGAGED, CONVERSIONS and the landing-page/channel kinds
  (window gauges follow the session's start; their totals count once, when first reached,
  or at the session's end for the landing-page/channel kinds, whose value can still change)
- the event's own time: PAGE_VIEWS, IMPRESSIONS, CLICKS, REVENUE_MICROS, ORDERS, survey kinds,
  CART_COMPLETED / CHECKOUT_COMPLETED (at the purchase that completes them)
- the session's end (last event + gap): ENDED, DURATION_MS, CART_ABANDONED, CHECKOUT_ABANDONED
"""

from __future__ import annotations

SEP = "\x1f"

# Session start.
SESSIONS = "s"  # site
BOUNCES = "b"  # site (buckets only: a bounce can be corrected)
NON_BOUNCED = "nb"  # site (totals only)
ENGAGED = "e"  # site
CONVERSIONS = "cv"  # site, goal
LANDING_SESSIONS = "ls"  # site, landing_page
LANDING_CONVERSIONS = "lcv"  # site, landing_page, goal
CHANNEL_SESSIONS = "chs"  # site, channel
CHANNEL_CONVERSIONS = "chcv"  # site, channel, goal
# Event time.
NEW_VISITORS = "nv"  # site: first-ever events of visitors (minute of that event)
LEADS = "lead"  # site: visitors' first lead (day buckets, for the long window)
LEAD_CUSTOMERS = "l2c"  # site: first purchases after a lead (day buckets)
PAGE_VIEWS = "pv"  # site
IMPRESSIONS = "i"  # site, item_kind, campaign
CLICKS = "c"  # site, item_kind, campaign
REVENUE_MICROS = "rev"  # site, currency: millionths of the currency unit, exact integers
ORDERS = "ord"  # site, currency
NPS_ANSWERS = "npsn"  # site
NPS_PROMOTERS = "npsp"  # site
NPS_DETRACTORS = "npsd"  # site
CSAT_ANSWERS = "csatn"  # site
CSAT_SATISFIED = "csats"  # site
CES_ANSWERS = "cesn"  # site
CES_SUM = "cess"  # site
CART_COMPLETED = "cc"  # site
CHECKOUT_COMPLETED = "xc"  # site
# Social (event time unless noted).
LIKES = "slk"  # network, account
COMMENTS = "scm"  # network, account
SHARES = "ssh"  # network, account
POST_IMPRESSIONS = "spi"  # network, account (summed counts)
FOLLOWS = "sfo"  # network, account (totals only)
UNFOLLOWS = "suf"  # network, account (totals only)
FOLLOWERS = "fol"  # network, account: current followers, a gauge (not a counter)
# Session end.
ENDED = "end"  # site
DURATION_MS = "dur"  # site
CART_ABANDONED = "ca"  # site
CHECKOUT_ABANDONED = "xa"  # site

# Service health counters, in totals only.
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


def field(kind: str, *labels: str) -> str:
    return SEP.join((kind, *labels))


def split(name: str) -> list[str]:
    return name.split(SEP)
