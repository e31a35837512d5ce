"""Dead-letter records: the original payload, redacted, plus a machine-readable reason.

A dead-letter value is JSON: ``reason`` (one of :data:`kpistream.schemas.decoder.REASONS`),
``detail``, ``field`` (JSON path or null), the source ``topic``/``partition``/``offset``, and the
payload as ``payload`` (text) when it was valid UTF-8, else ``payload_base64``. Payloads above
``max_payload_bytes`` are truncated (``payload_truncated: true``) so a 5 MB poison message does
not become a 5 MB dead letter; the source offset still finds the original.

Dead letters are kept for the dead-letter topic's retention and read by people debugging a
tracker, so personal data is removed before they are written (privacy by construction):

- a JSON payload loses the value of every key whose name has a word of ``redact_keys``
  (default ``ip``, ``email``, ``name``, ``phone``, ``address``: ``client_ip``, ``userEmail``,
  ``first_name`` ...), and, with ``redact_values``, every e-mail address, IP address or phone
  number inside any string, replaced by ``[redacted]``;
- a text payload that is not JSON gets the same value redaction;
- a binary payload in which an e-mail or IP address can be seen is dropped
  (``payload_redacted: true``). ``redacted`` counts what was removed.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import msgspec

from kpistream.config.settings import Settings
from kpistream.schemas import personal
from kpistream.schemas.decoder import Rejection

REDACTED = "[redacted]"
_encode = msgspec.json.Encoder().encode
_any = msgspec.json.Decoder()
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORDS = re.compile(r"[^a-z0-9]+")


class Redactor:
    """Builds redacted dead letters (see the module docstring)."""

    def __init__(
        self,
        *,
        keys: Iterable[str] = ("ip", "email", "name", "phone", "address"),
        values: bool = True,
        max_payload_bytes: int = 64 * 1024,
    ) -> None:
        self.keys = frozenset(k.strip().lower() for k in keys if k.strip())
        self.values = values
        self.max_payload_bytes = max_payload_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        return cls(
            keys=settings.deadletter_redact_keys.split(","),
            values=settings.deadletter_redact_values,
        )

    def dead_letter(
        self,
        rejection: Rejection,
        *,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
    ) -> bytes:
        raw = value or b""
        truncated = len(raw) > self.max_payload_bytes
        raw = raw[: self.max_payload_bytes]
        record: dict[str, Any] = {
            "reason": rejection.reason,
            "detail": rejection.detail,
            "field": rejection.field,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "payload_truncated": truncated,
        }
        record.update(self.payload(raw))
        return _encode(record)

    def payload(self, raw: bytes) -> dict[str, Any]:
        """The payload fields of a dead letter, with personal data removed."""
        self._count = 0
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            seen = raw.decode("latin-1")
            if self.values and self._text(seen) != seen:
                return {"payload_redacted": True, "redacted": self._count}
            return {"payload_base64": base64.b64encode(raw).decode("ascii"), "redacted": 0}
        try:
            parsed = _any.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return {"payload": self._text(text), "redacted": self._count}
        cleaned = self._json(parsed, depth=0)
        if not self._count:
            return {"payload": text, "redacted": 0}  # unchanged: keep the exact bytes
        return {"payload": _encode(cleaned).decode(), "redacted": self._count}

    def _json(self, value: Any, *, depth: int) -> Any:
        if depth > 64:  # deeper JSON is poison anyway; do not recurse without bound
            return value
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if self._personal_key(key):
                    self._count += 1
                    out[key] = REDACTED
                else:
                    out[key] = self._json(item, depth=depth + 1)
            return out
        if isinstance(value, list):
            return [self._json(item, depth=depth + 1) for item in value]
        if isinstance(value, str):
            return self._text(value)
        return value

    def _personal_key(self, key: str) -> bool:
        words = _WORDS.split(_CAMEL.sub(r"\1_\2", key).lower())
        return any(word in self.keys for word in words)

    def _text(self, text: str) -> str:
        if not self.values:
            return text
        text, count = personal.replace(text, lambda _: REDACTED)
        self._count += count
        return text
