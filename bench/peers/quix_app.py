"""Peer (c): a Quix Streams application: a streaming dataframe over the topic with keyed
state (RocksDB, changelogged to Kafka) holding each visitor's latest session; the app adds
up the sites' totals and stops once it has seen every event."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from quixstreams import Application, State

from bench.peers.common import Session, Totals, apply, args, report

BROKER, TOPIC, EVENTS = args()
totals = Totals()
seen = {"n": 0, "first": 0.0}


def main() -> None:
    app = Application(
        broker_address=BROKER,
        consumer_group=f"peer-quix-{os.getpid()}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
    )
    topic = app.topic(TOPIC, value_deserializer="json")
    sdf = app.dataframe(topic)

    def step(event: dict[str, Any], state: State) -> None:
        if not seen["n"]:
            seen["first"] = time.perf_counter()
        held = state.get("session")
        session = apply(totals, Session(*held) if held else None, event)
        state.set(
            "session",
            [session.start_ms, session.last_ms, session.page_views, session.interacted],
        )
        seen["n"] += 1
        if seen["n"] == EVENTS:
            report(time.perf_counter() - seen["first"], totals.sites)
            app.stop()

    sdf.update(step, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
