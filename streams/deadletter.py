"""Dead-letter records: the original payload plus a machine-readable reason.

A dead-letter value is JSON: ``reason`` (one of :data:`schemas.decoder.REASONS`), ``detail``,
``field`` (JSON path or null), the source ``topic``/``partition``/``offset``, and the original
payload as ``payload`` (text) when it was valid UTF-8, else ``payload_base64``. Payloads above
``max_payload_bytes`` are truncated (``payload_truncated: true``) so a 5 MB poison message does
not become a 5 MB dead letter; the source offset still finds the original.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from schemas.decoder import Rejection

_encode = msgspec.json.Encoder().encode


def dead_letter(
    rejection: Rejection,
    *,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    max_payload_bytes: int = 64 * 1024,
) -> bytes:
    raw = value or b""
    truncated = len(raw) > max_payload_bytes
    raw = raw[:max_payload_bytes]
    record: dict[str, Any] = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "field": rejection.field,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload_truncated": truncated,
    }
    try:
        record["payload"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_base64"] = base64.b64encode(raw).decode("ascii")
    return _encode(record)
