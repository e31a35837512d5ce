"""The collector's endpoints (docs/collector.md) and the app that serves them."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kpistream.collector import protocols as P
from kpistream.collector.app import Collector
from kpistream.collector.edge import Edge
from kpistream.collector.http_server import bounded_http
from kpistream.collector.requests import JSON, Client, Outcome
from kpistream.collector.sender import Sender
from kpistream.config.settings import Settings

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def _collector(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    return collector


# -- answers ---------------------------------------------------------------------------------


def accepted(outcome: Outcome) -> Response:
    return Response(JSON(outcome.body()), status_code=202, media_type="application/json")


def gif(_: Outcome) -> Response:
    return Response(GIF, media_type="image/gif", headers={"Cache-Control": "no-store"})


def plausible_ok(outcome: Outcome) -> Response:
    headers = {"x-plausible-dropped": "1"} if outcome.dropped else None
    return PlainTextResponse("ok", status_code=202, headers=headers)


def snowplow_ok(_: Outcome) -> Response:
    return PlainTextResponse("ok")


# -- the ways in -----------------------------------------------------------------------------


async def events(request: Request) -> Response:
    c = _collector(request)
    limit = c.settings.collector_max_events
    return await c.handle(request, "kpistream", lambda b, _: P.ours(b, limit), accepted)


async def pixel(request: Request) -> Response:
    query = list(request.query_params.multi_items())
    item = P.ours_query(query, request.headers.get("referer"))
    return await _collector(request).handle(request, "kpistream", lambda *_: [item], gif)


async def plausible(request: Request) -> Response:
    c = _collector(request)
    limit = c.settings.collector_max_events
    return await c.handle(request, "plausible", lambda b, _: P.plausible(b, limit), plausible_ok)


def snowplow_items(items: list[dict[str, Any] | P.Skip] | P.Skip, who: Client) -> Any:
    if isinstance(items, P.Skip):
        return items
    consent = who.consent and not who.anonymous
    return [i if isinstance(i, P.Skip) else P.snowplow(i, consent) for i in items]


async def snowplow(request: Request) -> Response:
    c = _collector(request)
    limit = c.settings.collector_max_events
    return await c.handle(
        request,
        "snowplow",
        lambda b, who: snowplow_items(P.snowplow_post(b, limit), who),
        snowplow_ok,
    )


async def snowplow_pixel(request: Request) -> Response:
    query = P.snowplow_query(list(request.query_params.multi_items()))
    return await _collector(request).handle(
        request, "snowplow", lambda _, w: snowplow_items([query], w), gif
    )


# -- the service's own -----------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    sender = _collector(request).sender
    ready = sender.ready
    body = {
        "status": "ok" if ready else "starting",
        "queue": sender.backlog,
        "queue_capacity": sender.capacity,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    registry = _collector(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def gpc(_: Request) -> Response:
    # The GPC spec's well-known resource: this service honours the signal.
    return JSONResponse({"gpc": True, "lastUpdate": "2026-11-24"})


async def script(request: Request) -> Response:
    c = _collector(request)
    headers = {"Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(c.script_gz, media_type="text/javascript", headers=headers)
    return Response(c.script, media_type="text/javascript", headers=headers)


ROUTES = [
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


def create_app(settings: Settings, *, redis: Any = None, sender: Sender | None = None) -> Starlette:
    """The collector's app, behind its edge (CORS, answer counting)."""
    c = Collector(settings, redis=redis, sender=sender)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        await c.sender.start()
        try:
            yield
        finally:
            await c.sender.stop()
            await c.redis.aclose()

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.collector = c
    return Edge(app, c.sites, c.metrics)  # type: ignore[return-value]


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
