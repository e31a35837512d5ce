"""Our own contract: ``POST /v1/events`` (one event, an array or NDJSON) and the pixel
``GET /v1/p.gif``."""

from __future__ import annotations

from typing import Any

import msgspec

from kpistream.collector.protocols.common import (
    BadNumber,
    Candidate,
    Skip,
    integer,
    json_decoder,
    money,
    reject,
    undecodable,
    utm,
)


def ours(body: bytes, max_events: int) -> list[Candidate] | Skip:
    """``POST /v1/events``: one event, a JSON array, or NDJSON (one event per line)."""
    text = body.removeprefix(b"\xef\xbb\xbf").strip()
    if not text:
        return reject("malformed_json", "empty body")
    items: list[Any]
    try:
        parsed = json_decoder.decode(text)
        items = parsed if isinstance(parsed, list) else [parsed]
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        lines = [line for line in text.split(b"\n") if line.strip()]
        if len(lines) < 2:
            return undecodable(exc)
        items = []
        for line in lines:
            try:
                items.append(json_decoder.decode(line))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as line_exc:
                items.append(undecodable(line_exc))
    if len(items) > max_events:
        return reject("too_many_events", f"{len(items)} events; at most {max_events} per request")
    return [
        item if isinstance(item, dict | Skip) else reject("not_an_object", "an event is an object")
        for item in items
    ]


#: Query parameters of ``GET /v1/p.gif`` that are numbers in the contract.
_INTS = ("ts", "quantity", "score", "engaged_ms", "scroll_depth")
_FLOATS = ("value",)


def ours_query(query: list[tuple[str, str]], referer: str | None) -> Candidate:
    """``GET /v1/p.gif?site=...&path=...``: one event (default ``page_view``) from the query;
    the page is the ``Referer`` when neither ``url`` nor ``path`` is given."""
    event: dict[str, Any] = {"type": "page_view"}
    for name, value in query:
        if name in _INTS or name in _FLOATS:
            try:
                number = integer(value, f"$.{name}") if name in _INTS else money(value, "")
            except BadNumber:
                return reject("invalid_number", f"{name} must be a finite number", f"$.{name}")
            if number is None:
                return reject("wrong_type", f"{name} must be a number", f"$.{name}")
            event[name] = number
        else:
            event[name] = value
    if event["type"] == "page_view" and "url" not in event and "path" not in event and referer:
        event["url"] = referer
        event.update({k: v for k, v in utm(referer).items() if k not in event})
    return event
