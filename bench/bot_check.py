"""The collector's bot check per request, by User-Agent length: ours (crawlerdetect's patterns
on RE2, the agent cut to ``MAX_USER_AGENT``) beside crawlerdetect's own ``is_crawler`` (Python
``re``) in the same run. Every agent is new (no cache helps an attacker) and made of a run of
letters and digits, the input crawlerdetect's catch-all pattern backtracks on.

    .venv/bin/python -m bench.bot_check
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from crawlerdetect import CrawlerDetect

from kpistream.collector.guard import MAX_USER_AGENT, _crawler, bot_reason

SIZES = (256, 4096, MAX_USER_AGENT)
#: crawlerdetect alone takes seconds per 4 KiB agent: fewer rounds for it.
ROUNDS = {"ours": 200, "crawlerdetect": 3}


def _agents(size: int, n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        run = "".join(rng.choice("aeiu0123456789") for _ in range(16))
        out.append(("Mozilla/5.0 " + run * (size // 16 + 1))[:size])
    return out


def _per_call_ms(check: Callable[[str], object], agents: list[str]) -> float:
    started = time.perf_counter()
    for agent in agents:
        check(agent)
    return (time.perf_counter() - started) / len(agents) * 1000


def measure() -> list[tuple[str, int, float]]:
    rng = random.Random(7)
    reference = CrawlerDetect()

    def ours(agent: str) -> object:
        _crawler.cache_clear()
        return bot_reason(agent, allow_headless=False)

    def theirs(agent: str) -> object:
        return reference._check_crawler(agent)  # uncached, as a new agent is

    rows = []
    for size in SIZES:
        for name, check in (("ours", ours), ("crawlerdetect", theirs)):
            rows.append((name, size, _per_call_ms(check, _agents(size, ROUNDS[name], rng))))
    return rows


def markdown(rows: list[tuple[str, int, float]]) -> str:
    lines = [
        "Bot check per request (a new User-Agent each time, a run of letters and digits; "
        f"ours cuts the agent to {MAX_USER_AGENT:,} characters first):",
        "",
        "| check | User-Agent bytes | ms per request |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {size:,} | {ms:.3f} |" for name, size, ms in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(measure()))
