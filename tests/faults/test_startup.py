"""Servers missing at start-up (issue 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpistream.produce import produce
from kpistream.runtime import free_port, start_broker, stop
from tests.faults import oracle
from tests.faults.common import now_ms, settings_for, spawn_worker
from tests.support import known_events as K
from tests.support.waits import wait_until


@pytest.mark.slow
async def test_worker_waits_for_a_broker_that_appears_later(  # type: ignore[no-untyped-def]
    settings_factory, tmp_path
) -> None:
    """The broker is unreachable when the worker starts: one clear line per attempt with
    growing pauses, no traceback; once the broker is up every event is counted exactly."""
    port = free_port()
    settings = settings_for(settings_factory, kafka=f"127.0.0.1:{port}", partitions=2)
    log_path = tmp_path / "worker.log"
    worker = spawn_worker(settings, log_path)
    broker = None
    try:
        await wait_until("the worker retried twice", lambda: len(waits(log_path)) >= 2)
        assert worker.poll() is None, log_path.read_text()
        broker = start_broker(tmp_path, port)
        await produce(settings, K.lines())
        await oracle.assert_exact(settings, now_ms=now_ms())
    finally:
        stop(worker)
        if broker is not None:
            broker.stop()
    text = log_path.read_text()
    assert all(f"cannot reach Kafka at 127.0.0.1:{port}" in w for w in waits(log_path)), text
    assert "Traceback" not in text


def waits(log_path: Path) -> list[str]:
    text = log_path.read_text()
    return [line for line in text.splitlines() if line.startswith("kpistream: waiting:")]
