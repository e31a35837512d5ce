"""Fast, strict decoding of raw Kafka record values into typed events.

A value either decodes into one event struct or into a :class:`Rejection` carrying a
machine-readable ``reason`` (one of :data:`REASONS`), the JSON path of the offending field
where known, and a human-readable ``detail``. Decoding never raises.

The fast path is one typed msgspec decode. Only a value that fails it is looked at again,
so that its reason does not depend on the order of its fields or on the topic: is it JSON at
all, an object, of a known type, and then which field fails first in the contract's own field
order. A UTF-8 byte-order mark before the JSON is tolerated. Ids that are e-mail or IP
addresses are rejected (``pii_id``): kpistream keeps pseudonymous ids only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, Generic, Literal, TypeVar, get_args

import msgspec

from kpistream.schemas.personal import personal_id

Reason = Literal[
    "too_large",
    "malformed_json",
    "not_an_object",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "invalid_number",
    "ts_out_of_range",
    "ts_in_future",
    "unknown_site",
    "pii_id",
    "conflicting_duplicate",
]
REASONS: tuple[Reason, ...] = get_args(Reason)

#: A tracker event is a few hundred bytes; 64 KiB leaves room for long URLs and stops
#: megabyte payloads before they cost a JSON parse.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024

_PATH = re.compile(r" - at `(\$[^`]*)`$")
_BOM = b"\xef\xbb\xbf"
_ANY = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder().encode


def _suspect(event: object) -> bool:
    """Whether an event's ids could be personal data (:func:`personal_id` decides)."""
    visitor: str | None = getattr(event, "visitor_id", None)
    if visitor is not None and ("@" in visitor or "." in visitor or ":" in visitor):
        return True
    for name in ("session_id", "customer_id"):
        given: str | None = getattr(event, name, None)
        if given is not None and ("@" in given or "." in given or ":" in given):
            return True
    return False


class Rejection(msgspec.Struct, frozen=True, gc=False):
    reason: Reason
    detail: str
    field: str | None = None


def out_of_range(error: Exception | str) -> bool:
    """msgspec's complaint about a JSON number beyond any float or int (``1e400``)."""
    return str(error).startswith("Number out of range")


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
    if out_of_range(message):
        return Rejection("invalid_number", message, field)
    if field == "$.ts" and (
        message.startswith("Expected `int` >=") or message.startswith("Expected `int` <=")
    ):
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
        self.event_type = event_type
        self._decoder: msgspec.json.Decoder[E] = msgspec.json.Decoder(event_type)
        #: wire type -> the struct's fields in contract order, to diagnose a failure
        types = get_args(event_type) or (event_type,)  # a union, or one tagged struct
        self._fields: dict[str, tuple[str, ...]] = {
            str(t.__struct_config__.tag): t.__struct_fields__ for t in types
        }
        self._tag = types[0].__struct_config__.tag_field
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
        if value[:3] == _BOM:
            value = value[3:]
        try:
            event = self._decoder.decode(value)
        except msgspec.ValidationError as exc:
            return self.diagnose(value, str(exc))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return Rejection("malformed_json", str(exc)[:200])
        return self.check(event, now_ms)

    def convert(self, obj: dict[str, Any], *, now_ms: int) -> E | Rejection:
        """The same verdict as :meth:`decode` for an already parsed object (the collector's
        path). Through JSON on purpose: the typed decoder is 15x faster than
        ``msgspec.convert`` on a tagged union (2 us against 29 us per event)."""
        return self.decode(_ENCODE(obj), now_ms=now_ms)

    def check(self, event: E, now_ms: int) -> E | Rejection:
        """The rules beyond the types: the clock, the site allowlist, no personal ids."""
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
        for name in ("visitor_id", "session_id", "customer_id"):
            given = getattr(event, name, None)
            if given is not None and (kind := personal_id(given)) is not None:
                # The detail never repeats the value: it is what must not be kept.
                return Rejection(
                    "pii_id",
                    f"{name} is an {kind}; send a pseudonymous id (a keyed hash) instead",
                    f"$.{name}",
                )
        return event

    def diagnose(self, value: bytes, message: str) -> Rejection:
        """The reason a value fails, independent of its field order: JSON, then an object,
        then a known type, then the first failing field in the contract's order.
        ``message`` is the typed decoder's complaint."""
        if message.startswith("Expected `object`") and " - at `" not in message:
            return Rejection("not_an_object", message)  # the top level: no order involved
        try:
            raw = _ANY.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            if out_of_range(exc):
                return classify(message)  # JSON, with a number no type can hold
            return Rejection("malformed_json", str(exc)[:200])
        if not isinstance(raw, dict):
            return Rejection("not_an_object", f"Expected `object`, got `{type(raw).__name__}`")
        tag = raw.get(self._tag)
        if tag is None and self._tag not in raw:
            return Rejection(
                "missing_field", f"Object missing required field `{self._tag}`", f"$.{self._tag}"
            )
        fields = self._fields.get(tag) if isinstance(tag, str) else None
        if fields is None:
            return Rejection(
                "unknown_type", f"Invalid value {tag!r} - at `$.{self._tag}`", f"$.{self._tag}"
            )
        ordered = {name: raw[name] for name in (self._tag, *fields) if name in raw}
        ordered.update(raw)
        try:
            msgspec.convert(ordered, self.event_type)
        except msgspec.ValidationError as exc:
            return classify(str(exc))
        return Rejection("invalid_value", "the event does not match the contract")

    def decode_batch(
        self, values: list[bytes | None], *, clock_ms: Callable[[], int]
    ) -> list[E | Rejection]:
        """:meth:`decode` for a batch, the clock read once. The same verdicts, with the
        common case inline: a value of normal size decodes, and only an event that might
        break a rule (its time ahead, a site allowlist, an id that could be an e-mail or IP
        address) goes through :meth:`check`."""
        now_ms = clock_ms()
        decode = self._decoder.decode
        limit = self.max_event_bytes
        latest = now_ms + self.max_future_skew_ms
        checked = bool(self.site_allowlist)
        out: list[E | Rejection] = []
        append = out.append
        for value in values:
            if value is None or len(value) > limit or value.startswith(_BOM):
                append(self.decode(value, now_ms=now_ms))
                continue
            try:
                event = decode(value)
            except msgspec.ValidationError as exc:
                append(self.diagnose(value, str(exc)))
                continue
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
                append(Rejection("malformed_json", str(exc)[:200]))
                continue
            if checked or getattr(event, "ts") > latest or _suspect(event):  # noqa: B009
                append(self.check(event, now_ms))
            else:
                append(event)
        return out
