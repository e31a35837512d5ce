"""Version 1 of the event contract, as typed msgspec structs.

These structs are the single source of truth: the JSON Schema documents in ``kpistream/schemas/v1/``
are generated from them (``python -m kpistream.schemas.generate``) and a test proves both accept and
reject the same events. Unknown fields are ignored (forward compatibility); unknown event
types are rejected.

Rules that a JSON Schema cannot check against the wall clock (an event too far in the future)
or that need settings (a site allowlist) live in :mod:`kpistream.schemas.decoder`.
"""

from __future__ import annotations

import zlib
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1

#: 2000-01-01T00:00:00Z in epoch milliseconds: older timestamps are tracker bugs (clock unset).
MIN_TS_MS = 946_684_800_000
#: 2100-01-01T00:00:00Z: a hard ceiling; the decoder also rejects events beyond a clock skew.
MAX_TS_MS = 4_102_444_800_000

# Bounded strings: a tracker never needs more, and a megabyte string must not reach Redis.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Url = Annotated[str, msgspec.Meta(max_length=2048)]
EpochMs = Annotated[int, msgspec.Meta(ge=MIN_TS_MS, le=MAX_TS_MS)]
ItemKind = Literal["ad", "cta", "banner", "email", "search"]
ITEM_KINDS: tuple[str, ...] = ("ad", "cta", "banner", "email", "search")
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]

#: Survey scales, inclusive: NPS 0-10, CSAT 1-5, customer effort 1-7.
SURVEY_SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


class ClickstreamEvent(msgspec.Struct, tag_field="type", kw_only=True, frozen=True, gc=False):
    """Envelope of every website event; ``type`` selects the subclass."""

    event_id: Id
    ts: EpochMs
    site: Name
    visitor_id: Id
    session_id: Id | None = None


class PageView(ClickstreamEvent, tag="page_view", frozen=True):
    url: Url | None = None
    path: Url | None = None
    referrer: Url | None = None
    utm_source: Name | None = None
    utm_medium: Name | None = None
    utm_campaign: Name | None = None

    def __post_init__(self) -> None:
        if self.url is None and self.path is None:
            raise ValueError("page_view needs `url` or `path` - at `$.path`")


class ItemEvent(ClickstreamEvent, frozen=True):
    """An event about a promoted item (ad, CTA, banner, ...): the CTR pairs these up."""

    item_kind: ItemKind
    item_id: Id
    campaign: Name | None = None


class Click(ItemEvent, tag="click", frozen=True):
    pass


class Impression(ItemEvent, tag="impression", frozen=True):
    pass


class AddToCart(ClickstreamEvent, tag="add_to_cart", frozen=True):
    item_id: Id
    quantity: Quantity = 1
    value: Money | None = None
    currency: Currency | None = None


class CheckoutStart(ClickstreamEvent, tag="checkout_start", frozen=True):
    value: Money | None = None
    currency: Currency | None = None


class Purchase(ClickstreamEvent, tag="purchase", frozen=True):
    value: Money
    currency: Currency
    order_id: Id | None = None


class Lead(ClickstreamEvent, tag="lead", frozen=True):
    form_id: Id | None = None


class SurveyResponse(ClickstreamEvent, tag="survey_response", frozen=True):
    kind: Literal["nps", "csat", "ces"]
    score: int

    def __post_init__(self) -> None:
        low, high = SURVEY_SCALES[self.kind]
        if not low <= self.score <= high:
            raise ValueError(
                f"{self.kind} score must be {low}..{high}, got {self.score} - at `$.score`"
            )


class Engagement(ClickstreamEvent, tag="engagement", frozen=True):
    """The page is still being looked at (a Plausible engagement event, a Snowplow page
    ping, kpistream.js when the page is hidden): it extends the session's duration, which
    decides engaged sessions and time on site, and is not an interaction."""

    engaged_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] | None = None
    scroll_depth: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None


class Forget(ClickstreamEvent, tag="forget", frozen=True):
    """Erase one visitor (``kpistream forget``): the partition that owns the visitor drops
    its open sessions (ending them first, so aggregates stay whole), their dedupe ids and its
    visitor record, in the same atomic step as the offset. Counts nothing itself."""


Clickstream = (
    PageView
    | Click
    | Impression
    | AddToCart
    | CheckoutStart
    | Purchase
    | Lead
    | SurveyResponse
    | Engagement
    | Forget
)
CLICKSTREAM_TYPES: tuple[type[ClickstreamEvent], ...] = (
    PageView,
    Click,
    Impression,
    AddToCart,
    CheckoutStart,
    Purchase,
    Lead,
    SurveyResponse,
    Engagement,
    Forget,
)
#: What a visitor does (everything but the erasure command): conversion goals are these.
ACTIVITY_TYPES: tuple[type[ClickstreamEvent], ...] = CLICKSTREAM_TYPES[:-1]

#: Events that show the visitor did something beyond viewing one page (docs/kpis.md, "interaction").
INTERACTION_TYPES: tuple[type[ClickstreamEvent], ...] = (
    Click,
    AddToCart,
    CheckoutStart,
    Purchase,
    Lead,
    SurveyResponse,
)


class SocialEvent(msgspec.Struct, tag_field="type", kw_only=True, frozen=True, gc=False):
    """Envelope of every social-network event, as polled from a network's API."""

    event_id: Id
    ts: EpochMs
    network: Name
    account: Name


class PostImpression(SocialEvent, tag="post_impression", frozen=True):
    post_id: Id
    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)] = 1


class Like(SocialEvent, tag="like", frozen=True):
    post_id: Id


class Comment(SocialEvent, tag="comment", frozen=True):
    post_id: Id


class Share(SocialEvent, tag="share", frozen=True):
    post_id: Id


class Follow(SocialEvent, tag="follow", frozen=True):
    pass


class Unfollow(SocialEvent, tag="unfollow", frozen=True):
    pass


class FollowersSnapshot(SocialEvent, tag="followers_snapshot", frozen=True):
    followers: Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]


Social = PostImpression | Like | Comment | Share | Follow | Unfollow | FollowersSnapshot
SOCIAL_TYPES: tuple[type[SocialEvent], ...] = (
    PostImpression,
    Like,
    Comment,
    Share,
    Follow,
    Unfollow,
    FollowersSnapshot,
)


class OrderItem(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A line of an order: a product (``category`` if given, else ``item_id``, is what the
    upselling ratio counts as distinct) and optionally how many and at what unit price."""

    item_id: Id
    category: Name | None = None
    quantity: Quantity = 1
    price: Money | None = None


#: Lines per order at the most: more is a data error, not a basket.
MAX_ORDER_ITEMS = 200


class OrderEvent(msgspec.Struct, tag_field="type", kw_only=True, frozen=True, gc=False):
    """Envelope of the orders topic: one customer's order, from a tracker's purchase in the
    customer zone, the collector's order API or ``kpistream import orders``. Site and
    ``order_id`` are the order's identity: the same order from any path counts once."""

    order_id: Id
    ts: EpochMs
    site: Name
    #: the customer zone's keyed hash of the shop's customer id (``c-...``), never the id
    customer_id: Id


class Order(OrderEvent, tag="order", frozen=True):
    value: Money
    currency: Currency
    items: Annotated[list[OrderItem], msgspec.Meta(max_length=MAX_ORDER_ITEMS)] = msgspec.field(
        default_factory=list
    )


Orders = Order
ORDER_TYPES: tuple[type[OrderEvent], ...] = (Order,)


def type_name(cls: type[msgspec.Struct]) -> str:
    """The wire ``type`` of an event class."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


_CANONICAL = msgspec.msgpack.Encoder().encode


def fingerprint(event: msgspec.Struct) -> int:
    """A 32-bit digest of an event's content (its decoded fields, whatever their order or
    spacing on the wire): a retry has the same, a different event under a reused
    ``event_id`` almost surely not."""
    return zlib.crc32(_CANONICAL(event))
