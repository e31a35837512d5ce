"""Peer (a): a faust agent with a table, as the faust documentation writes one. The table
holds each visitor's latest session (changelogged to Kafka, as faust tables are); the
agent adds up the sites' totals. Stops itself once it has seen every event."""

from __future__ import annotations

import json
import os
import time

import faust

from bench.peers.common import Session, Totals, apply, args, report

BROKER, TOPIC, EVENTS = args()
app = faust.App(
    f"peer-faust-{os.getpid()}",
    broker=f"kafka://{BROKER}",
    store="memory://",
    web_enabled=False,
    topic_partitions=6,
    broker_rebalance_timeout=1,
    broker_session_timeout=6,
    broker_heartbeat_interval=1,
)
events = app.topic(TOPIC, value_serializer="raw", key_serializer="raw")
sessions = app.Table("sessions", default=None, value_type=bytes)
seen = {"n": 0, "first": 0.0}
totals = Totals()


@app.agent(events)
async def sessionize(stream: faust.StreamT[bytes]) -> None:
    async for value in stream:
        if not seen["n"]:
            seen["first"] = time.perf_counter()
        event = json.loads(value)
        key = f"{event['site']}\x1f{event['visitor_id']}"
        raw = sessions.get(key)
        session = Session(**json.loads(raw)) if raw else None
        session = apply(totals, session, event)
        sessions[key] = json.dumps(session.__dict__).encode()
        seen["n"] += 1
        if seen["n"] == EVENTS:
            report(time.perf_counter() - seen["first"], totals.sites)
            os._exit(0)


if __name__ == "__main__":
    faust.Worker(
        app, loglevel=os.environ.get("PEER_LOGLEVEL", "warning"), quiet=True
    ).execute_from_commandline()
