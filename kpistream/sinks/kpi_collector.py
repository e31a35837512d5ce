"""Prometheus collector that reads the KPI state from Redis at scrape time.

A fresh set of metric families is built from one :class:`kpistream.sinks.window_store.StoreSnapshot`
per scrape (reused for ``cache_s`` so a burst of scrapers costs one Redis read), so N workers
show one consistent set of KPIs and nothing goes stale. ``describe()`` returns nothing, so
registering the collector does not touch Redis. Ratios are only emitted when their
denominator is positive: "no sessions" is no sample, not a 0 that would page someone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kpistream.schemas.decoder import REASONS
from kpistream.sinks import fields as F
from kpistream.sinks.window_store import StoreSnapshot

log = logging.getLogger(__name__)

SITE = ("site",)
ITEM = ("site", "item_kind", "campaign")
GOAL = ("site", "goal")
LANDING = ("site", "landing_page")
CHANNEL = ("site", "channel")
MONEY = ("site", "currency")
SOCIAL = ("network", "account")


@dataclass(frozen=True, slots=True)
class Count:
    """A counter kind exported as a window gauge and/or a monotonic ``_total`` counter."""

    metric: str
    kind: str
    labels: tuple[str, ...]
    doc: str
    scale: float = 1.0
    gauge: bool = True
    paired_with: str | None = None  # exported at 0 for every label set of this kind


@dataclass(frozen=True, slots=True)
class Ratio:
    """A window ratio: numerator kinds / denominator kinds, joined on the denominator's labels
    (the numerator may carry more, e.g. a goal). Emitted only where the denominator is > 0."""

    metric: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    labels: tuple[str, ...]
    doc: str
    scale: float = 1.0
    subtract: tuple[str, ...] = ()  # numerator kinds counted negatively (NPS detractors)


COUNTS: tuple[Count, ...] = (
    Count("kpi_sessions", F.SESSIONS, SITE, "Sessions, counted at their first event"),
    Count(
        "kpi_non_bounced_sessions",
        F.NON_BOUNCED,
        SITE,
        "Sessions that are not bounces (bounce rate = 1 - this / kpi_sessions_total)",
        gauge=False,
        paired_with=F.SESSIONS,
    ),
    Count(
        "kpi_engaged_sessions",
        F.ENGAGED,
        SITE,
        "Engaged sessions (GA4), by session start",
        paired_with=F.SESSIONS,
    ),
    Count(
        "kpi_conversions",
        F.CONVERSIONS,
        GOAL,
        "Sessions with at least one event of the goal, by session start",
    ),
    Count(
        "kpi_landing_sessions",
        F.LANDING_SESSIONS,
        LANDING,
        "Sessions by landing page (totals count when the session ends)",
    ),
    Count(
        "kpi_landing_conversions",
        F.LANDING_CONVERSIONS,
        (*LANDING, "goal"),
        "Converted sessions by landing page (totals count when the session ends)",
    ),
    Count(
        "kpi_channel_sessions",
        F.CHANNEL_SESSIONS,
        CHANNEL,
        "Sessions by channel, utm source/medium (totals count when the session ends)",
    ),
    Count(
        "kpi_channel_conversions",
        F.CHANNEL_CONVERSIONS,
        (*CHANNEL, "goal"),
        "Converted sessions by channel (totals count when the session ends)",
    ),
    Count(
        "kpi_new_visitors",
        F.NEW_VISITORS,
        SITE,
        "Visitors seen for the first time",
        gauge=False,
        paired_with=F.SESSIONS,
    ),
    Count("kpi_leads", F.LEADS, SITE, "Visitors who became leads (their first lead event)"),
    Count(
        "kpi_lead_customers",
        F.LEAD_CUSTOMERS,
        SITE,
        "Leads whose first purchase came after they became a lead",
        paired_with=F.LEADS,
    ),
    Count("kpi_page_views", F.PAGE_VIEWS, SITE, "page_view events", paired_with=F.SESSIONS),
    Count("kpi_impressions", F.IMPRESSIONS, ITEM, "impression events (CTR denominator)"),
    Count("kpi_clicks", F.CLICKS, ITEM, "click events (CTR numerator)", paired_with=F.IMPRESSIONS),
    Count(
        "kpi_revenue",
        F.REVENUE_MICROS,
        MONEY,
        "Sum of purchase values, in the currency",
        scale=1e-6,
    ),
    Count("kpi_orders", F.ORDERS, MONEY, "purchase events", paired_with=F.REVENUE_MICROS),
    Count(
        "kpi_carts_completed",
        F.CART_COMPLETED,
        SITE,
        "Carts completed by a purchase, at the purchase time",
        paired_with=F.SESSIONS,
    ),
    Count(
        "kpi_carts_abandoned",
        F.CART_ABANDONED,
        SITE,
        "Carts whose session ended without a purchase, at the session end",
        paired_with=F.SESSIONS,
    ),
    Count(
        "kpi_checkouts_completed",
        F.CHECKOUT_COMPLETED,
        SITE,
        "Checkouts completed by a purchase",
        paired_with=F.SESSIONS,
    ),
    Count(
        "kpi_checkouts_abandoned",
        F.CHECKOUT_ABANDONED,
        SITE,
        "Checkouts whose session ended without a purchase",
        paired_with=F.SESSIONS,
    ),
    Count(
        "kpi_ended_sessions",
        F.ENDED,
        SITE,
        "Sessions ended (timed out) in the window",
        paired_with=F.SESSIONS,
    ),
    Count(
        "kpi_session_duration_seconds",
        F.DURATION_MS,
        SITE,
        "Summed first-to-last-event duration of ended sessions",
        scale=1e-3,
        gauge=False,
        paired_with=F.SESSIONS,
    ),
    Count("kpi_likes", F.LIKES, SOCIAL, "Likes of the account's posts"),
    Count("kpi_comments", F.COMMENTS, SOCIAL, "Comments on the account's posts"),
    Count("kpi_shares", F.SHARES, SOCIAL, "Shares of the account's posts"),
    Count(
        "kpi_post_impressions",
        F.POST_IMPRESSIONS,
        SOCIAL,
        "Post impressions (potential reach) reported by the network",
    ),
    Count("kpi_follows", F.FOLLOWS, SOCIAL, "follow events", gauge=False),
    Count("kpi_unfollows", F.UNFOLLOWS, SOCIAL, "unfollow events", gauge=False),
    Count("kpi_nps_answers", F.NPS_ANSWERS, SITE, "NPS survey answers (0-10)"),
    Count(
        "kpi_nps_promoters",
        F.NPS_PROMOTERS,
        SITE,
        "NPS answers of 9 or 10",
        gauge=False,
        paired_with=F.NPS_ANSWERS,
    ),
    Count(
        "kpi_nps_detractors",
        F.NPS_DETRACTORS,
        SITE,
        "NPS answers of 0 to 6",
        gauge=False,
        paired_with=F.NPS_ANSWERS,
    ),
    Count("kpi_csat_answers", F.CSAT_ANSWERS, SITE, "CSAT survey answers (1-5)"),
    Count(
        "kpi_csat_satisfied",
        F.CSAT_SATISFIED,
        SITE,
        "CSAT answers of 4 or 5",
        gauge=False,
        paired_with=F.CSAT_ANSWERS,
    ),
    Count("kpi_ces_answers", F.CES_ANSWERS, SITE, "Customer-effort survey answers (1-7)"),
    Count(
        "kpi_ces_score",
        F.CES_SUM,
        SITE,
        "Sum of customer-effort answers",
        gauge=False,
        paired_with=F.CES_ANSWERS,
    ),
)

RATIOS: tuple[Ratio, ...] = (
    Ratio(
        "kpi_bounce_ratio",
        (F.BOUNCES,),
        (F.SESSIONS,),
        SITE,
        "Sessions with exactly one page view and no interaction / sessions, by session start",
    ),
    Ratio(
        "kpi_click_through_ratio",
        (F.CLICKS,),
        (F.IMPRESSIONS,),
        ITEM,
        "Clicks / impressions of the same items",
    ),
    Ratio(
        "kpi_engagement_ratio",
        (F.ENGAGED,),
        (F.SESSIONS,),
        SITE,
        "Engaged sessions (> 10 s, >= 2 page views or a conversion) / sessions",
    ),
    Ratio(
        "kpi_conversion_ratio",
        (F.CONVERSIONS,),
        (F.SESSIONS,),
        GOAL,
        "Sessions with at least one event of the goal / sessions",
    ),
    Ratio(
        "kpi_landing_conversion_ratio",
        (F.LANDING_CONVERSIONS,),
        (F.LANDING_SESSIONS,),
        (*LANDING, "goal"),
        "Landing-page conversion rate: converted / sessions landing there",
    ),
    Ratio(
        "kpi_channel_conversion_ratio",
        (F.CHANNEL_CONVERSIONS,),
        (F.CHANNEL_SESSIONS,),
        (*CHANNEL, "goal"),
        "Channel conversion rate: converted / sessions from the channel",
    ),
    Ratio(
        "kpi_lead_to_customer_ratio",
        (F.LEAD_CUSTOMERS,),
        (F.LEADS,),
        SITE,
        "Leads whose first purchase came after the lead / leads, over the long window",
    ),
    Ratio("kpi_pages_per_session", (F.PAGE_VIEWS,), (F.SESSIONS,), SITE, "Page views / sessions"),
    Ratio(
        "kpi_time_on_site_seconds",
        (F.DURATION_MS,),
        (F.ENDED,),
        SITE,
        "Mean first-to-last-event duration of sessions ended in the window",
        scale=1e-3,
    ),
    Ratio(
        "kpi_cart_abandonment_ratio",
        (F.CART_ABANDONED,),
        (F.CART_ABANDONED, F.CART_COMPLETED),
        SITE,
        "Carts abandoned / carts decided",
    ),
    Ratio(
        "kpi_checkout_abandonment_ratio",
        (F.CHECKOUT_ABANDONED,),
        (F.CHECKOUT_ABANDONED, F.CHECKOUT_COMPLETED),
        SITE,
        "Checkouts abandoned / checkouts decided",
    ),
    Ratio(
        "kpi_average_order_value",
        (F.REVENUE_MICROS,),
        (F.ORDERS,),
        MONEY,
        "Revenue / orders, in the currency",
        scale=1e-6,
    ),
    Ratio(
        "kpi_net_promoter_score",
        (F.NPS_PROMOTERS,),
        (F.NPS_ANSWERS,),
        SITE,
        "% promoters (9-10) - % detractors (0-6), -100..100",
        scale=100.0,
        subtract=(F.NPS_DETRACTORS,),
    ),
    Ratio(
        "kpi_csat_ratio",
        (F.CSAT_SATISFIED,),
        (F.CSAT_ANSWERS,),
        SITE,
        "CSAT answers of 4 or 5 / all answers",
    ),
    Ratio(
        "kpi_customer_effort_score",
        (F.CES_SUM,),
        (F.CES_ANSWERS,),
        SITE,
        "Mean customer-effort answer (lower is better)",
    ),
)


class KpiCollector(Collector):
    def __init__(
        self,
        read: Callable[[], StoreSnapshot],
        *,
        cache_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.cache_s = cache_s
        self._monotonic = monotonic
        self._cached: tuple[float, StoreSnapshot | None] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def snapshot(self) -> StoreSnapshot | None:
        with self._lock:
            now = self._monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                try:
                    snapshot: StoreSnapshot | None = self._read()
                except Exception as exc:  # Redis down: say so in a metric and one log line
                    log.warning("cannot read KPI state from Redis: %s", exc)
                    snapshot = None
                self._cached = (now, snapshot)
            return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot()
        up = GaugeMetricFamily("kpistream_redis_up", "1 when the last KPI read from Redis worked")
        up.add_metric([], 1.0 if snapshot is not None else 0.0)
        yield up
        if snapshot is not None:
            yield from kpi_families(snapshot)
            yield from health_families(snapshot)


def _by(counter: Counter[str], kind: str) -> dict[tuple[str, ...], int]:
    """Counter values of one field kind, keyed by their label values."""
    out: dict[tuple[str, ...], int] = {}
    for name, value in counter.items():
        parts = F.split(name)
        if parts[0] == kind:
            out[tuple(parts[1:])] = value
    return out


def _sum(counter: Counter[str], kinds: tuple[str, ...]) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for kind in kinds:
        out.update(_by(counter, kind))
    return out


def kpi_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    for count in COUNTS:
        if not count.gauge:
            continue
        family = GaugeMetricFamily(
            count.metric, f"{count.doc}, in the window", labels=[*count.labels, "window"]
        )
        for window, counter in snapshot.windows.items():
            for labels, n in sorted(_by(counter, count.kind).items()):
                family.add_metric([*labels, window], n * count.scale)
        yield family
    for ratio in RATIOS:
        family = GaugeMetricFamily(ratio.metric, ratio.doc, labels=[*ratio.labels, "window"])
        for window, counter in snapshot.windows.items():
            numerator = _sum(counter, ratio.numerator)
            numerator.subtract(_sum(counter, ratio.subtract))
            denominator = _sum(counter, ratio.denominator)
            for labels in sorted(numerator.keys() | denominator.keys()):
                den = denominator.get(labels[: len(labels) - _extra(ratio)], 0)
                if den > 0 and len(labels) == len(ratio.labels):
                    family.add_metric([*labels, window], ratio.scale * numerator[labels] / den)
        yield family
    yield from visitor_families(snapshot)
    yield from social_families(snapshot)
    totals = snapshot.totals
    for count in COUNTS:
        counter_family = CounterMetricFamily(count.metric, count.doc, labels=list(count.labels))
        values = _by(totals, count.kind)
        label_sets = set(values)
        if count.paired_with is not None:
            width = len(count.labels)
            label_sets |= {k[:width] for k in _by(totals, count.paired_with) if len(k) >= width}
        for labels in sorted(label_sets):
            counter_family.add_metric(list(labels), values.get(labels, 0) * count.scale)
        yield counter_family


def visitor_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    unique = GaugeMetricFamily(
        "kpi_unique_visitors",
        "Distinct visitors in the window (HyperLogLog: standard error 0.81%)",
        labels=["site", "window"],
    )
    kinds = GaugeMetricFamily(
        "kpi_visitors",
        "Visitors in the window: new (first-ever event in the window) or returning",
        labels=["site", "kind", "window"],
    )
    for window, per_site in snapshot.uniques.items():
        new = _by(snapshot.windows[window], F.NEW_VISITORS)
        for site, n in sorted(per_site.items()):
            unique.add_metric([site, window], n)
            first_time = new.get((site,), 0)
            kinds.add_metric([site, "new", window], first_time)
            # An estimate minus an exact count: never report fewer than none.
            kinds.add_metric([site, "returning", window], max(0, n - first_time))
    yield unique
    yield kinds


def social_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    followers = _by(snapshot.gauges, F.FOLLOWERS)
    current = GaugeMetricFamily(
        "kpi_followers",
        "Current followers: the latest snapshot adjusted by follows and unfollows since",
        labels=list(SOCIAL),
    )
    for labels, n in sorted(followers.items()):
        current.add_metric(list(labels), n)
    yield current
    ratio = GaugeMetricFamily(
        "kpi_social_engagement_ratio",
        "(Likes + comments + shares) in the window / current followers",
        labels=[*SOCIAL, "window"],
    )
    for window, counter in snapshot.windows.items():
        engagements = _sum(counter, (F.LIKES, F.COMMENTS, F.SHARES))
        for labels, n in sorted(followers.items()):
            if n > 0:
                ratio.add_metric([*labels, window], engagements.get(labels, 0) / n)
    yield ratio


def _extra(ratio: Ratio) -> int:
    """How many more labels the numerator has than the denominator (e.g. the goal)."""
    return len(ratio.labels) - _label_width(ratio.denominator[0])


def _label_width(kind: str) -> int:
    return next(len(c.labels) for c in COUNTS if c.kind == kind)


def health_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    totals = snapshot.totals
    processed = CounterMetricFamily(
        "kpistream_events_processed", "Valid events applied to the KPI state"
    )
    processed.add_metric([], totals[F.PROCESSED])
    yield processed
    late = CounterMetricFamily(
        "kpistream_events_late", "Events dropped for arriving later than the allowed lateness"
    )
    late.add_metric([], totals[F.LATE])
    yield late
    duplicate = CounterMetricFamily(
        "kpistream_events_duplicate",
        "Events dropped as a retry of an event already counted (same event_id)",
    )
    duplicate.add_metric([], totals[F.DUPLICATE])
    yield duplicate
    rejected = CounterMetricFamily(
        "kpistream_events_rejected",
        "Invalid events sent to the dead-letter topic",
        labels=["reason"],
    )
    for reason in REASONS:
        rejected.add_metric([reason], totals[F.field(F.REJECTED, reason)])
    yield rejected
    batch = HistogramMetricFamily(
        "kpistream_batch_processing_seconds",
        "Time to decode, process and dead-letter one partition batch (before its Redis commit)",
    )
    buckets = [
        (repr(le), float(totals[F.field(F.BATCH_BUCKET, repr(le))])) for le in F.BATCH_BUCKETS_S
    ]
    buckets.append(("+Inf", float(totals[F.BATCH_COUNT])))
    batch.add_metric([], buckets, sum_value=totals[F.BATCH_SUM_US] / 1_000_000)
    yield batch
    fenced = CounterMetricFamily(
        "kpistream_fenced_writes",
        "Batches a worker that had lost its partition tried to commit; rejected by the fence",
    )
    fenced.add_metric([], snapshot.fenced_writes)
    yield fenced
    for name, text, value in (
        (
            "kpistream_state_resets",
            "Partitions found without any state (Redis came back empty) and rebuilt from the "
            "earliest offset the topic retains",
            snapshot.state_resets,
        ),
        (
            "kpistream_events_rerouted",
            "Events that arrived on a partition that does not own their visitor or account "
            "and were forwarded to the owner (counted again there)",
            totals[F.REROUTED],
        ),
        (
            "kpistream_offsets_skipped",
            "Offsets the log had no record for (transaction markers, compaction, retention), "
            "confirmed by a second read",
            totals[F.SKIPPED],
        ),
    ):
        family = CounterMetricFamily(name, text)
        family.add_metric([], value)
        yield family
    yield from partition_families(snapshot, now_s=time.time())
    yield from label_families(snapshot)
    partitions = GaugeMetricFamily("kpistream_partitions", "Kafka partitions with state in Redis")
    partitions.add_metric([], snapshot.partitions)
    yield partitions
    if snapshot.watermark_ms is not None:
        watermark = GaugeMetricFamily(
            "kpistream_watermark_seconds",
            "Event-time watermark (newest accepted event time), Unix seconds",
        )
        watermark.add_metric([], snapshot.watermark_ms / 1000)
        yield watermark


def label_families(snapshot: StoreSnapshot) -> Iterator[Metric]:
    """Label budgets: size, values holding a slot, distinct values refused one."""
    labels = ["dimension"]
    budget = GaugeMetricFamily(
        "kpistream_label_budget",
        "Label values a dimension may name (KPISTREAM_MAX_*)",
        labels=labels,
    )
    used = GaugeMetricFamily(
        "kpistream_label_values",
        "Label values holding a slot of the dimension's budget (unseen for "
        "KPISTREAM_LABEL_IDLE_DAYS, a value gives its slot up)",
        labels=labels,
    )
    refused = GaugeMetricFamily(
        "kpistream_label_refused_values",
        "Distinct values refused a label because the budget was full (they fold into "
        "'other'); HyperLogLog estimate, reset by `kpistream labels reset`",
        labels=labels,
    )
    for name, use in sorted(snapshot.labels.items()):
        budget.add_metric([name], use.budget)
        used.add_metric([name], use.admitted)
        refused.add_metric([name], use.refused)
    yield budget
    yield used
    yield refused


def partition_families(snapshot: StoreSnapshot, *, now_s: float) -> Iterator[Metric]:
    """Per-partition health, live: lag from the owner's view of the log end (rewritten
    about every second, paused and stalled partitions included) and the stored offset."""
    status = snapshot.partition_status
    lag = GaugeMetricFamily(
        "kpistream_consumer_lag_records",
        "Records not yet counted: log end offsets minus stored offsets, summed over partitions",
    )
    lag.add_metric([], sum(s.lag for s in status.values()))
    yield lag
    labels = ["topic", "partition"]
    per_lag = GaugeMetricFamily(
        "kpistream_partition_lag_records",
        "Records of the partition not yet counted (log end minus stored offset)",
        labels=labels,
    )
    stalled = GaugeMetricFamily(
        "kpistream_partition_stalled",
        "1 while a record batch of the partition cannot be read (e.g. an unknown codec or "
        "a corrupt batch); the other partitions go on",
        labels=labels,
    )
    age = GaugeMetricFamily(
        "kpistream_partition_watermark_age_seconds",
        "Wall clock minus the partition's event-time watermark",
        labels=labels,
    )
    for tag, s in sorted(status.items()):
        topic, _, partition = tag.rpartition(":")
        per_lag.add_metric([topic, partition], s.lag)
        stalled.add_metric([topic, partition], 1.0 if s.stalled else 0.0)
        if s.watermark_ms:
            age.add_metric([topic, partition], max(0.0, now_s - s.watermark_ms / 1000))
    yield per_lag
    yield stalled
    yield age


#: Families built outside the COUNTS/RATIOS tables (name, type, labels, help) for the docs.
OTHER_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    (
        "kpi_unique_visitors",
        "gauge",
        "site, window",
        "Distinct visitors in the window (HyperLogLog: standard error 0.81%)",
    ),
    (
        "kpi_visitors",
        "gauge",
        "site, kind, window",
        "Visitors in the window: new (first-ever event in the window) or returning",
    ),
    (
        "kpi_followers",
        "gauge",
        "network, account",
        "Current followers: the latest snapshot adjusted by follows and unfollows since",
    ),
    (
        "kpi_social_engagement_ratio",
        "gauge",
        "network, account, window",
        "(Likes + comments + shares) in the window / current followers",
    ),
)


def markdown_table() -> str:
    """The README's KPI metric table, from the declarations above (``make docs``)."""
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for c in COUNTS:
        labels = ", ".join(c.labels)
        if c.gauge:
            rows.append(f"| `{c.metric}` | gauge | {labels}, window | {c.doc}, in the window |")
        rows.append(f"| `{c.metric}_total` | counter | {labels} | {c.doc} |")
    for r in RATIOS:
        rows.append(f"| `{r.metric}` | gauge | {', '.join(r.labels)}, window | {r.doc} |")
    for name, kind, labels, doc in OTHER_FAMILIES:
        rows.append(f"| `{name}` | {kind} | {labels} | {doc} |")
    return "\n".join(rows)
