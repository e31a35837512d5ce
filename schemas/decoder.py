"""Fast, strict decoding of raw Kafka record values into typed events.

A value either decodes into one event struct or into a :class:`Rejection` carrying a
machine-readable ``reason`` (one of :data:`REASONS`), the JSON path of the offending field
where known, and a human-readable ``detail``. Decoding never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, Generic, Literal, TypeVar, get_args

import msgspec

Reason = Literal[
    "too_large",
    "malformed_json",
    "not_an_object",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "ts_out_of_range",
    "ts_in_future",
    "unknown_site",
]
REASONS: tuple[Reason, ...] = get_args(Reason)

#: A tracker event is a few hundred bytes; 64 KiB leaves room for long URLs and stops
#: megabyte payloads before they cost a JSON parse.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024

_PATH = re.compile(r" - at `(\$[^`]*)`$")


class Rejection(msgspec.Struct, frozen=True):
    reason: Reason
    detail: str
    field: str | None = None


def classify(message: str) -> Rejection:
    """Map a msgspec validation message to a reason code."""
    match = _PATH.search(message)
    field = match.group(1) if match else None
    if message.startswith("Object missing required field"):
        name = message.split("`")[1]
        return Rejection("missing_field", message, f"$.{name}")
    if field == "$.type":
        return Rejection("unknown_type", message, field)
    if message.startswith("Expected `object`"):
        if field is None:
            return Rejection("not_an_object", message, None)
        return Rejection("wrong_type", message, field)
    if field == "$.ts":
        if message.startswith("Expected `int` >=") or message.startswith("Expected `int` <="):
            return Rejection("ts_out_of_range", message, field)
        if message.startswith("Number out of range"):
            return Rejection("ts_out_of_range", message, field)
    if message.startswith("Expected `") and ", got `" in message:
        return Rejection("wrong_type", message, field)
    return Rejection("invalid_value", message, field)


E = TypeVar("E")


class EventDecoder(Generic[E]):
    """Decode one topic's record values.

    ``now_ms`` is injected so that the future-skew rule is testable and replayable; it is
    called once per batch, not per event (see :meth:`decode_batch`).
    """

    def __init__(
        self,
        event_type: Any,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_future_skew_ms: int = 5 * 60_000,
        site_allowlist: Collection[str] = (),
    ) -> None:
        self._decoder: msgspec.json.Decoder[E] = msgspec.json.Decoder(event_type)
        self.max_event_bytes = max_event_bytes
        self.max_future_skew_ms = max_future_skew_ms
        self.site_allowlist = frozenset(site_allowlist)

    def decode(self, value: bytes | None, *, now_ms: int) -> E | Rejection:
        if value is None:
            return Rejection("malformed_json", "record has no value (tombstone)")
        if len(value) > self.max_event_bytes:
            return Rejection(
                "too_large", f"{len(value)} bytes exceeds the limit of {self.max_event_bytes}"
            )
        try:
            event = self._decoder.decode(value)
        except msgspec.ValidationError as exc:
            return classify(str(exc))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return Rejection("malformed_json", str(exc)[:200])
        ts: int = getattr(event, "ts")  # noqa: B009 - E is a union of structs with `ts`
        if ts > now_ms + self.max_future_skew_ms:
            return Rejection(
                "ts_in_future",
                f"ts {ts} is more than {self.max_future_skew_ms} ms after now ({now_ms})",
                "$.ts",
            )
        if self.site_allowlist:
            site = getattr(event, "site", None)
            if site is not None and site not in self.site_allowlist:
                return Rejection("unknown_site", f"site {site!r} is not in the allowlist", "$.site")
        return event

    def decode_batch(
        self, values: list[bytes | None], *, clock_ms: Callable[[], int]
    ) -> list[E | Rejection]:
        now_ms = clock_ms()
        return [self.decode(v, now_ms=now_ms) for v in values]
