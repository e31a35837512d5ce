"""Reading a request at the collector's door: the few headers it reads, a bounded body, and
the JSON answers of refusals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from kpistream.collector.guard import bounded_user_agent
from kpistream.collector.privacy import ClientAddress, consent_given, refusal

#: Largest request body: a tracker batch of 100 events is ~30 KiB.
MAX_BODY = 64 * 1024


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


class TooLarge(Exception):
    """The body is larger than :data:`MAX_BODY`."""


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
JSON = msgspec.json.Encoder().encode


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


def json_answer(body: Any, status: int, *, retry_after: float | None = None) -> Response:
    """A JSON answer; ``Retry-After`` in whole seconds (at least 1) when the sender should
    try again."""
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    return Response(JSON(body), status_code=status, headers=headers, media_type="application/json")


def client_of(request: Request, address: ClientAddress) -> Client:
    """Who sent ``request``: its address (through the trusted proxies), a bounded
    User-Agent, its origin, write key, consent and refusal signals."""
    headers = request_headers(request)
    peer = request.client.host if request.client else ""
    auth = headers.get("authorization", "")
    key = headers.get("x-kpistream-key") or (auth[7:] if auth.startswith("Bearer ") else None)
    return Client(
        ip=address(peer, headers.get("x-forwarded-for")),
        user_agent=bounded_user_agent(headers.get("user-agent", "")),
        origin=headers.get("origin"),
        key=key,
        consent=consent_given(headers.get("x-kpistream-consent", "")),
        anonymous="sp-anonymous" in headers,
        refusal=refusal(headers),
    )
