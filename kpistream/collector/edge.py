"""Around every request of the collector, in one ASGI wrapper: CORS for trackers on other
origins, and the count of answers by endpoint and status."""

from __future__ import annotations

from typing import Any

from kpistream.collector.guard import Sites
from kpistream.collector.metrics import CollectorMetrics

ALLOWED_HEADERS = "content-type, sp-anonymous, x-kpistream-consent, x-kpistream-key, authorization"


class Edge:
    """Around every request, in one wrapper: CORS for trackers on other origins (the
    request's Origin is echoed, never ``*``: the Snowplow tracker sends credentials, when it
    may send for some site; each event's site is checked again in :meth:`Collector.admit`),
    and the count of answers by endpoint and status (unknown paths as ``other``)."""

    KNOWN = frozenset(
        {
            "/v1/events",
            "/v1/p.gif",
            "/api/event",
            "/i",
            "/healthz",
            "/metrics",
            "/com.snowplowanalytics.snowplow/tp2",
            "/.well-known/gpc.json",
            "/kpistream.js",
        }
    )
    PREFLIGHT = [
        (b"access-control-allow-methods", b"POST, GET, OPTIONS"),
        (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
        (b"access-control-max-age", b"86400"),
    ]

    def __init__(self, app: Any, sites: Sites, metrics: CollectorMetrics) -> None:
        self.app, self.sites, self.metrics = app, sites, metrics
        self._answered: dict[tuple[str, int], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def count(self, path: str, status: int) -> None:
        child = self._answered.get((path, status))
        if child is None:
            child = self._answered[path, status] = self.metrics.requests.labels(path, str(status))
        child.inc()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.KNOWN else "other"
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        cors: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        allowed = origin is not None and self.sites.any_origin_allowed(origin)
        if allowed:
            assert origin is not None
            cors += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
            ]
        if scope["method"] == "OPTIONS":
            status = 204 if allowed else 403
            headers = [*cors, *self.PREFLIGHT] if allowed else cors
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            self.count(path, status)
            return

        async def edge(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.count(path, message["status"])
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, edge)
