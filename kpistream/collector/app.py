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
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgspec
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kpistream.collector import checks, scrub
from kpistream.collector import protocols as P
from kpistream.collector.edge import Edge
from kpistream.collector.guard import (
    Sites,
    TokenBuckets,
    VisitorPace,
    bot_reason,
    bounded_user_agent,
)
from kpistream.collector.http_server import bounded_http
from kpistream.collector.metrics import CollectorMetrics
from kpistream.collector.privacy import ClientAddress, Salts, audience_id, consent_given, refusal
from kpistream.collector.sender import Backlogged, Sender
from kpistream.config.connections import async_redis_client
from kpistream.config.settings import Settings
from kpistream.schemas.decoder import EventDecoder, Rejection
from kpistream.schemas.events import Clickstream

#: Largest request body: a tracker batch of 100 events is ~30 KiB.
MAX_BODY = 64 * 1024
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
log = logging.getLogger("kpistream.collector")


class TooLarge(Exception):
    pass


@dataclass
class Outcome:
    """What became of a request's events."""

    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def body(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "dropped": self.dropped}


@dataclass
class Client:
    """Who sent a request, as far as privacy and abuse rules need to know."""

    ip: str
    user_agent: str
    origin: str | None
    key: str | None
    consent: bool
    anonymous: bool
    refusal: str | None = None  # gpc, dnt


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

    def who(self, request: Request) -> Client:
        headers = request_headers(request)
        peer = request.client.host if request.client else ""
        auth = headers.get("authorization", "")
        key = headers.get("x-kpistream-key") or (auth[7:] if auth.startswith("Bearer ") else None)
        return Client(
            ip=self.address(peer, headers.get("x-forwarded-for")),
            user_agent=bounded_user_agent(headers.get("user-agent", "")),
            origin=headers.get("origin"),
            key=key,
            consent=consent_given(headers.get("x-kpistream-consent", "")),
            anonymous="sp-anonymous" in headers,
            refusal=refusal(headers),
        )

    def rate_limited(self, who: Client) -> float:
        client = hashlib.blake2b(who.ip.encode(), key=self._client_key, digest_size=8).digest()
        return self.buckets.take(client)

    async def admit(
        self, protocol: str, candidates: list[P.Candidate], who: Client, outcome: Outcome
    ) -> list[tuple[str, str, bytes]]:
        """The events of a request that may go to Kafka, as (site, visitor_id, value): each
        candidate passes the checks of :mod:`kpistream.collector.checks` in order, then the
        visitor's pace, the scrubbing of personal data and the workers' decoder."""
        out: list[tuple[str, str, bytes]] = []
        bot = bot_reason(who.user_agent, allow_headless=self.settings.collector_allow_headless)
        now_ms = int(time.time() * 1000)
        window = {
            "now_ms": now_ms,
            "earliest_ms": now_ms - self.settings.allowed_lateness_s * 1000,
            "latest_ms": now_ms + self.settings.max_future_skew_s * 1000,
        }
        # Per request, each site is judged and hashed once: the sender is the same.
        verdicts: dict[str, checks.SiteVerdict] = {}
        audience: dict[str, str] = {}
        for index, item in enumerate(candidates):
            if isinstance(item, P.Skip):
                self._stop(protocol, outcome, index, item)
                continue
            if bot is not None:
                outcome.drop(bot)
                continue
            site = checks.site_of(item)
            if isinstance(site, P.Skip):
                self._stop(protocol, outcome, index, site)
                continue
            verdict = verdicts.get(site)
            if verdict is None:
                verdict = verdicts[site] = checks.site_verdict(self.sites, site, who)
            # The first check that stops the event; else whether it is in the customer zone.
            customer = (
                verdict.refusal
                or checks.not_erasure(item)
                or checks.customer_identity(item, who, site, self.settings.id_secret)
            )
            if isinstance(customer, P.Skip):
                self._stop(protocol, outcome, index, customer)
                continue
            if not customer:
                item["visitor_id"] = await self._audience(site, who, now_ms, audience)
            scrub.event(item, site, self.query_params.get(site, ()))
            checks.stamp(item, trusted=verdict.trusted, **window)
            if self.pace.too_fast(item["visitor_id"], now_ms / 1000):
                outcome.drop("bot_behaviour")
                continue
            decoded = self.decoder.convert(item, now_ms=now_ms)
            if isinstance(decoded, Rejection):
                self._reject(
                    protocol, outcome, index, decoded.reason, decoded.detail, decoded.field
                )
                continue
            out.append((site, decoded.visitor_id, self._encode(decoded)))
        for reason, n in outcome.dropped.items():
            self.metrics.dropped_of(protocol, reason).inc(n)
        return out

    async def _audience(self, site: str, who: Client, now_ms: int, known: dict[str, str]) -> str:
        """The audience zone's visitor id: a keyed hash of (site, IP, User-Agent) under
        today's salt, once per site and request (``known``)."""
        visitor = known.get(site)
        if visitor is None:
            salt = await self.salts.current(now_ms / 1000)
            visitor = known[site] = audience_id(salt, site, who.ip, who.user_agent)
        return visitor

    def _stop(self, protocol: str, outcome: Outcome, index: int, skip: P.Skip) -> None:
        """An event that stops at the door: dropped (counted) or rejected (with its reason)."""
        if skip.kind == "dropped":
            outcome.drop(skip.reason)
        else:
            self._reject(protocol, outcome, index, skip.reason, skip.detail, skip.field)

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
        parse: Callable[[bytes, Client], list[P.Candidate] | P.Skip],
        answer: Callable[[Outcome], Response],
    ) -> Response:
        """:meth:`serve`, with a JSON answer and one log line (no request data in it) for
        any error of ours."""
        try:
            return await self.serve(request, protocol, parse, answer)
        except Exception as exc:
            log.error("collector: internal error on %s: %r", request.url.path, exc)
            self.metrics.dropped_of(protocol, "internal_error").inc()
            return self._json({"error": "internal_error"}, 500)

    async def serve(
        self,
        request: Request,
        protocol: str,
        parse: Callable[[bytes, Client], list[P.Candidate] | P.Skip],
        answer: Callable[[Outcome], Response],
    ) -> Response:
        """Read, rate-limit, parse, admit and send one request."""
        who = self.who(request)
        outcome = Outcome()
        wait = self.rate_limited(who)
        if wait:
            self.metrics.dropped_of(protocol, "rate_limited").inc()
            return self._json(
                {"error": "rate_limited", "retry_after_s": round(wait, 3)}, 429, retry_after=wait
            )
        try:
            body = await read_body(request)
        except TooLarge:
            self.metrics.rejected_of(protocol, "body_too_large").inc()
            return self._json({"error": "body_too_large", "limit_bytes": MAX_BODY}, 413)
        refused = who.refusal
        parsed = parse(body, who)
        if isinstance(parsed, P.Skip):
            self._reject(protocol, outcome, 0, parsed.reason, parsed.detail, parsed.field)
            return self._json(outcome.body(), 400)
        if refused is not None:  # only the reason is counted: nothing of the event is kept
            self.metrics.dropped_of(protocol, refused).inc(len(parsed))
            outcome.drop(refused, len(parsed))
            return answer(outcome)
        try:
            events = await self.admit(protocol, parsed, who, outcome)
        except RedisError as exc:  # today's salt cannot be read: the sender should retry
            log.warning("collector: Redis unavailable for the salt: %s", type(exc).__name__)
            self.metrics.dropped_of(protocol, "redis_unavailable").inc(len(parsed))
            return self._json({"error": "redis_unavailable"}, 503, retry_after=5)
        try:
            await self.sender.send(events)
        except Backlogged as exc:
            self.metrics.dropped_of(protocol, exc.reason).inc(len(events))
            return self._json(
                {"error": exc.reason, "retry_after_s": exc.retry_after_s},
                503,
                retry_after=exc.retry_after_s,
            )
        except KafkaError as exc:
            self.metrics.dropped_of(protocol, "kafka_error").inc(len(events))
            return self._json(
                {"error": "kafka_error", "detail": type(exc).__name__}, 503, retry_after=5
            )
        outcome.accepted = len(events)
        self.metrics.accepted_of(protocol).inc(len(events))
        if outcome.rejected:
            return self._json(outcome.body(), 400)
        return answer(outcome)

    @staticmethod
    def _json(body: Any, status: int, *, retry_after: float | None = None) -> Response:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        return Response(
            _JSON(body), status_code=status, headers=headers, media_type="application/json"
        )


#: The headers the collector reads; one pass over the request's instead of a scan per name.
_WANTED = frozenset(
    {
        b"authorization",
        b"x-kpistream-key",
        b"x-forwarded-for",
        b"user-agent",
        b"origin",
        b"x-kpistream-consent",
        b"sp-anonymous",
        b"sec-gpc",
        b"dnt",
    }
)
_JSON = msgspec.json.Encoder().encode


def request_headers(request: Request) -> dict[str, str]:
    return {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in request.scope["headers"]
        if k in _WANTED
    }


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def server_options(app: Any) -> dict[str, Any]:
    """uvicorn's options for the collector ``app`` (of :func:`create_app`): the bounded
    request head, no access log (it would write each visitor's IP address), and
    X-Forwarded-For believed only from configured proxies, not uvicorn's."""
    return {
        "http": bounded_http(app.state.collector.head_refused),
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
    }


def create_app(settings: Settings, *, redis: Any = None, sender: Sender | None = None) -> Starlette:
    c = Collector(settings, redis=redis, sender=sender)
    max_events = settings.collector_max_events

    def accepted(outcome: Outcome) -> Response:
        return Response(_JSON(outcome.body()), status_code=202, media_type="application/json")

    def gif(_: Outcome) -> Response:
        return Response(GIF, media_type="image/gif", headers={"Cache-Control": "no-store"})

    def plausible_ok(outcome: Outcome) -> Response:
        headers = {"x-plausible-dropped": "1"} if outcome.dropped else None
        return PlainTextResponse("ok", status_code=202, headers=headers)

    def snowplow_ok(_: Outcome) -> Response:
        return PlainTextResponse("ok")

    async def events(request: Request) -> Response:
        return await c.handle(request, "kpistream", lambda b, _: P.ours(b, max_events), accepted)

    async def pixel(request: Request) -> Response:
        query = list(request.query_params.multi_items())
        item = P.ours_query(query, request.headers.get("referer"))
        return await c.handle(request, "kpistream", lambda *_: [item], gif)

    async def plausible(request: Request) -> Response:
        return await c.handle(
            request, "plausible", lambda b, _: P.plausible(b, max_events), plausible_ok
        )

    def snowplow_items(items: list[dict[str, Any] | P.Skip] | P.Skip, who: Any) -> Any:
        if isinstance(items, P.Skip):
            return items
        consent = who.consent and not who.anonymous
        return [i if isinstance(i, P.Skip) else P.snowplow(i, consent) for i in items]

    async def snowplow(request: Request) -> Response:
        return await c.handle(
            request,
            "snowplow",
            lambda b, who: snowplow_items(P.snowplow_post(b, max_events), who),
            snowplow_ok,
        )

    async def snowplow_pixel(request: Request) -> Response:
        query = P.snowplow_query(list(request.query_params.multi_items()))
        return await c.handle(request, "snowplow", lambda _, w: snowplow_items([query], w), gif)

    async def healthz(_: Request) -> Response:
        ready = c.sender.ready
        body = {
            "status": "ok" if ready else "starting",
            "queue": c.sender.backlog,
            "queue_capacity": c.sender.capacity,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(c.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def gpc(_: Request) -> Response:
        # The GPC spec's well-known resource: this service honours the signal.
        return JSONResponse({"gpc": True, "lastUpdate": "2026-11-24"})

    async def script(request: Request) -> Response:
        headers = {"Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(c.script_gz, media_type="text/javascript", headers=headers)
        return Response(c.script, media_type="text/javascript", headers=headers)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        await c.sender.start()
        try:
            yield
        finally:
            await c.sender.stop()
            await c.redis.aclose()

    routes = [
        Route("/v1/events", events, methods=["POST"]),
        Route("/v1/p.gif", pixel, methods=["GET"]),
        Route("/api/event", plausible, methods=["POST"]),
        Route("/com.snowplowanalytics.snowplow/tp2", snowplow, methods=["POST"]),
        Route("/i", snowplow_pixel, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/.well-known/gpc.json", gpc, methods=["GET"]),
        Route("/kpistream.js", script, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.collector = c
    return Edge(app, c.sites, c.metrics)  # type: ignore[return-value]
