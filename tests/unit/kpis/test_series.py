from __future__ import annotations

from kpistream.contract import health as H
from kpistream.kpis import catalogue as K
from kpistream.kpis.fields import field
from kpistream.kpis.series import by_labels, label_values, parse


def test_a_field_is_read_back_with_its_labels_named() -> None:
    series = parse(field(K.CLICKS.code, "shop.example", "banner", "spring"))
    assert series is not None and series.kind is K.CLICKS
    assert dict(series.labels) == {
        "site": "shop.example",
        "item_kind": "banner",
        "campaign": "spring",
    }


def test_health_fields_and_mismatched_label_counts_are_not_series() -> None:
    assert parse(H.PROCESSED) is None
    assert parse(field(H.REJECTED, "malformed_json")) is None
    assert parse(field(K.CLICKS.code, "shop.example")) is None  # two labels missing
    assert parse(field(K.SESSIONS.code, "a", "b")) is None  # one too many


def test_values_by_labels_keep_the_declared_order_and_only_their_count() -> None:
    counter = {
        field(K.CONVERSIONS.code, "a", "lead"): 2,
        field(K.CONVERSIONS.code, "b", "purchase"): 5,
        field(K.SESSIONS.code, "a"): 9,
        H.PROCESSED: 40,
    }
    assert by_labels(counter, K.CONVERSIONS) == {("a", "lead"): 2, ("b", "purchase"): 5}
    assert label_values(counter, K.CONVERSIONS, "goal") == {"lead", "purchase"}
    assert label_values(counter, K.SESSIONS, "site") == {"a"}
