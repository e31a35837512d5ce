"""Each door check alone, on hand-made events and senders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kpistream.collector import checks
from kpistream.collector.guard import Sites
from kpistream.collector.privacy import customer_id, customer_session_id
from kpistream.collector.protocols import Skip

SECRET = "a-secret-of-at-least-16-bytes"
SITES = Sites({"shop.test": ["https://cdn.test"]}, {"api.test": "k3y"})


@dataclass(frozen=True)
class Who:
    origin: str | None = "https://www.shop.test"
    key: str | None = None
    consent: bool = False
    anonymous: bool = False


def reason(result: object) -> str | None:
    return result.reason if isinstance(result, Skip) else None


def test_site_of() -> None:
    assert checks.site_of({"site": "shop.test"}) == "shop.test"
    assert reason(checks.site_of({})) == "missing_field"
    assert reason(checks.site_of({"site": 3})) == "missing_field"


def test_site_verdict_by_origin_and_write_key() -> None:
    own = checks.site_verdict(SITES, "shop.test", Who())
    assert own.refusal is None and not own.trusted
    assert checks.site_verdict(SITES, "shop.test", Who(origin="https://cdn.test")).refusal is None
    other = checks.site_verdict(SITES, "shop.test", Who(origin="https://evil.test"))
    assert reason(other.refusal) == "origin_not_allowed"
    keyed = checks.site_verdict(SITES, "api.test", Who(origin=None, key="k3y"))
    assert keyed.refusal is None and keyed.trusted
    assert reason(checks.site_verdict(SITES, "api.test", Who(origin=None)).refusal) == (
        "write_key_required"
    )
    wrong = checks.site_verdict(SITES, "api.test", Who(origin=None, key="nope"))
    assert reason(wrong.refusal) == "write_key_invalid"


def test_no_erasure_from_a_tracker() -> None:
    assert reason(checks.not_erasure({"type": "forget"})) == "unknown_type"
    assert checks.not_erasure({"type": "page_view"}) is None


def test_customer_identity_needs_consent_and_a_secret() -> None:
    def run(item: dict[str, Any], who: Who = Who(), secret: str = SECRET) -> object:
        return checks.customer_identity(item, who, "shop.test", secret)

    assert run({"type": "page_view"}) is False  # no id: the audience zone
    assert reason(run({"visitor_id": "crm-1"})) == "consent_required"
    assert reason(run({"visitor_id": "crm-1", "consent": True}, secret="")) == "customer_zone_off"
    assert reason(run({"visitor_id": True, "consent": True})) == "wrong_type"
    anonymous = {"visitor_id": "crm-1", "consent": True}
    assert run(anonymous, Who(anonymous=True)) is False and "visitor_id" not in anonymous
    item: dict[str, Any] = {"visitor_id": 42, "session_id": "s-9", "consent": "granted"}
    assert run(item) is True
    assert item == {
        "visitor_id": customer_id(SECRET, "shop.test", "42"),
        "session_id": customer_session_id(SECRET, "shop.test", "s-9"),
    }
    assert run({"visitor_id": "crm-1"}, Who(consent=True)) is True  # the consent header


def test_stamp_gives_ids_and_believes_only_keyed_clocks() -> None:
    window = {"now_ms": 1_000_000, "earliest_ms": 900_000, "latest_ms": 1_100_000}
    fresh: dict[str, Any] = {}
    checks.stamp(fresh, trusted=False, **window)
    assert fresh["ts"] == 1_000_000 and len(fresh["event_id"]) == 32
    old = {"event_id": "e1", "ts": 100}
    checks.stamp(old, trusted=False, **window)
    assert old == {"event_id": "e1", "ts": 1_000_000}  # a browser's clock beyond the window
    backfill = {"event_id": "e2", "ts": 100}
    checks.stamp(backfill, trusted=True, **window)
    assert backfill == {"event_id": "e2", "ts": 100}  # a keyed sender's history
    within = {"event_id": "e3", "ts": 950_000}
    checks.stamp(within, trusted=False, **window)
    assert within["ts"] == 950_000
