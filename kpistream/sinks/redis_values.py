"""Values as Redis returns them (bytes or text, with or without ``decode_responses``)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def pfcount(pipe: Any, *keys: str) -> None:
    """PFCOUNT into a pipeline. redis-py's cluster pipeline refuses ``pfcount`` (it could
    name keys of several slots); these keys always share one slot (a partition's, or the
    labels'), which the cluster routes as any single-slot command."""
    pipe.execute_command("PFCOUNT", *keys)


def as_int(value: bytes | str | None) -> int | None:
    return None if value is None or value in (b"", "") else int(value)


def as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def add_counts(counter: Counter[str], mapping: dict[Any, Any]) -> None:
    for name, value in mapping.items():
        counter[as_text(name)] += int(value)
