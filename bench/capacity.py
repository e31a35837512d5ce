"""Capacity: what one worker and a Redis Cluster take, from `make bench`'s cluster runs, and
how many workers and Redis masters a given traffic needs (a worked example).

Every input is measured in the same run (:mod:`bench.scale` on the cluster, and
:mod:`bench.memory` on the cluster); the example's traffic and the shape of its visitors
are assumptions, named below, so a reader can redo the sum with their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.memory import MemoryResult
from bench.scale import Scale

#: The worked example: a billion events a day, the busiest hour at three times the average.
EVENTS_PER_DAY = 1_000_000_000
PEAK_FACTOR = 3
#: Assumed shape of the traffic (the simulator's is about 7 events per session).
EVENTS_PER_SESSION = 7
#: Distinct visitors remembered within the retention (first visits, leads, customers).
REMEMBERED_VISITORS = 100_000_000
#: A session stays open for its length plus the gap and the lateness: about 35 minutes.
OPEN_SESSION_S = 35 * 60
#: Run workers and Redis masters at most this busy, so that a backlog drains.
HEADROOM = 0.7
#: A Redis master runs commands on one core; keep it at most half busy.
MASTER_CPU = 0.5
#: Data per Redis master (replicas hold as much again).
MASTER_GB = 8
#: A cluster needs three masters to elect a replica when one fails.
MIN_MASTERS = 3


@dataclass
class Capacity:
    per_worker: float  # events/s of one worker process on the cluster
    worker_cpu: float  # that worker's share of a core
    redis_cpu_per_10k: float  # share of a core, every node, per 10,000 events/s
    master_cpu_per_10k: float  # the same, masters only
    visitor_bytes: float  # Redis, masters
    session_bytes_redis: float
    session_bytes_worker: float

    def markdown(self) -> str:
        average = EVENTS_PER_DAY / 86_400
        peak = average * PEAK_FACTOR
        workers = math.ceil(peak / (self.per_worker * HEADROOM))
        redis_cores = peak / 10_000 * self.redis_cpu_per_10k
        master_cores = peak / 10_000 * self.master_cpu_per_10k
        open_sessions = peak / EVENTS_PER_SESSION * OPEN_SESSION_S
        visitors_gb = REMEMBERED_VISITORS * self.visitor_bytes / 1e9
        sessions_gb = open_sessions * self.session_bytes_redis / 1e9
        worker_gb = open_sessions * self.session_bytes_worker / 1e9
        masters = max(
            MIN_MASTERS,
            math.ceil(master_cores / MASTER_CPU),
            math.ceil((visitors_gb + sessions_gb) / MASTER_GB),
        )
        return "\n".join(
            [
                "Capacity, from the cluster runs above (this 2-core machine, one run):",
                "",
                "| | measured |",
                "| --- | --- |",
                f"| events/s per worker process | {self.per_worker:,.0f} "
                f"(at {self.worker_cpu:.0%} of a core) |",
                "| Redis CPU per 10,000 events/s: every node / the masters | "
                f"{self.redis_cpu_per_10k:.1%} / {self.master_cpu_per_10k:.1%} of a core |",
                "| Redis memory per remembered visitor (masters; replicas as much again) | "
                f"{self.visitor_bytes:,.0f} bytes |",
                f"| Redis memory per open session | {self.session_bytes_redis:,.0f} bytes |",
                f"| worker memory per open session | {self.session_bytes_worker:,.0f} bytes |",
                "",
                f"Worked example: {EVENTS_PER_DAY:,} events a day, the peak {PEAK_FACTOR} "
                f"times the average: {average:,.0f} events/s on average, {peak:,.0f} at the "
                "peak. Assumed: "
                f"{EVENTS_PER_SESSION} events per session, sessions open about "
                f"{OPEN_SESSION_S // 60} minutes (length, gap and lateness), "
                f"{REMEMBERED_VISITORS:,} visitors remembered.",
                "",
                "| | needs |",
                "| --- | --- |",
                f"| worker processes (each at most {HEADROOM:.0%} busy at the peak) | "
                f"{workers}, on as many cores; the topic needs at least as many "
                "partitions |",
                f"| open sessions at the peak | {open_sessions:,.0f}: "
                f"{worker_gb:,.1f} GB across the workers, {sessions_gb:,.1f} GB in Redis |",
                f"| Redis data | {visitors_gb + sessions_gb:,.1f} GB on the masters "
                "(as much again on the replicas) |",
                f"| Redis CPU at the peak | {redis_cores:.2f} of a core, every node; "
                f"{master_cores:.2f} the masters |",
                f"| Redis masters (each at most {MASTER_GB} GB and {MASTER_CPU:.0%} busy; "
                f"at least {MIN_MASTERS}) | {masters}, with a replica each |",
                "",
            ]
        )


def from_runs(cluster_runs: list[Scale], cluster_memory: MemoryResult) -> Capacity:
    """The capacity figures from the cluster scale runs (one worker gives the rate per
    worker; the most loaded run gives Redis CPU per 10k events/s) and the cluster memory run."""
    one = next(run for run in cluster_runs if run.workers == 1)
    busiest = max(cluster_runs, key=lambda run: run.events_per_s)
    return Capacity(
        per_worker=one.events_per_s,
        worker_cpu=one.worker_cpu[0],
        redis_cpu_per_10k=busiest.redis_cpu_per_10k,
        master_cpu_per_10k=busiest.master_cpu_per_10k,
        visitor_bytes=cluster_memory.redis_bytes_per_visitor,
        session_bytes_redis=cluster_memory.redis_bytes_per_session,
        session_bytes_worker=cluster_memory.worker_bytes_per_session,
    )
