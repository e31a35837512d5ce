"""Dead letters keep no personal data (hand-written payloads)."""

from __future__ import annotations

import base64
import json

from kpistream.schemas.decoder import Rejection
from kpistream.streams.deadletter import REDACTED, Redactor

REJ = Rejection("missing_field", "Object missing required field `site`", "$.site")


def letter(payload: bytes, redactor: Redactor | None = None) -> dict[str, object]:
    r = redactor or Redactor()
    raw = r.dead_letter(REJ, value=payload, topic="clicks", partition=2, offset=7)
    out: dict[str, object] = json.loads(raw)
    return out


def test_personal_keys_and_values_are_redacted_in_json() -> None:
    payload = {
        "type": "page_view",
        "ip": "203.0.113.9",
        "client_ip": "198.51.100.1",
        "userEmail": "jane@example.com",
        "first_name": "Jane",
        "phone": "+44 20 7946 0958",
        "address": {"street": "1 Main St"},
        "props": {"note": "write to jane.doe@example.org from 2001:db8::1 now."},
        "path": "/pricing",
        "ts": 1763800000000,
    }
    got = letter(json.dumps(payload).encode())
    body = json.loads(str(got["payload"]))
    for key in ("ip", "client_ip", "userEmail", "first_name", "phone", "address"):
        assert body[key] == REDACTED, key
    assert body["props"]["note"] == f"write to {REDACTED} from {REDACTED} now."
    assert body["path"] == "/pricing" and body["ts"] == 1763800000000
    assert got["redacted"] == 8  # six keys, two values in the note
    text = json.dumps(got)
    for secret in ("203.0.113.9", "198.51.100.1", "jane@", "Jane", "7946", "Main St", "2001:db8"):
        assert secret not in text, secret
    assert got["reason"] == "missing_field" and got["offset"] == 7


def test_clean_payloads_are_kept_byte_for_byte_and_versions_are_not_ips() -> None:
    raw = b'{"type":"page_view", "path":"/a", "ua":"Chrome 120.0.6099.109", "t":"12:30:45"}'
    got = letter(raw)
    assert got["payload"] == raw.decode() and got["redacted"] == 0


def test_plain_text_and_binary_payloads() -> None:
    got = letter(b"hello from 10.1.2.3, mail bob@example.com.")
    assert got["payload"] == f"hello from {REDACTED}, mail {REDACTED}."
    binary = b"\xff\xfe bob@example.com \x00"
    dropped = letter(binary)
    assert dropped["payload_redacted"] is True and "payload_base64" not in dropped
    kept = letter(b"\xff\xfe\x00\x01")
    assert base64.b64decode(str(kept["payload_base64"])) == b"\xff\xfe\x00\x01"


def test_redaction_is_configurable() -> None:
    only_keys = Redactor(keys=["secret"], values=False)
    got = letter(b'{"secret":"s","email":"a@b.example","ip":"10.0.0.1"}', only_keys)
    body = json.loads(str(got["payload"]))
    assert body == {"secret": REDACTED, "email": "a@b.example", "ip": "10.0.0.1"}
