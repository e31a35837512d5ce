import pytest

from kpistream.kpis.windows import minute_of, parse_window, window_cover, window_minutes


def test_minute_of_bucket_edges() -> None:
    assert minute_of(0) == 0
    assert minute_of(59_999) == 0
    assert minute_of(60_000) == 1


@pytest.mark.parametrize(("text", "minutes"), [("5m", 5), ("1h", 60), ("24h", 1440), ("1d", 1440)])
def test_parse_window(text: str, minutes: int) -> None:
    assert parse_window(text) == minutes


@pytest.mark.parametrize("text", ["", "0m", "5", "5s", "-1h", "1.5h"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="must look like"):
        parse_window(text)


def test_window_minutes_end_at_watermark_minute() -> None:
    # watermark 10:07:30 -> a 5m window is the minutes 10:03..10:07
    wm = (10 * 60 + 7) * 60_000 + 30_000
    assert window_minutes(5, wm) == (10 * 60 + 3, 10 * 60 + 7)


def test_cover_inside_one_hour_is_minutes_only() -> None:
    assert window_cover(603, 607) == ([603, 604, 605, 606, 607], [])


def test_cover_splits_into_ragged_minutes_and_whole_hours() -> None:
    # 09:58 .. 12:01 -> minutes 09:58, 09:59, hours 10 and 11, minutes 12:00, 12:01
    minutes, hours = window_cover(9 * 60 + 58, 12 * 60 + 1)
    assert minutes == [598, 599, 720, 721]
    assert hours == [10, 11]


def test_cover_of_aligned_day_is_24_hours() -> None:
    assert window_cover(0, 1439) == ([], list(range(24)))


@pytest.mark.parametrize(("first", "last"), [(0, 0), (59, 61), (17, 1456), (120, 179), (61, 3000)])
def test_cover_counts_every_minute_exactly_once(first: int, last: int) -> None:
    minutes, hours = window_cover(first, last)
    covered = sorted(minutes + [h * 60 + m for h in hours for m in range(60)])
    assert covered == list(range(first, last + 1))


def test_empty_range() -> None:
    assert window_cover(5, 4) == ([], [])
