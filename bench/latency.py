"""Latency from produce to visibility on /metrics (`python -m bench.latency`).

A paced producer sends simulated clickstream events, stamped with the wall clock when
they are sent, at a fixed rate for a fixed time, to a real ``kpistream worker`` and a real
``kpistream exporter`` (subprocesses, default settings: the exporter reuses a scrape result
for ``KPISTREAM_EXPORTER_CACHE_S`` = 1 s). A poller reads /metrics every ``POLL_S`` and
records when ``kpistream_events_processed_total`` reaches each count. The k-th event sent
is visible when the counter first shows k events: latency = that poll's time minus the k-th
event's send time (events of different partitions may be counted in another order; the
measure is the delay of the k-th count, as a queue sees it).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from bench import memory
from kpistream import runtime
from kpistream.config.settings import Settings, child_environment
from kpistream.contract.routing import owner
from kpistream.produce import route
from kpistream.sources.simulator import sessions

POLL_S = 0.02
TICK_S = 0.01
_ENCODE = msgspec.json.Encoder().encode


@dataclass
class Latency:
    rate: int
    sent: int
    seconds: float
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float
    visible: int  # events visible by the end of the wait

    def row(self) -> str:
        return (
            f"| {self.rate:,} | {self.sent:,} | {self.visible:,} | {self.p50_s:.3f} | "
            f"{self.p95_s:.3f} | {self.p99_s:.3f} | {self.max_s:.3f} |"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("kpistream_events_processed_total "):
            return int(float(line.split()[1]))
    return None


class Poller(threading.Thread):
    """Reads the processed counter every POLL_S: (monotonic time, count) pairs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            value = scrape(self.url)
            if value is not None:
                self.seen.append((time.monotonic(), value))
            self.done.wait(POLL_S)


async def paced(
    settings: Settings, rate: int, seconds: float, *, seed: int
) -> list[tuple[float, int]]:
    """Send ``rate`` events/s for ``seconds``; returns (send time, cumulative sent) per tick.
    Events of another ``seed`` have other ids (the same seed would repeat them)."""
    events = sessions(seed, start_ms=time.time_ns() // 1_000_000, count=int(rate * seconds) + 1)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, linger_ms=0, acks="all")
    await producer.start()
    topic = settings.clickstream_topic
    partitions = len(await producer.partitions_for(topic))
    ticks: list[tuple[float, int]] = []
    sent = 0
    started = time.monotonic()
    pending = []
    try:
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * rate)
            builders: dict[int, Any] = {}
            stamp = time.time_ns() // 1_000_000
            while sent < due:
                event = next(events)
                event["ts"] = stamp
                line = _ENCODE(event)
                _, key, owned_by = route(line, settings)
                assert owned_by is not None
                partition = owner(owned_by, partitions)
                batch = builders.get(partition)
                if batch is None:
                    batch = builders[partition] = producer.create_batch()
                if batch.append(key=key, value=line, timestamp=None) is None:  # full
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = builders[partition] = producer.create_batch()
                    batch.append(key=key, value=line, timestamp=None)
                sent += 1
            for partition, batch in builders.items():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            ticks.append((now, sent))
            if len(pending) > 256:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(max(0.0, started + len(ticks) * TICK_S - time.monotonic()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ticks


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def measure(base: Settings, workdir: Path, rate: int, seconds: float) -> Latency:
    tag = f"lat{rate}"
    settings = memory.isolated(base, tag, metrics_port=free_port())
    await runtime.ensure_topics(settings)
    env = child_environment(settings)
    cli = [sys.executable, "-m", "kpistream"]
    worker = runtime.spawn([*cli, "worker"], log_path=workdir / f"{tag}-worker.log", env=env)
    exporter = runtime.spawn([*cli, "exporter"], log_path=workdir / f"{tag}-exporter.log", env=env)
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    try:
        # Warm up: the worker owns its partitions and its events show before the clock runs.
        warm = (await paced(settings, 50, 0.1, seed=1))[-1][1]
        deadline = time.monotonic() + 60
        while (scrape(url) or 0) < warm:
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker never showed an event: see {workdir}/{tag}-*.log")
            await asyncio.sleep(0.1)
        offset = scrape(url) or 0
        poller = Poller(url)
        poller.start()
        ticks = await paced(settings, rate, seconds, seed=2)
        total = ticks[-1][1]
        deadline = time.monotonic() + 120
        while (poller.seen[-1][1] if poller.seen else 0) - offset < total:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        poller.done.set()
        poller.join()
    finally:
        for child in (worker, exporter):
            child.terminate()
            child.wait(timeout=30)
    times = [t for t, _ in poller.seen]
    counts = [c - offset for _, c in poller.seen]
    latencies: list[float] = []
    previous = 0
    for sent_at, cumulative in ticks:
        for k in range(previous + 1, cumulative + 1):
            i = bisect.bisect_left(counts, k)
            if i < len(counts):
                latencies.append(times[i] - sent_at)
        previous = cumulative
    latencies.sort()
    if not latencies:
        raise SystemExit(f"no event became visible at {rate}/s")
    return Latency(
        rate,
        total,
        seconds,
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99),
        latencies[-1],
        len(latencies),
    )


def markdown(results: list[Latency]) -> str:
    seconds = results[0].seconds if results else 0
    return "\n".join(
        [
            f"Latency, produce to /metrics (`python -m bench.latency`): a paced producer for "
            f"{seconds:.0f} s per rate, a real `kpistream worker` and `kpistream exporter` "
            f"(scrape cache 1 s), /metrics polled every {POLL_S * 1000:.0f} ms; seconds:",
            "",
            "| events/s | sent | visible | p50 | p95 | p99 | max |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *(r.row() for r in results),
            "",
        ]
    )


async def main(rates: list[int], seconds: float) -> None:
    with memory.embedded() as (settings, workdir):
        results = [await measure(settings, workdir, rate, seconds) for rate in rates]
    print(markdown(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.rates, args.seconds))
