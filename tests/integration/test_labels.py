"""Label budgets on a real Redis: full budgets say so, quiet values give their slot up, and
`kpistream labels` shows and resets them (issue 9)."""

from __future__ import annotations

import json
import logging

import pytest

from kpistream.cli import main
from kpistream.kpis import catalogue as K
from kpistream.produce import produce
from kpistream.runtime import ensure_topics
from kpistream.streams import labels
from tests.faults.common import now_ms
from tests.support.known_events import samples
from tests.support.waits import scrape_text, wait_for_events, wait_until

DAY_MS = 86_400_000


def visit(site: str, n: int, ts: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"{site}-{n}",
            "type": "page_view",
            "ts": ts,
            "site": site,
            "visitor_id": f"{site}-v{n}",
            "path": "/",
        }
    ).encode()


async def test_a_full_budget_is_visible_and_quiet_values_free_their_slots(  # type: ignore[no-untyped-def]
    settings_factory, workers, monkeypatch, caplog, capsys
) -> None:
    """Budget of 2 sites: a and b take it, c folds into `other` (a warning, a refused value
    on /metrics). 31 days later (the worker's clock), with only b and c still seen, a's
    slot is free: c gets its own label. `kpistream labels reset site` empties the budget."""
    monkeypatch.setattr(labels, "SYNC_S", 0.2)
    caplog.set_level(logging.INFO)
    settings = settings_factory(max_sites=2, label_idle_days=30, partitions=1)
    await ensure_topics(settings)
    offset_ms = 0
    await workers(settings, clock_ms=lambda: now_ms() + offset_ms)
    t = now_ms() - 60_000
    await produce(settings, [visit("a", 1, t), visit("b", 1, t), visit("c", 1, t)])
    await wait_for_events(settings, 3)
    got = samples(await scrape_text(settings))
    assert got[("kpi_sessions_total", (("site", "other"),))] == 1
    assert got[("kpistream_label_values", (("dimension", "site"),))] == 2
    assert got[("kpistream_label_budget", (("dimension", "site"),))] == 2
    assert got[("kpistream_label_refused_values", (("dimension", "site"),))] == 1
    assert "labels of site: the budget of 2 values is full" in caplog.text

    offset_ms = 31 * DAY_MS
    t2 = t + 1000
    n = 2

    # b and c keep coming; a is quiet. Within a sync or two, a's slot goes to c.
    async def c_has_its_own_label() -> bool:
        nonlocal n
        await produce(settings, [visit("b", n, t2 + n), visit("c", n, t2 + n)])
        n += 1
        got = samples(await scrape_text(settings))
        return got.get(("kpi_sessions_total", (("site", "c"),)), 0) >= 1

    await wait_until("site c gets the slot a gave up", c_has_its_own_label, timeout_s=30)
    assert "labels of site: 1 values unseen for 30 days gave up their slots" in caplog.text

    await wait_for_events(settings, 3 + 2 * (n - 2))  # nothing in flight to re-admit b or c
    monkeypatch.setenv("KPISTREAM_REDIS_PREFIX", settings.redis_prefix)
    monkeypatch.setenv("KPISTREAM_MAX_SITES", "2")
    capsys.readouterr()
    assert main(["labels", "--redis", settings.redis]) == 0
    shown = capsys.readouterr().out
    assert "site: 2 of 2 (full), 1 distinct values refused" in shown
    assert "  b  last seen" in shown and "  c  last seen" in shown and "  a  " not in shown
    assert main(["labels", "reset", "site", "--redis", settings.redis]) == 0
    got = samples(await scrape_text(settings))
    assert got[("kpistream_label_values", (("dimension", "site"),))] == 0
    assert got[("kpistream_label_refused_values", (("dimension", "site"),))] == 0
    assert main(["labels", "reset", "nope", "--redis", settings.redis]) == 2
    assert K.SESSIONS.code  # the field vocabulary the sums above read


@pytest.mark.parametrize("days", [-1])
def test_label_idle_days_must_not_be_negative(days: int) -> None:
    from kpistream.config.settings import SettingsError, load

    with pytest.raises(SettingsError, match="KPISTREAM_LABEL_IDLE_DAYS must be >= 0"):
        load({"label_idle_days": days}, env={})
