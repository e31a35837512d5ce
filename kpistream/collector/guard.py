"""Who may send: bots, per-client rate limits, each site's origins and write keys."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import re2
from crawlerdetect.providers.crawlers import data as _crawler_patterns
from crawlerdetect.providers.exclusions import data as _exclusion_patterns

#: The longest User-Agent the collector looks at; the rest is cut before anything parses or
#: hashes it. Real browsers' stay under 500 characters (in-app browsers near 600).
MAX_USER_AGENT = 1024

#: RE2 runs crawlerdetect's patterns in time linear in the agent's length (a DFA: no
#: backtracking); Python's ``re`` took 1.4 s for a 4 KiB agent on its catch-all
#: ``[a-z0-9\-_]*(bot|crawl|...)`` and 12 ms for any 1 KiB agent. RE2 has no lookahead: the
#: few patterns with one (``Yandex(?!Search)``) stay with ``re``, where each starts with a
#: literal and so costs one scan.
_RE2 = re2.Options()
_RE2.case_sensitive = False
_RE2.max_mem = 64 << 20  # the crawler set's automaton needs ~10 MiB; the default 8 is short


def _split(patterns: Iterable[str]) -> tuple[Any, re.Pattern[str] | None]:
    plain = [p for p in patterns if "(?" not in p]
    looking = [p for p in patterns if "(?" in p]
    fallback = re.compile("|".join(looking), re.IGNORECASE) if looking else None
    return re2.compile("|".join(plain), _RE2), fallback


_CRAWLERS = _split(_crawler_patterns)
_EXCLUSIONS = re2.compile("|".join(_exclusion_patterns), _RE2)


@lru_cache(maxsize=20_000)
def _crawler(user_agent: str) -> bool:
    """crawlerdetect's verdict, from its own maintained pattern lists: the exclusions (parts
    of real browsers' agents that look like bots) removed, then any crawler pattern."""
    agent = _EXCLUSIONS.sub("", user_agent.strip())
    if not agent:
        return False
    linear, fallback = _CRAWLERS
    return linear.search(agent) is not None or (
        fallback is not None and fallback.search(agent) is not None
    )


def bounded_user_agent(user_agent: str) -> str:
    return user_agent[:MAX_USER_AGENT]


def bot_reason(user_agent: str, *, allow_headless: bool) -> str | None:
    """``bot`` for crawlers, scripts and headless browsers (crawlerdetect's maintained list,
    verdicts cached per user agent); ``no_user_agent`` without one; else None. Linear in the
    agent's length, which is at most :data:`MAX_USER_AGENT` (longer ones are cut first)."""
    user_agent = bounded_user_agent(user_agent)
    if not user_agent.strip():
        return "no_user_agent"
    if allow_headless and "HeadlessChrome" in user_agent:
        user_agent = user_agent.replace("HeadlessChrome", "Chrome")
    return "bot" if _crawler(user_agent) else None


class TokenBuckets:
    """One token bucket per client (refill ``rate``/s up to ``burst``), at most ``max_clients``
    remembered (the least recently seen go first)."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[bytes, tuple[float, float]] = {}  # client -> (tokens, at)

    def take(self, client: bytes, now: float | None = None) -> float:
        """0.0 when the request may go; else the seconds until a token is there."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        return wait


class VisitorPace:
    """Events per visitor in the current minute: beyond ``limit`` a visitor behaves like a
    bot (no person views 300 pages a minute), and the rest of its minute is dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._minute = -1
        self._counts: dict[str, int] = {}

    def too_fast(self, visitor_id: str, now: float | None = None) -> bool:
        minute = int((time.time() if now is None else now) // 60)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        n = self._counts.get(visitor_id, 0) + 1
        self._counts[visitor_id] = n
        return n > self.limit


def origin_host(origin: str) -> str | None:
    try:
        return urlsplit(origin).hostname
    except ValueError:
        return None


class Sites:
    """Which origins may send a site's events, and which write key a site wants."""

    def __init__(
        self,
        origins: Mapping[str, list[str]],
        write_keys: Mapping[str, str],
        known: Iterable[str] = (),
    ) -> None:
        self.origins = {site: {o.rstrip("/") for o in allowed} for site, allowed in origins.items()}
        self.write_keys = dict(write_keys)
        #: the sites this deployment serves, when it says (KPISTREAM_SITES and the above)
        self.known = set(known) | set(self.origins)

    def origin_allowed(self, site: str, origin: str) -> bool:
        """The site's own host or a subdomain of it, or an origin configured for the site."""
        if origin.rstrip("/") in self.origins.get(site, ()):
            return True
        host = origin_host(origin)
        return host is not None and (host == site or host.endswith("." + site))

    def any_origin_allowed(self, origin: str) -> bool:
        """Could this origin send for some site? (A preflight names no site yet; each event
        is checked against its own site later.) Without KPISTREAM_SITES or configured
        origins, any origin may ask."""
        if not self.known:
            return True
        return any(self.origin_allowed(site, origin) for site in self.known)

    def key_matches(self, site: str, key: str | None) -> bool:
        expected = self.write_keys.get(site)
        return expected is not None and key is not None and hmac.compare_digest(expected, key)
