import pytest

from kpistream.config.settings import SettingsError, load


def test_goals_must_be_clickstream_event_types() -> None:
    both = load(env={"KPISTREAM_CONVERSION_GOALS": "lead, add_to_cart"})
    assert both.conversion_goal_types == ["lead", "add_to_cart"]
    with pytest.raises(
        SettingsError,
        match=r"KPISTREAM_CONVERSION_GOALS: conversion goals are clickstream event types",
    ):
        load(env={"KPISTREAM_CONVERSION_GOALS": "signup"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KPISTREAM_SESSION_GAP_S", "0", "KPISTREAM_SESSION_GAP_S must be positive"),
        ("KPISTREAM_ALLOWED_LATENESS_S", "-1", "KPISTREAM_ALLOWED_LATENESS_S must be >= 0"),
        ("KPISTREAM_WINDOWS", "5m,soon", "must look like 5m, 1h or 1d"),
        ("KPISTREAM_MAX_CAMPAIGNS", "many", "Expected `int`, got `str`"),
    ],
)
def test_bad_settings_say_which_and_why(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env={name: value})


def test_derived_retention() -> None:
    s = load(env={"KPISTREAM_WINDOWS": "5m,1h", "KPISTREAM_ALLOWED_LATENESS_S": "60"})
    assert s.window_minutes() == {"5m": 5, "1h": 60}
    assert s.bucket_ttl_s == 3600 + 60 + 3600
    assert s.long_windows == {"30d": 30}


def test_the_old_name_of_conversion_goals_still_works_with_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert load(env={"KPISTREAM_GOALS": "lead"}).conversion_goal_types == ["lead"]
    assert "KPISTREAM_GOALS is deprecated: set KPISTREAM_CONVERSION_GOALS instead" in caplog.text
    both = {"KPISTREAM_GOALS": "lead", "KPISTREAM_CONVERSION_GOALS": "purchase"}
    assert load(env=both).conversion_goal_types == ["purchase"]
