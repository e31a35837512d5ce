"""The KPI catalogue: every counter and every ratio, mean and score, declared once.

A :class:`Count` is what the stream counts: its field code in Redis, its typed labels, where in
time it is attributed, its metric name and help. A :class:`Quotient` is what a marketing team
reads: numerator, denominator, unit, range, tier, and one name stem used by the exporter's
metric (``kpi_<stem>``), the goal KPI of a goals file (``kpi: <stem>``) and its recording rules
(``site:kpi_<stem>:ratio15m``). The exporter's families, the goal formulas (in Python here,
in PromQL by :mod:`kpistream.alerting.formulas`), the dashboards, the demo's table, the
README's metric table and the tables of ``docs/kpis.md`` are all derived from these
declarations; this module imports nothing of kpistream.

Adding a KPI of an existing kind is a declaration here and the rule that counts it (in
:mod:`kpistream.streams.processor` or :mod:`kpistream.streams.session_kpis`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

Label = Literal[
    "site",
    "item_kind",
    "campaign",
    "goal",
    "landing_page",
    "channel",
    "currency",
    "network",
    "account",
]
Labels = tuple[Label, ...]

SITE: Labels = ("site",)
ITEM: Labels = ("site", "item_kind", "campaign")
GOAL: Labels = ("site", "goal")
LANDING: Labels = ("site", "landing_page")
LANDING_GOAL: Labels = ("site", "landing_page", "goal")
CHANNEL: Labels = ("site", "channel")
CHANNEL_GOAL: Labels = ("site", "channel", "goal")
MONEY: Labels = ("site", "currency")
SOCIAL: Labels = ("network", "account")


class At(enum.Enum):
    """Where in time a count is attributed (its window bucket)."""

    SESSION_START = "the session's first event"
    EVENT = "the event's own time"
    SESSION_END = "the session's end (last event + gap)"


class Tier(enum.Enum):
    """The three tiers marketing teams read, plus customer experience (dashboard rows)."""

    REACH = "Reach"
    INTERACTION = "Interaction"
    TRANSACTION = "Transaction"
    EXPERIENCE = "Experience"


#: Grafana's unit names, by the unit a KPI is in.
Unit = Literal["count", "ratio", "seconds", "currency", "pages", "points"]
GRAFANA_UNIT: dict[Unit, str] = {
    "count": "short",
    "ratio": "percentunit",
    "seconds": "s",
    "currency": "short",
    "pages": "none",
    "points": "none",
}


@dataclass(frozen=True, slots=True)
class Count:
    """A counter the stream keeps per minute (or day) bucket and in monotonic totals.

    Exported as a window gauge ``kpi_<stem>{window=...}`` (``window``) and a counter
    ``kpi_<stem>_total`` (``total``). ``scale`` turns the stored integer into the unit
    (revenue is kept in millionths). ``paired_with``: the counter is exported at 0 for every
    label set of that count, so a rate over it exists before the first increment.
    """

    stem: str
    code: str
    labels: Labels
    at: At
    help: str
    unit: Unit = "count"
    scale: float = 1.0
    window: bool = True
    total: bool = True
    paired_with: Count | None = None
    tier: Tier | None = None
    #: Kept in day buckets: only the long window (``KPISTREAM_LONG_WINDOW_DAYS``) exists.
    long_window: bool = False
    #: Totals counted at another time than the window gauge (see docs/kpis.md).
    total_at: At | None = None

    @property
    def metric(self) -> str:
        return f"kpi_{self.stem}"


@dataclass(frozen=True, slots=True)
class Level:
    """A gauge the stream keeps current (not per bucket): followers."""

    stem: str
    code: str
    labels: Labels
    help: str
    tier: Tier | None = None

    @property
    def metric(self) -> str:
        return f"kpi_{self.stem}"


@dataclass(frozen=True, slots=True)
class Quotient:
    """sum(numerator) - sum(subtract), over sum(denominator), times ``factor``: a ratio, a
    mean or a score over one window, joined on the denominator's labels (the numerator may
    carry more, e.g. the goal). Never an average of ratios. ``complement``: the monotonic
    totals hold the complement of the numerator (non-bounced sessions, since a bounce can be
    corrected), so the value over a counter window is ``1 - complement / denominator``."""

    stem: str
    title: str
    kind: Literal["ratio", "mean", "score"]
    numerator: tuple[Count, ...]
    denominator: tuple[Count | Level, ...]
    labels: Labels
    help: str
    unit: Unit
    low: float
    high: float | None  # None: unbounded above
    tier: Tier
    volume_unit: str  # what the denominator counts, for people: "sessions"
    factor: float = 1.0
    subtract: tuple[Count, ...] = ()
    complement: Count | None = None
    #: Labels a goal must name (the others of ``labels`` it may name).
    required: Labels = ("site",)
    #: The demo's live table shows it under this header.
    column: str | None = None
    example: str = ""

    @property
    def metric(self) -> str:
        return f"kpi_{self.stem}" + ("_seconds" if self.unit == "seconds" else "")

    @property
    def extra_labels(self) -> int:
        """How many more labels the numerator has than the denominator (e.g. the goal)."""
        return len(self.labels) - len(self.denominator[0].labels)

    def value(self, numerator: float, denominator: float) -> float:
        """The KPI from its summed parts (numerator net of ``subtract``), each in its unit."""
        return self.factor * numerator / denominator


@dataclass(frozen=True, slots=True)
class Family:
    """A family the exporter builds from other state than a counter (HyperLogLog, gauges)."""

    metric: str
    type: Literal["gauge", "counter"]
    labels: tuple[str, ...]
    help: str
    tier: Tier | None = None
    windowed: bool = True


def _site(
    stem: str,
    code: str,
    at: At,
    help: str,
    *,
    unit: Unit = "count",
    scale: float = 1.0,
    window: bool = True,
    total: bool = True,
    paired_with: Count | None = None,
    tier: Tier | None = None,
    long_window: bool = False,
) -> Count:
    """A count labelled by site only."""
    return Count(
        stem,
        code,
        SITE,
        at,
        help,
        unit=unit,
        scale=scale,
        window=window,
        total=total,
        paired_with=paired_with,
        tier=tier,
        long_window=long_window,
    )


# fmt: off
# --- Counts, attributed at the session's start -------------------------------------------
SESSIONS = _site(
    "sessions", "s", At.SESSION_START, "Sessions, counted at their first event", tier=Tier.REACH,
)
BOUNCES = _site(
    "bounced_sessions", "b", At.SESSION_START,
    "Sessions with one page view and no interaction so far (corrected in their start bucket)",
    total=False, window=False,
)
NON_BOUNCED = _site(
    "non_bounced_sessions", "nb", At.SESSION_START,
    "Sessions that are not bounces (bounce rate = 1 - this / kpi_sessions_total)", window=False,
    paired_with=SESSIONS,
)
ENGAGED = _site(
    "engaged_sessions", "e", At.SESSION_START, "Engaged sessions (GA4), by session start",
    paired_with=SESSIONS, tier=Tier.INTERACTION,
)
CONVERSIONS = Count(
    "conversions", "cv", GOAL, At.SESSION_START,
    "Sessions with at least one event of the goal, by session start", tier=Tier.TRANSACTION,
)
LANDING_SESSIONS = Count(
    "landing_sessions", "ls", LANDING, At.SESSION_START,
    "Sessions by landing page (totals count when the session ends)", tier=Tier.TRANSACTION,
    total_at=At.SESSION_END,
)
LANDING_CONVERSIONS = Count(
    "landing_conversions", "lcv", LANDING_GOAL, At.SESSION_START,
    "Converted sessions by landing page (totals count when the session ends)",
    tier=Tier.TRANSACTION, total_at=At.SESSION_END,
)
CHANNEL_SESSIONS = Count(
    "channel_sessions", "chs", CHANNEL, At.SESSION_START,
    "Sessions by channel, utm source/medium (totals count when the session ends)",
    tier=Tier.TRANSACTION, total_at=At.SESSION_END,
)
CHANNEL_CONVERSIONS = Count(
    "channel_conversions", "chcv", CHANNEL_GOAL, At.SESSION_START,
    "Converted sessions by channel (totals count when the session ends)", tier=Tier.TRANSACTION,
    total_at=At.SESSION_END,
)
# --- Counts at the event's own time --------------------------------------------------------
NEW_VISITORS = _site(
    "new_visitors", "nv", At.EVENT, "Visitors seen for the first time", window=False,
    paired_with=SESSIONS,
)
LEADS = _site(
    "leads", "lead", At.EVENT, "Visitors who became leads (their first lead event)",
    tier=Tier.TRANSACTION, long_window=True,
)
LEAD_CUSTOMERS = _site(
    "lead_customers", "l2c", At.EVENT, "Leads whose first purchase came after they became a lead",
    paired_with=LEADS, tier=Tier.TRANSACTION, long_window=True,
)
PAGE_VIEWS = _site(
    "page_views", "pv", At.EVENT, "page_view events", paired_with=SESSIONS, tier=Tier.REACH,
)
IMPRESSIONS = Count(
    "impressions", "i", ITEM, At.EVENT, "impression events (CTR denominator)", tier=Tier.REACH,
)
CLICKS = Count(
    "clicks", "c", ITEM, At.EVENT, "click events (CTR numerator)", paired_with=IMPRESSIONS,
    tier=Tier.INTERACTION,
)
#: Money is counted in integer millionths of the currency unit: exact, unlike floats.
MICROS = 1_000_000
REVENUE = Count(
    "revenue", "rev", MONEY, At.EVENT, "Sum of purchase values, in the currency", unit="currency",
    scale=1 / MICROS, tier=Tier.TRANSACTION,
)
ORDERS = Count(
    "orders", "ord", MONEY, At.EVENT, "purchase events", paired_with=REVENUE, tier=Tier.TRANSACTION,
)
CART_COMPLETED = _site(
    "carts_completed", "cc", At.EVENT, "Carts completed by a purchase, at the purchase time",
    paired_with=SESSIONS, tier=Tier.TRANSACTION,
)
CHECKOUT_COMPLETED = _site(
    "checkouts_completed", "xc", At.EVENT, "Checkouts completed by a purchase",
    paired_with=SESSIONS, tier=Tier.TRANSACTION,
)
CHECKOUT_STARTED = _site(
    "checkouts_started", "xs", At.EVENT,
    "Checkouts started (a session's first checkout_start), at its time", paired_with=SESSIONS,
    tier=Tier.TRANSACTION,
)
NPS_ANSWERS = _site(
    "nps_answers", "npsn", At.EVENT, "NPS survey answers (0-10)", tier=Tier.EXPERIENCE,
)
NPS_PROMOTERS = _site(
    "nps_promoters", "npsp", At.EVENT, "NPS answers of 9 or 10", window=False,
    paired_with=NPS_ANSWERS,
)
NPS_DETRACTORS = _site(
    "nps_detractors", "npsd", At.EVENT, "NPS answers of 0 to 6", window=False,
    paired_with=NPS_ANSWERS,
)
CSAT_ANSWERS = _site(
    "csat_answers", "csatn", At.EVENT, "CSAT survey answers (1-5)", tier=Tier.EXPERIENCE,
)
CSAT_SATISFIED = _site(
    "csat_satisfied", "csats", At.EVENT, "CSAT answers of 4 or 5", window=False,
    paired_with=CSAT_ANSWERS,
)
CES_ANSWERS = _site(
    "ces_answers", "cesn", At.EVENT, "Customer-effort survey answers (1-7)", tier=Tier.EXPERIENCE,
)
CES_SUM = _site(
    "ces_score", "cess", At.EVENT, "Sum of customer-effort answers", window=False,
    paired_with=CES_ANSWERS,
)
# --- Social counts (event time) ------------------------------------------------------------
LIKES = Count(
    "likes", "slk", SOCIAL, At.EVENT, "Likes of the account's posts", tier=Tier.INTERACTION,
)
COMMENTS = Count(
    "comments", "scm", SOCIAL, At.EVENT, "Comments on the account's posts", tier=Tier.INTERACTION,
)
SHARES = Count(
    "shares", "ssh", SOCIAL, At.EVENT, "Shares of the account's posts", tier=Tier.INTERACTION,
)
POST_IMPRESSIONS = Count(
    "post_impressions", "spi", SOCIAL, At.EVENT,
    "Post impressions (potential reach) reported by the network", tier=Tier.REACH,
)
FOLLOWS = Count("follows", "sfo", SOCIAL, At.EVENT, "follow events", window=False)
UNFOLLOWS = Count("unfollows", "suf", SOCIAL, At.EVENT, "unfollow events", window=False)
FOLLOWERS = Level(
    "followers", "fol", SOCIAL,
    "Current followers: the latest snapshot adjusted by follows and unfollows since",
    tier=Tier.REACH,
)
# --- Counts at the session's end -----------------------------------------------------------
ENDED = _site(
    "ended_sessions", "end", At.SESSION_END, "Sessions ended (timed out) in the window",
    paired_with=SESSIONS, tier=Tier.INTERACTION,
)
DURATION = _site(
    "session_duration_seconds", "dur", At.SESSION_END,
    "Summed first-to-last-event duration of ended sessions", unit="seconds", scale=1e-3,
    window=False, paired_with=SESSIONS,
)
CART_ABANDONED = _site(
    "carts_abandoned", "ca", At.SESSION_END,
    "Carts whose session ended without a purchase, at the session end", paired_with=SESSIONS,
    tier=Tier.TRANSACTION,
)
CHECKOUT_ABANDONED = _site(
    "checkouts_abandoned", "xa", At.SESSION_END, "Checkouts whose session ended without a purchase",
    paired_with=SESSIONS, tier=Tier.TRANSACTION,
)

COUNTS: tuple[Count, ...] = (
    SESSIONS, BOUNCES, NON_BOUNCED, ENGAGED, CONVERSIONS, LANDING_SESSIONS, LANDING_CONVERSIONS,
    CHANNEL_SESSIONS, CHANNEL_CONVERSIONS, NEW_VISITORS, LEADS, LEAD_CUSTOMERS, PAGE_VIEWS,
    IMPRESSIONS, CLICKS, REVENUE, ORDERS, CART_COMPLETED, CART_ABANDONED, CHECKOUT_STARTED,
    CHECKOUT_COMPLETED, CHECKOUT_ABANDONED, ENDED, DURATION, LIKES, COMMENTS, SHARES,
    POST_IMPRESSIONS, FOLLOWS, UNFOLLOWS, NPS_ANSWERS, NPS_PROMOTERS, NPS_DETRACTORS,
    CSAT_ANSWERS, CSAT_SATISFIED, CES_ANSWERS, CES_SUM,
)
LEVELS: tuple[Level, ...] = (FOLLOWERS,)

# fmt: on


def _ratio(
    stem: str,
    title: str,
    top: Count,
    bottom: Count,
    help: str,
    tier: Tier,
    *,
    volume_unit: str,
    complement: Count | None = None,
    required: Labels = SITE,
    column: str | None = None,
) -> Quotient:
    """A 0..1 ratio of one count over another."""
    return Quotient(
        stem,
        title,
        "ratio",
        (top,),
        (bottom,),
        top.labels,
        help,
        unit="ratio",
        low=0,
        high=1,
        tier=tier,
        volume_unit=volume_unit,
        complement=complement,
        required=required,
        column=column,
    )


# fmt: off
# --- Ratios, means and scores --------------------------------------------------------------
BOUNCE_RATE = _ratio(
    "bounce_rate", "bounce rate", BOUNCES, SESSIONS,
    "Sessions with exactly one page view and no interaction / sessions, by session start",
    Tier.INTERACTION, complement=NON_BOUNCED, volume_unit="sessions", column="bounce",
)
ENGAGEMENT_RATE = _ratio(
    "engagement_rate", "engagement rate", ENGAGED, SESSIONS,
    "Engaged sessions (> 10 s, >= 2 page views or a conversion) / sessions", Tier.INTERACTION,
    volume_unit="sessions", column="engaged",
)
CLICK_THROUGH_RATE = _ratio(
    "click_through_rate", "click-through rate", CLICKS, IMPRESSIONS,
    "Clicks / impressions of the same items", Tier.INTERACTION, volume_unit="impressions",
)
CONVERSION_RATE = _ratio(
    "conversion_rate", "conversion rate", CONVERSIONS, SESSIONS,
    "Sessions with at least one event of the goal / sessions", Tier.TRANSACTION,
    volume_unit="sessions", required=GOAL,
)
LANDING_CONVERSION_RATE = _ratio(
    "landing_conversion_rate", "landing-page conversion rate", LANDING_CONVERSIONS,
    LANDING_SESSIONS, "Landing-page conversion rate: converted / sessions landing there",
    Tier.TRANSACTION, volume_unit="sessions", required=GOAL,
)
CHANNEL_CONVERSION_RATE = _ratio(
    "channel_conversion_rate", "channel conversion rate", CHANNEL_CONVERSIONS, CHANNEL_SESSIONS,
    "Channel conversion rate: converted / sessions from the channel", Tier.TRANSACTION,
    volume_unit="sessions", required=GOAL,
)
LEAD_TO_CUSTOMER_RATE = _ratio(
    "lead_to_customer_rate", "lead-to-customer rate", LEAD_CUSTOMERS, LEADS,
    "Leads whose first purchase came after the lead / leads, over the long window",
    Tier.TRANSACTION, volume_unit="leads",
)
PAGES_PER_SESSION = Quotient(
    "pages_per_session", "pages per session", "mean", (PAGE_VIEWS,), (SESSIONS,), SITE,
    "Page views / sessions", unit="pages", low=0, high=None, tier=Tier.INTERACTION,
    volume_unit="sessions", column="pages",
)
TIME_ON_SITE = Quotient(
    "time_on_site", "time on site", "mean", (DURATION,), (ENDED,), SITE,
    "Mean first-to-last-event duration of sessions ended in the window", unit="seconds", low=0,
    high=None, tier=Tier.INTERACTION, volume_unit="ended sessions", column="on site",
)
CART_ABANDONMENT_RATE = Quotient(
    "cart_abandonment_rate", "cart abandonment rate", "ratio", (CART_ABANDONED,),
    (CART_ABANDONED, CART_COMPLETED), SITE, "Carts abandoned / carts decided", unit="ratio", low=0,
    high=1, tier=Tier.TRANSACTION, volume_unit="carts decided", column="cart ab.",
)
CHECKOUT_ABANDONMENT_RATE = Quotient(
    "checkout_abandonment_rate", "checkout abandonment rate", "ratio", (CHECKOUT_ABANDONED,),
    (CHECKOUT_ABANDONED, CHECKOUT_COMPLETED), SITE, "Checkouts abandoned / checkouts decided",
    unit="ratio", low=0, high=1, tier=Tier.TRANSACTION, volume_unit="checkouts decided",
    column="checkout ab.",
)
CHECKOUT_TO_PURCHASE_RATE = Quotient(
    "checkout_to_purchase_rate", "checkout-to-purchase rate", "ratio", (CHECKOUT_COMPLETED,),
    (CHECKOUT_STARTED,), SITE,
    "Checkouts completed by a purchase / checkouts started, each at its own time (a window "
    "shorter than the way from checkout to purchase can pass 1)",
    unit="ratio", low=0, high=None, tier=Tier.TRANSACTION, volume_unit="checkouts started",
)
AVERAGE_ORDER_VALUE = Quotient(
    "average_order_value", "average order value", "mean", (REVENUE,), (ORDERS,), MONEY,
    "Revenue / orders, in the currency", unit="currency", low=0, high=None, tier=Tier.TRANSACTION,
    volume_unit="orders", required=MONEY,
)
# Unbounded above: a viral post can bring more reactions than the account has followers.
SOCIAL_ENGAGEMENT_RATE = Quotient(
    "social_engagement_rate", "social engagement rate", "ratio", (LIKES, COMMENTS, SHARES),
    (FOLLOWERS,), SOCIAL, "(Likes + comments + shares) in the window / current followers",
    unit="ratio", low=0, high=None, tier=Tier.INTERACTION, volume_unit="followers", required=SOCIAL,
)
NET_PROMOTER_SCORE = Quotient(
    "net_promoter_score", "Net Promoter Score", "score", (NPS_PROMOTERS,), (NPS_ANSWERS,), SITE,
    "% promoters (9-10) - % detractors (0-6), -100..100", unit="points", low=-100, high=100,
    tier=Tier.EXPERIENCE, volume_unit="answers", factor=100.0, subtract=(NPS_DETRACTORS,),
    column="NPS",
)
CSAT = _ratio(
    "csat", "customer satisfaction", CSAT_SATISFIED, CSAT_ANSWERS,
    "CSAT answers of 4 or 5 / all answers", Tier.EXPERIENCE, volume_unit="answers", column="CSAT",
)
CUSTOMER_EFFORT_SCORE = Quotient(
    "customer_effort_score", "customer effort score", "mean", (CES_SUM,), (CES_ANSWERS,), SITE,
    "Mean customer-effort answer (lower is better)", unit="points", low=1, high=7,
    tier=Tier.EXPERIENCE, volume_unit="answers",
)

QUOTIENTS: tuple[Quotient, ...] = (
    BOUNCE_RATE, CLICK_THROUGH_RATE, ENGAGEMENT_RATE, CONVERSION_RATE, LANDING_CONVERSION_RATE,
    CHANNEL_CONVERSION_RATE, LEAD_TO_CUSTOMER_RATE, PAGES_PER_SESSION, TIME_ON_SITE,
    CART_ABANDONMENT_RATE, CHECKOUT_ABANDONMENT_RATE, CHECKOUT_TO_PURCHASE_RATE,
    AVERAGE_ORDER_VALUE, SOCIAL_ENGAGEMENT_RATE, NET_PROMOTER_SCORE, CSAT, CUSTOMER_EFFORT_SCORE,
)
# fmt: on

#: Families built from other state than one counter.
FAMILIES: tuple[Family, ...] = (
    Family(
        "kpi_unique_visitors",
        "gauge",
        ("site",),
        "Distinct visitors in the window (HyperLogLog: standard error 0.81%)",
        Tier.REACH,
    ),
    Family(
        "kpi_visitors",
        "gauge",
        ("site", "kind"),
        "Visitors in the window: new (first-ever event in the window) or returning",
        Tier.REACH,
    ),
    Family(FOLLOWERS.metric, "gauge", SOCIAL, FOLLOWERS.help, FOLLOWERS.tier, windowed=False),
)

STORED: tuple[Count | Level, ...] = (*COUNTS, *LEVELS)
Entry = Count | Level | Quotient | Family


def problems() -> list[str]:
    """Inconsistencies of the declarations (a unit test keeps this empty)."""
    out: list[str] = []
    codes = [c.code for c in STORED]
    out += [f"field code {c!r} used twice" for c in set(codes) if codes.count(c) > 1]
    metrics = [c.metric for c in COUNTS] + [q.metric for q in QUOTIENTS]
    metrics += [f.metric for f in FAMILIES if f.metric != FOLLOWERS.metric]
    out += [f"metric {m} declared twice" for m in set(metrics) if metrics.count(m) > 1]
    for q in QUOTIENTS:
        if len({c.scale for c in q.numerator + q.subtract}) != 1:
            out.append(f"{q.stem}: numerator parts in different units")
        widths = {len(c.labels) for c in q.denominator}
        if len(widths) != 1 or q.extra_labels < 0:
            out.append(f"{q.stem}: denominator parts with different labels")
        if q.labels[: len(q.denominator[0].labels)] != q.denominator[0].labels:
            out.append(f"{q.stem}: the denominator's labels must lead the quotient's")
        if q.extra_labels and len(q.denominator) > 1:
            out.append(f"{q.stem}: extra numerator labels need a single denominator part")
        if not set(q.required) <= set(q.labels):
            out.append(f"{q.stem}: requires a label it does not have")
        for c in q.numerator + q.subtract:
            if c.labels != q.labels:
                out.append(f"{q.stem}: numerator {c.stem} has other labels")
        if q.complement is not None and q.complement.labels != q.labels:
            out.append(f"{q.stem}: complement {q.complement.stem} has other labels")
    shown: tuple[Count | Quotient | Family, ...] = (*(c for c in COUNTS if c.window), *QUOTIENTS)
    out += [
        f"{e.metric}: a window gauge without a tier (dashboard row)"
        for e in shown
        if e.tier is None
    ]
    return out
