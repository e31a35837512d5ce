"""Run the peers on the topic the end-to-end run read, and check each one's totals against
the ones kpistream left in Redis (proof they did the same work)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kpistream.config.connections import redis_client
from kpistream.config.settings import Settings
from kpistream.kpis import catalogue as K
from kpistream.kpis.series import by_labels
from kpistream.sinks.store_reader import WindowReader

ROOT = Path(__file__).resolve().parents[2]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
#: (name, module, the Python it runs on)
PEERS = [
    ("faust agent + table", "bench.peers.faust_agent", Path(sys.executable)),
    ("Bytewax session windows", "bench.peers.bytewax_flow", PEERS_PYTHON),
    ("Quix Streams stateful dataframe", "bench.peers.quix_app", PEERS_PYTHON),
]

Sites = dict[str, list[int]]
REPORT = '{"seconds"'


@dataclass
class Peer:
    name: str
    events_per_s: float | None
    same_totals: bool
    note: str = ""

    def row(self) -> str:
        rate = "-" if self.events_per_s is None else f"{self.events_per_s:,.0f}"
        same = "yes" if self.same_totals else "no"
        return f"| {self.name} | {rate} | {same} | {self.note} |"


def ours(settings: Settings) -> Sites:
    """Per site [sessions, bounces, impressions, clicks] as kpistream stored them: sessions
    from the totals, bounces summed over every start bucket, impressions and clicks summed
    over item kinds and campaigns."""
    reader = WindowReader(redis_client(settings), prefix=settings.redis_prefix)
    snapshot = reader.snapshot({"all": 7 * 1440})
    out: Sites = {}
    for i, (count, counter) in enumerate(
        [
            (K.SESSIONS, snapshot.totals),
            (K.BOUNCES, snapshot.windows["all"]),
            (K.IMPRESSIONS, snapshot.totals),
            (K.CLICKS, snapshot.totals),
        ]
    ):
        for labels, n in by_labels(counter, count).items():
            out.setdefault(labels[0], [0, 0, 0, 0])[i] += n
    return out


def run(settings: Settings, events: int, expected: Sites) -> list[Peer]:
    results = []
    for name, module, python in PEERS:
        if not python.exists():
            raise SystemExit(f"{python} is missing: `make bench` installs the peers")
        try:
            done = subprocess.run(
                [
                    str(python),
                    "-m",
                    module,
                    settings.kafka,
                    settings.clickstream_topic,
                    str(events),
                ],
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=900,
            )
        except subprocess.TimeoutExpired:
            results.append(Peer(name, None, False, "did not finish in 15 minutes"))
            continue
        # faust's worker routes print() through its logging (to stdout or stderr, depending
        # on its version and handlers): find the report in either.
        output = (done.stdout + "\n" + done.stderr).splitlines()
        lines = [line[line.index(REPORT) :] for line in output if REPORT in line]
        if not lines:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            results.append(Peer(name, None, False, f"failed: {reason}"))
            continue
        got = json.loads(lines[-1])
        same = got["sites"] == expected
        note = "" if same else f"totals differ: {got['sites']} vs {expected}"
        results.append(Peer(name, events / got["seconds"], same, note))
    return results


def markdown(peers: list[Peer], ours_rate: float, ceiling: float) -> str:
    return "\n".join(
        [
            "Peers, same run, same events, same job (sessions with a 30-minute gap, bounces, "
            "impressions and clicks per site; `bench/peers/`), each checked against "
            "kpistream's totals:",
            "",
            "| | events/s | same totals |  |",
            "| --- | --- | --- | --- |",
            f"| ceiling (getmany + decode) | {ceiling:,.0f} | | |",
            f"| kpistream, every KPI | {ours_rate:,.0f} | yes | |",
            *(p.row() for p in peers),
            "",
        ]
    )
