"""Sessionization, bounce correction and CTR counting, against hand-computed buckets."""

from __future__ import annotations

from kpistream.contract import health as H
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.schemas.decoder import Rejection
from kpistream.schemas.events import (
    Engagement,
    Forget,
    PageView,
)
from kpistream.streams.sessionizer import decode_key
from tests.support.factories import (
    GAP,
    M0,
    MIN,
    NOW_MS,
    T0,
    click,
    ev,
    imp,
    pick,
    processor,
    pv,
    run,
)

S, B, NB = (
    fields.field(K.SESSIONS.code, "shop"),
    fields.field(K.BOUNCES.code, "shop"),
    fields.field(K.NON_BOUNCED.code, "shop"),
)


def test_single_page_view_is_a_bounce_in_its_start_minute() -> None:
    buckets, totals = run(processor(), [pv(T0 + 10_000)])
    assert pick(buckets, S, B) == {(M0, S): 1, (M0, B): 1}
    assert totals[S] == 1 and totals[NB] == 0 and totals.health[H.PROCESSED] == 1


def test_second_page_view_corrects_the_bounce_in_the_start_bucket() -> None:
    # The second view lands two minutes later, in a later batch; the correction goes to M0.
    buckets, totals = run(processor(), [pv(T0 + 10_000)], [pv(T0 + 2 * MIN)])
    assert pick(buckets, S, B) == {(M0, S): 1}
    assert totals[S] == 1 and totals[NB] == 1


def test_interaction_corrects_the_bounce_once() -> None:
    buckets, totals = run(processor(), [pv(T0)], [click(T0 + 5_000)], [click(T0 + 6_000)])
    assert buckets[(M0, B)] == 0 and buckets[(M0, S)] == 1
    assert totals[NB] == 1  # corrections never double count


def test_gap_of_exactly_thirty_minutes_continues_the_session() -> None:
    buckets, totals = run(processor(), [pv(T0), pv(T0 + GAP)])
    assert totals[S] == 1
    assert pick(buckets, S, B) == {(M0, S): 1}


def test_gap_one_millisecond_over_thirty_minutes_starts_a_new_session() -> None:
    buckets, totals = run(processor(), [pv(T0), pv(T0 + GAP + 1)])
    assert totals[S] == 2
    assert pick(buckets, S, B) == {(M0, S): 1, (M0, B): 1, (M0 + 30, S): 1, (M0 + 30, B): 1}


def test_session_crossing_a_bucket_edge_counts_in_its_start_minute_only() -> None:
    buckets, _ = run(processor(), [pv(T0 - 10_000), pv(T0 + 10_000)])
    assert pick(buckets, S, B) == {(M0 - 1, S): 1}


def test_out_of_order_events_give_the_in_order_result() -> None:
    in_order, totals_a = run(processor(), [pv(T0 + 3 * MIN), pv(T0 + 5 * MIN)])
    shuffled, totals_b = run(processor(), [pv(T0 + 5 * MIN)], [pv(T0 + 3 * MIN)])
    assert in_order == shuffled
    assert pick(in_order, S, B) == {(M0 + 3, S): 1}
    assert totals_a[S] == totals_b[S] == 1 and totals_a[NB] == totals_b[NB] == 1


def test_earlier_event_moves_a_bounce_to_the_new_start_minute() -> None:
    # An impression (no page view, no interaction) arrives before the page view it came with.
    buckets, _ = run(processor(), [pv(T0 + 5 * MIN)], [imp(T0 + 4 * MIN)])
    imp_field = fields.field(K.IMPRESSIONS.code, "shop", "ad", "bf")
    assert pick(buckets, S, B, imp_field) == {
        (M0 + 4, S): 1,
        (M0 + 4, B): 1,
        (M0 + 4, imp_field): 1,
    }


def test_tracker_session_id_overrides_the_inactivity_gap() -> None:
    _, totals = run(
        processor(lateness_ms=3 * 60 * MIN),
        [pv(T0, session_id="s1"), pv(T0 + 2 * 60 * MIN, session_id="s1")],
    )
    assert totals[S] == 1 and totals[NB] == 1


def test_ctr_counts_by_event_time_and_folds_unknown_campaigns() -> None:
    buckets, totals = run(
        processor(),
        [
            imp(T0),
            imp(T0 + 1_000),
            imp(T0 + MIN, campaign="spring"),
            click(T0 + 2_000),
            imp(T0 + 3_000, campaign=None),
        ],
    )
    bf_imp = fields.field(K.IMPRESSIONS.code, "shop", "ad", "bf")
    other_imp = fields.field(K.IMPRESSIONS.code, "shop", "ad", "other")
    none_imp = fields.field(K.IMPRESSIONS.code, "shop", "ad", "none")
    bf_clk = fields.field(K.CLICKS.code, "shop", "ad", "bf")
    assert buckets[(M0, bf_imp)] == 2 and buckets[(M0 + 1, other_imp)] == 1
    assert buckets[(M0, none_imp)] == 1 and buckets[(M0, bf_clk)] == 1
    assert totals[bf_imp] == 2 and totals[bf_clk] == 1


def test_event_older_than_allowed_lateness_is_counted_late_and_dropped() -> None:
    p = processor(lateness_ms=10 * MIN)
    buckets, totals = run(
        p, [pv(T0 + 20 * MIN, "a")], [pv(T0 + 10 * MIN - 1, "b"), pv(T0 + 10 * MIN, "c")]
    )
    assert totals.health[H.LATE] == 1 and totals.health[H.PROCESSED] == 2
    assert buckets[(M0 + 10, S)] == 1  # "c" is exactly at the lateness bound: accepted


def test_rejections_are_counted_by_reason() -> None:
    _, totals = run(
        processor(),
        [
            Rejection("malformed_json", "x"),
            Rejection("too_large", "y"),
            Rejection("too_large", "z"),
        ],
    )
    assert totals.health[fields.field(H.REJECTED, "too_large")] == 2
    assert totals.health[fields.field(H.REJECTED, "malformed_json")] == 1
    assert totals.health[H.PROCESSED] == 0


def test_sessions_are_evicted_after_gap_plus_lateness_and_counted_once() -> None:
    p = processor(lateness_ms=10 * MIN)
    _, totals = run(p, [imp(T0, "quiet"), pv(T0, "bouncer")])
    assert len(p.sessionizer.sessions) == 2
    delta = p.process([pv(T0 + GAP + 10 * MIN + 1, "later")], now_ms=NOW_MS)
    # horizon = wm - lateness = T0 + GAP + 1 > last + GAP for both old sessions
    assert set(p.sessionizer.sessions) == {("shop", "later", "")}
    assert {decode_key(k) for k in delta.state_del} == {
        ("shop", "quiet", ""),
        ("shop", "bouncer", ""),
    }
    assert [decode_key(k) for k in delta.state_set] == [("shop", "later", "")]
    # an impression-only session is a bounce (no page view, no interaction): it ends one
    assert delta.totals[NB] == 0
    assert totals[NB] == 0


def test_late_event_does_not_merge_two_sessions() -> None:
    buckets, totals = run(
        processor(lateness_ms=60 * MIN), [pv(T0), pv(T0 + 50 * MIN)], [pv(T0 + 25 * MIN)]
    )
    assert totals[S] == 2  # counters never go down, so the bridge joins the earlier session
    assert pick(buckets, S, B) == {(M0, S): 1, (M0 + 50, S): 1, (M0 + 50, B): 1}


def test_a_retried_event_is_counted_once_in_the_same_batch() -> None:
    first = click(T0 + 5_000)
    buckets, totals = run(processor(), [pv(T0), first, first])
    assert totals.health[H.DUPLICATE] == 1 and totals.health[H.PROCESSED] == 2
    assert buckets[(M0, fields.field(K.CLICKS.code, "shop", "ad", "bf"))] == 1


def test_a_retried_event_is_counted_once_across_batches_and_sessions_of_the_visitor() -> None:
    view = pv(T0)
    later = pv(T0 + GAP + MIN)  # a second session of the same visitor
    _, totals = run(processor(lateness_ms=2 * GAP), [view, later], [view], [later, view])
    assert totals.health[H.DUPLICATE] == 3 and totals.health[H.PROCESSED] == 2 and totals[S] == 2


def test_a_retry_older_than_the_lateness_is_late_not_recounted() -> None:
    p = processor(lateness_ms=10 * MIN)
    view = pv(T0, "a")
    _, totals = run(p, [view], [pv(T0 + GAP + 10 * MIN + 1, "b")], [view])
    assert ("shop", "a", "") not in p.sessionizer.sessions
    assert totals.health[H.LATE] == 1 and totals.health[H.DUPLICATE] == 0 and totals[S] == 2


def test_a_retry_is_a_duplicate_and_a_reused_id_with_other_content_is_rejected() -> None:
    """Same event_id, same content (in any field order on the wire): a duplicate. Same
    event_id, other content: not a retry; rejected with its own reason and index, so the
    worker dead-letters it."""
    p = processor()
    first = pv(T0)
    retry = PageView(event_id=first.event_id, ts=T0, site="shop", visitor_id="v1", path="/")
    other = PageView(event_id=first.event_id, ts=T0, site="shop", visitor_id="v1", path="/x")
    delta = p.process([first, retry, other], now_ms=NOW_MS)
    assert delta.health[H.PROCESSED] == 1
    assert delta.health[H.DUPLICATE] == 1
    assert delta.health[fields.field(H.REJECTED, "conflicting_duplicate")] == 1
    assert [(i, r.reason) for i, r in delta.rejections] == [(2, "conflicting_duplicate")]


def test_a_fast_client_clock_does_not_make_honest_events_late() -> None:
    """An event stamped 290 s ahead of the wall clock is accepted (within the skew), but the
    watermark stops at the wall clock: the next 20 honest events are all counted. Without
    the cap they would trail the watermark by 290 s > 120 s lateness."""
    now = T0 + 10 * MIN
    p = processor(lateness_ms=2 * MIN)
    ahead = pv(now + 290_000, "fast")
    honest = [pv(now - 1000 + i, f"h{i}") for i in range(20)]
    delta = p.process([ahead, *honest], now_ms=now)
    assert delta.health[H.PROCESSED] == 21 and delta.health[H.LATE] == 0
    assert p.watermark_ms == now
    # A replay of old data (the wall clock long past) never meets the cap.
    q = processor(lateness_ms=2 * MIN)
    q.process([ahead, *honest], now_ms=NOW_MS)
    assert q.watermark_ms == now + 290_000


def test_rerouted_events_are_counted_once_as_rerouted() -> None:
    from kpistream.contract.routing import REROUTED

    delta = processor().process([pv(T0), REROUTED, REROUTED], now_ms=NOW_MS)
    assert delta.health[H.PROCESSED] == 1 and delta.health[H.REROUTED] == 2


def forget(ts: int, visitor: str = "v1") -> Forget:
    erase: Forget = ev(Forget, ts, visitor)
    return erase


def test_forget_ends_and_deletes_the_visitors_sessions_and_record() -> None:
    p = processor()
    run(p, [pv(T0), pv(T0 + MIN, visitor="v2")])
    p.committed()
    delta = p.process([forget(T0 + 2 * MIN)], now_ms=NOW_MS)
    # v1's session ended (its aggregates stay whole) and is deleted; v2 is untouched.
    assert delta.totals[fields.field(K.ENDED.code, "shop")] == 1
    # It ends at the stream's time (the watermark: v2's event), not a gap later.
    assert delta.buckets[M0 + 1, fields.field(K.ENDED.code, "shop")] == 1
    assert {decode_key(k) for k in delta.state_del} == {("shop", "v1", "")}
    assert delta.state_set == {}
    assert delta.visitors == {("shop", "v1"): None}
    assert [k[1] for k in p.sessionizer.sessions] == ["v2"]
    # Seen again, the visitor is new and its new session is stored.
    again = p.process([pv(T0 + 3 * MIN)], now_ms=NOW_MS)
    assert again.totals[fields.field(K.NEW_VISITORS.code, "shop")] == 1
    assert {decode_key(k) for k in again.state_set} == {("shop", "v1", "")}
    # A second forget finds a session again (the new one); a third finds nothing.
    p.process([forget(T0 + 4 * MIN)], now_ms=NOW_MS)
    third = p.process([forget(T0 + 5 * MIN)], now_ms=NOW_MS)
    assert third.state_del == set() and fields.field(K.ENDED.code, "shop") not in third.totals


def test_an_event_after_forget_in_the_same_batch_is_kept() -> None:
    p = processor()
    delta = p.process([pv(T0), forget(T0 + MIN), pv(T0 + 2 * MIN)], now_ms=NOW_MS)
    assert {decode_key(k) for k in delta.state_set} == {("shop", "v1", "")}
    assert delta.state_del == set()
    assert delta.totals[S] == 2  # the erased session and the new one
    assert delta.visitors[("shop", "v1")] is not None


def test_an_engagement_event_makes_a_long_single_page_session_engaged_but_still_a_bounce() -> None:
    p = processor()
    engaged, bounces = fields.field(K.ENGAGED.code, "shop"), fields.field(K.BOUNCES.code, "shop")
    short = Engagement(event_id="g1", ts=T0 + 10_000, site="shop", visitor_id="v1")
    buckets, _ = run(p, [pv(T0), short])  # exactly 10 s: not more than 10 s
    assert pick(buckets, engaged, bounces) == {(M0, bounces): 1}
    longer = Engagement(
        event_id="g2", ts=T0 + 10_001, site="shop", visitor_id="v1", engaged_ms=10_001
    )
    buckets, _ = run(p, [longer])
    assert pick(buckets, engaged, bounces) == {(M0, engaged): 1}  # engaged, bounce unchanged


def test_engagement_without_a_page_view_is_a_bounce() -> None:
    """Hand-computed: "ping" sends two engagement events and nothing else (a tab left open
    past the gap): one session, a bounce; "one" views a page and pings: a bounce; "two"
    views two pages: not one. Sessions 3, bounces 2, non-bounced 1, also once they end."""
    p = processor(lateness_ms=10 * MIN)
    buckets, totals = run(
        p,
        [ev(Engagement, T0, "ping", engaged_ms=4_000), pv(T0, "one"), pv(T0, "two")],
        [ev(Engagement, T0 + 20_000, "ping"), ev(Engagement, T0 + 20_000, "one")],
        [pv(T0 + MIN, "two")],
    )
    assert pick(buckets, S, B) == {(M0, S): 3, (M0, B): 2}
    assert totals[S] == 3 and totals[NB] == 1
    ended = p.process([pv(T0 + GAP + 20 * MIN, "later")], now_ms=NOW_MS)
    assert ended.totals[fields.field(K.ENDED.code, "shop")] == 3
    assert ended.totals[NB] == 0  # ending makes no bounce a non-bounce
