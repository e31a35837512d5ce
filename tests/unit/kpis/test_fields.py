from __future__ import annotations

from kpistream.kpis.fields import SEP, SiteFields, field, split


def test_site_fields_name_exactly_what_field_names() -> None:
    names = SiteFields("shop", ["s", "pv"])
    assert names.one == {"s": field("s", "shop"), "pv": field("pv", "shop")}
    assert names.of("cv", "lead") == field("cv", "shop", "lead") == f"cv{SEP}shop{SEP}lead"
    assert names.of("cv", "lead") is names.of("cv", "lead")  # built once
    assert split(names.of("lc", "/", "purchase")) == ["lc", "shop", "/", "purchase"]
