"""``kpistream collector``: the HTTP edge (Starlette on uvicorn).

Every way in ends in :meth:`Collector.admit`: check who may send, pseudonymise the visitor
(:mod:`kpistream.collector.privacy`), validate with the workers' own decoder, and hand the
contract's fields -- nothing else of the request -- to
:class:`kpistream.collector.sender.Sender`. The endpoints and their answers are documented in
docs/collector.md.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgspec
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from kpistream.collector import checks, scrub
from kpistream.collector import protocols as P
from kpistream.collector.guard import (
    Sites,
    TokenBuckets,
    VisitorPace,
    bot_reason,
)
from kpistream.collector.metrics import CollectorMetrics
from kpistream.collector.privacy import ClientAddress, Salts, audience_id
from kpistream.collector.requests import (
    MAX_BODY,
    Client,
    Outcome,
    TooLarge,
    client_of,
    json_answer,
    read_body,
)
from kpistream.collector.sender import Backlogged, Sender
from kpistream.config.connections import async_redis_client
from kpistream.config.settings import Settings
from kpistream.schemas.decoder import EventDecoder, Rejection
from kpistream.schemas.events import Clickstream

log = logging.getLogger("kpistream.collector")


#: A protocol's parser: a request's body and sender to candidate events, or why not.
Parse = Callable[[bytes, Client], list[P.Candidate] | P.Skip]
#: A protocol's answer to a request it took.
Answer = Callable[[Outcome], Response]


@dataclass(slots=True)
class _Door:
    """One request at the door: what every event of it shares. Per request, each site is
    judged and hashed once: the sender is the same."""

    protocol: str
    who: Client
    outcome: Outcome
    now_ms: int
    bot: str | None
    #: the event-time window an event's time must fall in (see :func:`checks.stamp`)
    window: dict[str, int]
    verdicts: dict[str, checks.SiteVerdict] = field(default_factory=dict)
    audience: dict[str, str] = field(default_factory=dict)


class Collector:
    def __init__(self, settings: Settings, *, redis: Any = None, sender: Sender | None = None):
        self.settings = settings
        self.metrics = CollectorMetrics()
        self.metrics.queue_capacity.set(settings.collector_queue)
        self.sender = sender or Sender(settings, observe=self.metrics.produce_seconds.observe)
        self.metrics.queue.set_function(lambda: self.sender.backlog)
        self.redis = redis or async_redis_client(settings)
        self.salts = Salts(self.redis, settings.redis_prefix)
        self.decoder: EventDecoder[Any] = EventDecoder(
            Clickstream,
            max_event_bytes=settings.max_event_bytes,
            max_future_skew_ms=settings.max_future_skew_s * 1000,
            site_allowlist=settings.site_allowlist,
        )
        self.query_params = settings.query_params
        self.sites = Sites(settings.site_origins, settings.write_keys, settings.site_allowlist)
        self.buckets = TokenBuckets(settings.collector_rate, settings.collector_burst)
        self.pace = VisitorPace(settings.collector_max_events_per_minute)
        self.address = ClientAddress(settings.collector_trusted_proxies.split(","))
        #: the rate limit's client key: a hash under a per-process key, not the address
        self._client_key = secrets.token_bytes(16)
        self._encode = msgspec.json.Encoder().encode
        script = resources.files("kpistream.collector").joinpath("static/kpistream.js").read_bytes()
        self.script, self.script_gz = script, gzip.compress(script, 9, mtime=0)

    def head_refused(self) -> None:
        """A request whose head passed :data:`http_server.MAX_HEAD_BYTES` (answered 431)."""
        self.metrics.rejected_of("http", "headers_too_large").inc()
        self.metrics.requests.labels("other", "431").inc()

    # -- the door -----------------------------------------------------------------------------

    def rate_limited(self, who: Client) -> float:
        client = hashlib.blake2b(who.ip.encode(), key=self._client_key, digest_size=8).digest()
        return self.buckets.take(client)

    async def admit(
        self, protocol: str, candidates: list[P.Candidate], who: Client, outcome: Outcome
    ) -> list[tuple[str, str, bytes]]:
        """The events of a request that may go to Kafka, as (site, visitor_id, value): each
        candidate passes the checks of :mod:`kpistream.collector.checks` in order, then the
        visitor's pace, the scrubbing of personal data and the workers' decoder."""
        now_ms = int(time.time() * 1000)
        door = _Door(
            protocol,
            who,
            outcome,
            now_ms,
            bot_reason(who.user_agent, allow_headless=self.settings.collector_allow_headless),
            {
                "now_ms": now_ms,
                "earliest_ms": now_ms - self.settings.allowed_lateness_s * 1000,
                "latest_ms": now_ms + self.settings.max_future_skew_s * 1000,
            },
        )
        out: list[tuple[str, str, bytes]] = []
        for index, item in enumerate(candidates):
            admitted = await self._admit_one(door, index, item)
            if admitted is not None:
                out.append(admitted)
        for reason, n in outcome.dropped.items():
            self.metrics.dropped_of(protocol, reason).inc(n)
        return out

    async def _admit_one(
        self, door: _Door, index: int, item: P.Candidate
    ) -> tuple[str, str, bytes] | None:
        """One candidate through the door: None when it stops (counted in the outcome)."""
        if isinstance(item, P.Skip):
            self._stop(door, index, item)
            return None
        if door.bot is not None:
            door.outcome.drop(door.bot)
            return None
        site = checks.site_of(item)
        if isinstance(site, P.Skip):
            self._stop(door, index, site)
            return None
        verdict = door.verdicts.get(site)
        if verdict is None:
            verdict = door.verdicts[site] = checks.site_verdict(self.sites, site, door.who)
        # The first check that stops the event; else whether it is in the customer zone.
        customer = (
            verdict.refusal
            or checks.not_erasure(item)
            or checks.customer_identity(item, door.who, site, self.settings.id_secret)
        )
        if isinstance(customer, P.Skip):
            self._stop(door, index, customer)
            return None
        if not customer:
            item["visitor_id"] = await self._audience(site, door.who, door.now_ms, door.audience)
        scrub.event(item, site, self.query_params.get(site, ()))
        checks.stamp(item, trusted=verdict.trusted, **door.window)
        if self.pace.too_fast(item["visitor_id"], door.now_ms / 1000):
            door.outcome.drop("bot_behaviour")
            return None
        decoded = self.decoder.convert(item, now_ms=door.now_ms)
        if isinstance(decoded, Rejection):
            self._reject(
                door.protocol, door.outcome, index, decoded.reason, decoded.detail, decoded.field
            )
            return None
        return site, decoded.visitor_id, self._encode(decoded)

    async def _audience(self, site: str, who: Client, now_ms: int, known: dict[str, str]) -> str:
        """The audience zone's visitor id: a keyed hash of (site, IP, User-Agent) under
        today's salt, once per site and request (``known``)."""
        visitor = known.get(site)
        if visitor is None:
            salt = await self.salts.current(now_ms / 1000)
            visitor = known[site] = audience_id(salt, site, who.ip, who.user_agent)
        return visitor

    def _stop(self, door: _Door, index: int, skip: P.Skip) -> None:
        """An event that stops at the door: dropped (counted) or rejected (with its reason)."""
        if skip.kind == "dropped":
            door.outcome.drop(skip.reason)
        else:
            self._reject(door.protocol, door.outcome, index, skip.reason, skip.detail, skip.field)

    def _reject(
        self,
        protocol: str,
        outcome: Outcome,
        index: int,
        reason: str,
        detail: str,
        path: str | None = None,
    ) -> None:
        self.metrics.rejected_of(protocol, reason).inc()
        entry: dict[str, Any] = {"index": index, "reason": reason, "detail": detail}
        if path:
            entry["field"] = path
        outcome.rejected.append(entry)

    async def handle(
        self,
        request: Request,
        protocol: str,
        parse: Parse,
        answer: Answer,
    ) -> Response:
        """:meth:`serve`, with a JSON answer and one log line (no request data in it) for
        any error of ours."""
        try:
            return await self.serve(request, protocol, parse, answer)
        except Exception as exc:
            log.error("collector: internal error on %s: %r", request.url.path, exc)
            self.metrics.dropped_of(protocol, "internal_error").inc()
            return json_answer({"error": "internal_error"}, 500)

    async def serve(
        self,
        request: Request,
        protocol: str,
        parse: Parse,
        answer: Answer,
    ) -> Response:
        """Read, rate-limit, parse, admit and send one request."""
        who = client_of(request, self.address)
        outcome = Outcome()
        wait = self.rate_limited(who)
        if wait:
            self.metrics.dropped_of(protocol, "rate_limited").inc()
            return json_answer(
                {"error": "rate_limited", "retry_after_s": round(wait, 3)}, 429, retry_after=wait
            )
        try:
            body = await read_body(request)
        except TooLarge:
            self.metrics.rejected_of(protocol, "body_too_large").inc()
            return json_answer({"error": "body_too_large", "limit_bytes": MAX_BODY}, 413)
        refused = who.refusal
        parsed = parse(body, who)
        if isinstance(parsed, P.Skip):
            self._reject(protocol, outcome, 0, parsed.reason, parsed.detail, parsed.field)
            return json_answer(outcome.body(), 400)
        if refused is not None:  # only the reason is counted: nothing of the event is kept
            self.metrics.dropped_of(protocol, refused).inc(len(parsed))
            outcome.drop(refused, len(parsed))
            return answer(outcome)
        try:
            events = await self.admit(protocol, parsed, who, outcome)
        except RedisError as exc:  # today's salt cannot be read: the sender should retry
            log.warning("collector: Redis unavailable for the salt: %s", type(exc).__name__)
            self.metrics.dropped_of(protocol, "redis_unavailable").inc(len(parsed))
            return json_answer({"error": "redis_unavailable"}, 503, retry_after=5)
        refused_send = await self._send(protocol, events)
        if refused_send is not None:
            return refused_send
        outcome.accepted = len(events)
        self.metrics.accepted_of(protocol).inc(len(events))
        if outcome.rejected:
            return json_answer(outcome.body(), 400)
        return answer(outcome)

    async def _send(self, protocol: str, events: list[tuple[str, str, bytes]]) -> Response | None:
        """Hand the admitted events to the sender: None when it took them, else the answer
        that tells the client to retry."""
        try:
            await self.sender.send(events)
        except Backlogged as exc:
            self.metrics.dropped_of(protocol, exc.reason).inc(len(events))
            return json_answer(
                {"error": exc.reason, "retry_after_s": exc.retry_after_s},
                503,
                retry_after=exc.retry_after_s,
            )
        except KafkaError as exc:
            self.metrics.dropped_of(protocol, "kafka_error").inc(len(events))
            return json_answer(
                {"error": "kafka_error", "detail": type(exc).__name__}, 503, retry_after=5
            )
        return None
