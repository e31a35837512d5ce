"""New vs returning visitors and lead -> customer, through the pure processor."""

from __future__ import annotations

from kpistream.contract.visitor import Visitor, encode_visitor
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.kpis.windows import day_of
from kpistream.schemas.events import Lead, Purchase
from tests.support.factories import GAP, M0, MIN, NOW_MS, T0, ev, pick, processor, pv, run

NV = fields.field(K.NEW_VISITORS.code, "shop")
LEADS = fields.field(K.LEADS.code, "shop")
L2C = fields.field(K.LEAD_CUSTOMERS.code, "shop")


def test_a_visitor_is_new_once_across_sessions() -> None:
    b, t = run(processor(lateness_ms=3 * GAP), [pv(T0), pv(T0 + 2 * GAP)])
    assert t[fields.field(K.SESSIONS.code, "shop")] == 2
    assert pick(b, NV) == {(M0, NV): 1} and t[NV] == 1


def test_a_visitor_known_from_redis_is_returning() -> None:
    p = processor()
    p.visitors.fill({("shop", "v1"): encode_visitor(Visitor(T0 - 40 * 86_400_000))})
    _, t = run(p, [pv(T0)])
    assert t[NV] == 0
    kept = p.visitors.take_dirty()[("shop", "v1")]
    assert kept is not None and kept.first_seen_ms == T0 - 40 * 86_400_000


def test_an_earlier_first_event_moves_the_first_visit() -> None:
    b, t = run(processor(), [pv(T0 + 5 * MIN)], [pv(T0 + MIN)])
    assert pick(b, NV) == {(M0 + 1, NV): 1} and t[NV] == 1


def test_every_visitor_seen_is_written_back_to_refresh_its_ttl() -> None:
    p = processor()
    delta = p.process([pv(T0, "a"), pv(T0, "b")], now_ms=NOW_MS)
    assert set(delta.visitors) == {("shop", "a"), ("shop", "b")}
    p.visitors.committed()
    assert p.process([], now_ms=NOW_MS).visitors == {}


def test_lead_then_purchase_is_a_lead_customer_on_the_purchase_day() -> None:
    p = processor(lateness_ms=2 * 86_400_000)
    later = T0 + 86_400_000  # the next day: a new session, the same visitor
    _, t = run(p, [ev(Lead, T0)], [ev(Purchase, later, value=9.0, currency="EUR")])
    assert t[LEADS] == 1 and t[L2C] == 1
    visitor = p.visitors.get(("shop", "v1"))
    assert visitor is not None and visitor.lead_ms == T0 and visitor.first_purchase_ms == later


def test_lead_customer_day_buckets() -> None:
    p = processor()
    d1 = p.process([ev(Lead, T0, "x")], now_ms=NOW_MS).days
    d2 = p.process([ev(Purchase, T0 + MIN, "x", value=1.0, currency="EUR")], now_ms=NOW_MS).days
    assert d1 == {(day_of(T0), LEADS): 1}
    assert d2 == {(day_of(T0 + MIN), L2C): 1}


def test_a_purchase_before_the_lead_is_not_a_lead_customer() -> None:
    _, t = run(
        processor(),
        [
            ev(Purchase, T0, value=1.0, currency="EUR"),
            ev(Lead, T0 + MIN),
            ev(Purchase, T0 + 2 * MIN, value=1.0, currency="EUR"),
        ],
    )
    assert t[LEADS] == 1 and t[L2C] == 0


def test_unique_visitor_members_per_minute_and_site() -> None:
    delta = processor().process([pv(T0, "a"), pv(T0 + 1, "a"), pv(T0 + MIN, "b")], now_ms=NOW_MS)
    assert delta.uniques == {(M0, "shop"): {"a"}, (M0 + 1, "shop"): {"b"}}
