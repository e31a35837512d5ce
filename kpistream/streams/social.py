"""The social topic's stream processor: engagement, post impressions and followers.

Social engagement rate (docs/kpis.md) = (likes + comments + shares) in the window / the account's
current followers. Followers come from the latest ``followers_snapshot`` (by event time),
adjusted by the ``follow``/``unfollow`` events after it; events older than the snapshot are
already part of it. An account without a snapshot has no follower count and no rate.

Accounts are keyed by (network, account); the poller keys records by account, so one account
lives in one partition and its follower count is written as a gauge of that partition.
Retries (same ``event_id``) within the allowed lateness are counted once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from kpistream.config.settings import Settings
from kpistream.contract import health as H
from kpistream.contract.delta import BatchDelta
from kpistream.contract.routing import Rerouted, social_key
from kpistream.contract.visitor import VisitorKey
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.kpis.windows import minute_of
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import (
    Comment,
    Follow,
    FollowersSnapshot,
    Like,
    PostImpression,
    Share,
    Social,
    SocialEvent,
    Unfollow,
    fingerprint,
)
from kpistream.streams.labels import OTHER, LabelBudget
from kpistream.streams.logic import decoder_of
from kpistream.streams.watermarked import WatermarkedProcessor

AccountKey = tuple[str, str]  # (network, account)

_COUNTED = {Like: K.LIKES.code, Comment: K.COMMENTS.code, Share: K.SHARES.code}


class Account(msgspec.Struct, array_like=True, gc=False):
    snapshot_ms: int | None = None
    snapshot: int = 0
    #: follows and unfollows after the snapshot that a newer snapshot could still replace
    changes: list[tuple[int, int]] = msgspec.field(default_factory=list)  # (ts, +1 | -1)
    #: event_id -> (ts, content fingerprint), for retries within the lateness
    recent_ids: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    #: the sum of older changes: any snapshot still accepted is newer than all of them
    settled: int = 0

    @property
    def followers(self) -> int | None:
        if self.snapshot_ms is None:
            return None
        return max(0, self.snapshot + self.settled + sum(d for _, d in self.changes))

    def settle(self, horizon_ms: int) -> None:
        """Fold the changes older than the lateness horizon into one sum. A snapshot is only
        accepted at or after the horizon, and it replaces every change up to its own time,
        so a newer snapshot replaces the folded sum as a whole: state stays bounded by the
        lateness, however many follows arrive between two snapshots."""
        old = [d for t, d in self.changes if t < horizon_ms]
        if old:
            self.settled += sum(old)
            self.changes = [c for c in self.changes if c[0] >= horizon_ms]


_KEY = msgspec.msgpack.Decoder(tuple[str, str])
_ACCOUNT = msgspec.msgpack.Decoder(Account)
_ENCODE = msgspec.msgpack.Encoder().encode


class SocialProcessor(WatermarkedProcessor):
    """State and rules for one partition of the social topic."""

    def __init__(
        self, *, allowed_lateness_ms: int, networks: LabelBudget, accounts: LabelBudget
    ) -> None:
        super().__init__(allowed_lateness_ms=allowed_lateness_ms)
        self.networks = networks
        self.accounts_budget = accounts
        self.accounts: dict[AccountKey, Account] = {}

    def load(self, state: dict[bytes, bytes], watermark_ms: int) -> dict[str, set[str]]:
        self.accounts = {_KEY.decode(k): _ACCOUNT.decode(v) for k, v in state.items()}
        self.watermark_ms = watermark_ms
        return {
            "network": {k[0] for k in self.accounts},
            "account": {k[1] for k in self.accounts},
        }

    def process(
        self, decoded: Iterable[SocialEvent | Rejection | Rerouted], *, now_ms: int
    ) -> BatchDelta:
        delta = BatchDelta()
        health = delta.health
        touched: set[AccountKey] = set()
        watermark = self.watermark_ms
        for index, event in enumerate(decoded):
            if not self.screen(event, watermark, health):
                continue
            ts = event.ts
            key = (event.network, event.account)
            account = self.accounts.setdefault(key, Account())
            content = fingerprint(event)
            seen = account.recent_ids.get(event.event_id)
            if seen is not None:
                self.repeated(delta, index, event.event_id, same_content=seen[1] == content)
                continue
            account.recent_ids[event.event_id] = (ts, content)
            if ts > watermark:
                watermark = ts if ts <= now_ms else max(watermark, now_ms)
            health[H.PROCESSED] += 1
            touched.add(key)
            self._apply(delta, key, account, event)
        self.watermark_ms = watermark
        self._settle(delta, touched)
        return delta

    def needs(self, events: list[SocialEvent]) -> list[VisitorKey]:
        """Nothing to load: an account's state is the partition's own."""
        return []

    def fill(self, loaded: dict[VisitorKey, bytes | None]) -> None:
        """Nothing was loaded."""

    def held(self) -> int:
        return len(self.accounts)

    def compact(self) -> None:
        self.accounts = {
            _KEY.decode(_ENCODE(k)): _ACCOUNT.decode(_ENCODE(v)) for k, v in self.accounts.items()
        }

    def _labels(self, key: AccountKey) -> tuple[str, str]:
        return self.networks.label(key[0]), self.accounts_budget.label(key[1])

    def _apply(self, delta: BatchDelta, key: AccountKey, account: Account, event: Any) -> None:
        network, name = self._labels(key)
        minute = minute_of(event.ts)
        counted = _COUNTED.get(type(event))
        if counted is not None:
            delta.buckets[minute, fields.field(counted, network, name)] += 1
            delta.totals[fields.field(counted, network, name)] += 1
        elif isinstance(event, PostImpression):
            delta.buckets[minute, fields.field(K.POST_IMPRESSIONS.code, network, name)] += (
                event.count
            )
            delta.totals[fields.field(K.POST_IMPRESSIONS.code, network, name)] += event.count
        elif isinstance(event, FollowersSnapshot):
            if account.snapshot_ms is None or event.ts >= account.snapshot_ms:
                account.snapshot_ms = event.ts
                account.snapshot = event.followers
                account.changes = [c for c in account.changes if c[0] > event.ts]
                account.settled = 0  # every folded change is older than this snapshot
        elif isinstance(event, Follow | Unfollow):
            kind = K.FOLLOWS.code if isinstance(event, Follow) else K.UNFOLLOWS.code
            delta.totals[fields.field(kind, network, name)] += 1
            after_snapshot = account.snapshot_ms is None or event.ts > account.snapshot_ms
            if after_snapshot:
                account.changes.append((event.ts, 1 if isinstance(event, Follow) else -1))

    def _settle(self, delta: BatchDelta, touched: set[AccountKey]) -> None:
        horizon = self.watermark_ms - self.allowed_lateness_ms
        for key in touched:
            account = self.accounts[key]
            # Retries older than the lateness are dropped as late anyway: forget their ids.
            account.recent_ids = {i: s for i, s in account.recent_ids.items() if s[0] >= horizon}
            account.settle(horizon)
            delta.state_set[_ENCODE(key)] = _ENCODE(account)
            network, name = self._labels(key)
            followers = account.followers
            if followers is not None and name != OTHER:  # folded accounts have no one count
                delta.gauges[fields.field(K.FOLLOWERS.code, network, name)] = followers
        delta.watermark_ms = self.watermark_ms


class SocialLogic:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.social_topic
        self.decoder = decoder_of(settings, Social, by_site=False)
        self.networks = LabelBudget(max_values=settings.max_networks)
        self.accounts = LabelBudget(max_values=settings.max_accounts)

    def new_partition(self) -> SocialProcessor:
        return SocialProcessor(
            allowed_lateness_ms=self.settings.allowed_lateness_s * 1000,
            networks=self.networks,
            accounts=self.accounts,
        )

    def ownership_key(self, event: Any) -> str:
        return social_key(event)

    def budget(self, dimension: str) -> LabelBudget:
        return self.networks if dimension == "network" else self.accounts

    def budgets(self) -> dict[str, LabelBudget]:
        return {"network": self.networks, "account": self.accounts}

    def dimension_values(self, events: Iterable[Any]) -> dict[str, set[str]]:
        values: dict[str, set[str]] = {"network": set(), "account": set()}
        for event in events:
            values["network"].add(event.network)
            values["account"].add(event.account)
        return values
