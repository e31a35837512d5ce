"""Followers, engagement and post impressions of social accounts, hand-computed."""

from __future__ import annotations

from kpistream.contract import health as H
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import (
    Comment,
    Follow,
    FollowersSnapshot,
    Like,
    PostImpression,
    Share,
    Unfollow,
)
from kpistream.streams.labels import LabelBudget
from kpistream.streams.social import SocialProcessor
from tests.support.factories import social

#: The wall clock of every batch: after every event here (the watermark cap never bites).
NOW_MS = 4_000_000_000_000
T = 1_700_000_000_000
S = 1000
ev = social


def processor(max_accounts: int = 10) -> SocialProcessor:
    networks, accounts = LabelBudget(max_values=5), LabelBudget(max_values=max_accounts)
    networks.learn({"instagram"}, full=True)
    accounts.learn({"acme", "beta"}, full=True)
    return SocialProcessor(allowed_lateness_ms=120 * S, networks=networks, accounts=accounts)


FOL = fields.field(K.FOLLOWERS.code, "instagram", "acme")


def test_followers_are_the_latest_snapshot_adjusted_by_later_follows() -> None:
    p = processor()
    d1 = p.process(
        [
            ev(FollowersSnapshot, T, followers=100),
            ev(Follow, T + 10 * S),
            ev(Follow, T + 11 * S),
            ev(Follow, T + 12 * S),
            ev(Unfollow, T + 20 * S),
            ev(Follow, T - 5 * S),  # older than the snapshot: already in it
        ],
        now_ms=NOW_MS,
    )
    assert d1.gauges == {FOL: 102}
    d2 = p.process(
        [ev(FollowersSnapshot, T + 60 * S, followers=110), ev(Follow, T + 70 * S)], now_ms=NOW_MS
    )
    assert d2.gauges == {FOL: 111}
    d3 = p.process(
        [ev(FollowersSnapshot, T + 30 * S, followers=5)], now_ms=NOW_MS
    )  # an older snapshot
    assert d3.gauges == {FOL: 111}
    assert d1.totals[fields.field(K.FOLLOWS.code, "instagram", "acme")] == 4


def test_engagement_and_post_impressions_count_by_event_time() -> None:
    minute = T // 60_000
    d = processor().process(
        [
            ev(Like, T, post_id="p"),
            ev(Like, T + S, post_id="p"),
            ev(Comment, T + 2 * S, post_id="p"),
            ev(Share, T + 3 * S, post_id="p"),
            ev(PostImpression, T, post_id="p", count=120),
            ev(PostImpression, T + 61 * S, post_id="p", count=30),
        ],
        now_ms=NOW_MS,
    )
    assert d.buckets[minute, fields.field(K.LIKES.code, "instagram", "acme")] == 2
    assert d.buckets[minute, fields.field(K.COMMENTS.code, "instagram", "acme")] == 1
    assert d.buckets[minute, fields.field(K.SHARES.code, "instagram", "acme")] == 1
    assert d.buckets[minute, fields.field(K.POST_IMPRESSIONS.code, "instagram", "acme")] == 120
    assert d.buckets[minute + 1, fields.field(K.POST_IMPRESSIONS.code, "instagram", "acme")] == 30
    assert d.gauges == {}  # no snapshot yet: no follower count, no engagement rate


def test_retries_late_events_and_rejections_are_counted_apart() -> None:
    p = processor()
    like = ev(Like, T + 300 * S, post_id="p")
    d = p.process(
        [like, like, ev(Like, T, post_id="p"), Rejection("unknown_type", "x")], now_ms=NOW_MS
    )
    assert d.health[H.PROCESSED] == 1 and d.health[H.DUPLICATE] == 1
    assert d.health[H.LATE] == 1 and d.health[fields.field(H.REJECTED, "unknown_type")] == 1


def test_state_survives_a_reload() -> None:
    p = processor()
    d = p.process([ev(FollowersSnapshot, T, followers=7), ev(Follow, T + S)], now_ms=NOW_MS)
    q = processor()
    assert q.load(d.state_set, p.watermark_ms) == {"network": {"instagram"}, "account": {"acme"}}
    assert q.process([ev(Unfollow, T + 2 * S)], now_ms=NOW_MS).gauges == {FOL: 7}


def test_a_folded_account_has_no_follower_gauge() -> None:
    p = processor()
    d = p.process(
        [
            ev(FollowersSnapshot, T, "someone-else", followers=9),
            ev(Like, T, "someone-else", post_id="p"),
        ],
        now_ms=NOW_MS,
    )
    assert d.gauges == {}
    assert d.totals[fields.field(K.LIKES.code, "instagram", "other")] == 1


def test_follows_older_than_the_lateness_are_folded_and_a_newer_snapshot_replaces_them() -> None:
    """300,000 follows over 50 minutes, with no snapshot in between: the count stays exact
    and the account keeps only the changes a snapshot could still replace (the last 120 s)."""
    p = processor()
    p.process([ev(FollowersSnapshot, T, followers=1_000)], now_ms=NOW_MS)
    follows = [ev(Follow if i % 3 else Unfollow, T + 1 + i * 10) for i in range(300_000)]
    d = p.process(follows, now_ms=NOW_MS)
    # 200,000 follows - 100,000 unfollows after the snapshot
    assert d.gauges == {FOL: 101_000}
    account = p.accounts["instagram", "acme"]
    # Kept: ts at or after the horizon, 120 s before the last (i = 287,999..299,999): 12,001
    # changes, 4,000 of them unfollows (multiples of 3); folded: 100,000 - (8,001 - 4,000).
    assert len(account.changes) == 12_001
    assert account.settled == 95_999
    assert d.totals[fields.field(K.FOLLOWS.code, "instagram", "acme")] == 200_000
    assert d.totals[fields.field(K.UNFOLLOWS.code, "instagram", "acme")] == 100_000
    # A reload keeps the folded sum; a snapshot newer than the horizon replaces it.
    q = processor()
    q.load(d.state_set, p.watermark_ms)
    last = T + 1 + 299_999 * 10
    assert q.process([ev(Follow, last)], now_ms=NOW_MS).gauges == {FOL: 101_001}
    snap = q.process(
        [ev(FollowersSnapshot, last - 60 * S, followers=50), ev(Unfollow, last + 1)], now_ms=NOW_MS
    )
    # After it (ts > last - 60 s): i = 294,000..299,999, 4,000 follows and 2,000 unfollows;
    # then the +1 and the -1.
    assert snap.gauges == {FOL: 50 + 4_000 - 2_000 + 1 - 1}


def test_social_retry_is_a_duplicate_and_a_reused_id_is_rejected() -> None:
    p = processor()
    like = ev(Like, T, post_id="p")
    retry = Like(event_id=like.event_id, ts=T, network="instagram", account="acme", post_id="p")
    other = Like(event_id=like.event_id, ts=T, network="instagram", account="acme", post_id="q")
    d = p.process([like, retry, other], now_ms=NOW_MS)
    assert d.health[H.DUPLICATE] == 1 and d.health[H.PROCESSED] == 1
    assert [(i, r.reason) for i, r in d.rejections] == [(2, "conflicting_duplicate")]
