"""Peer (b): a Bytewax dataflow with session windows (30-minute gap) on event time, keyed by
visitor; each closed session adds to its site's totals, reduced at the end of the input.
Reads the topic from the beginning to its end (``tail=False``) with Bytewax's Kafka source."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, SessionWindower, fold_window
from bytewax.testing import TestingSink, run_main

from bench.peers.common import GAP_MS, INTERACTIONS, args, report

BROKER, TOPIC, EVENTS = args()

# A session's fold: [page views, interacted, impressions, clicks].
State = list[int]


def fold(state: State, event: dict[str, Any]) -> State:
    kind = event["type"]
    if kind == "page_view":
        state[0] += 1
    elif kind in INTERACTIONS:
        state[1] = 1
    if kind == "impression":
        state[2] += 1
    elif kind == "click":
        state[3] += 1
    return state


def merge(a: State, b: State) -> State:
    return [a[0] + b[0], a[1] | b[1], a[2] + b[2], a[3] + b[3]]


def add(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def per_site(item: tuple[str, tuple[int, State]]) -> tuple[str, list[int]]:
    key, (_, s) = item
    site = key.split("\x1f", 1)[0]
    return site, [1, int(s[0] <= 1 and not s[1]), s[2], s[3]]


def build() -> tuple[Dataflow, list[tuple[str, list[int]]]]:
    flow = Dataflow("peer_sessions")
    source = KafkaSource([BROKER], [TOPIC], tail=False, batch_size=5000)
    messages = op.input("kafka", flow, source)

    def decode(message: KafkaSourceMessage[bytes, bytes]) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(message.value)
        return event

    events = op.map("decode", messages, decode)
    keyed = op.key_on("visitor", events, lambda e: f"{e['site']}\x1f{e['visitor_id']}")
    clock: EventClock[dict[str, Any]] = EventClock(
        lambda e: datetime.fromtimestamp(e["ts"] / 1000, tz=UTC),
        # Partitions interleave: wait long enough that no event of the run is late; the
        # end of the input closes every session.
        wait_for_system_duration=timedelta(days=1),
    )
    windows = fold_window(
        "sessions",
        keyed,
        clock,
        SessionWindower(gap=timedelta(milliseconds=GAP_MS)),
        lambda: [0, 0, 0, 0],
        fold,
        merge,
    )
    sites = op.map("per_site", windows.down, per_site)
    totals = op.reduce_final(
        "totals", sites, lambda a, b: [x + y for x, y in zip(a, b, strict=True)]
    )
    out: list[tuple[str, list[int]]] = []
    op.output("out", totals, TestingSink(out))
    return flow, out


if __name__ == "__main__":
    flow, out = build()
    started = time.perf_counter()
    run_main(flow)
    report(time.perf_counter() - started, dict(out))
