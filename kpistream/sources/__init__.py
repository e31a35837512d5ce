"""Sources: events that come from outside Kafka, as lines of the event contract -- a file of
JSON lines (:mod:`.files`), the simulator (:mod:`.simulator`) and the demo's live traffic
(:mod:`.demo`); API pollers and importers join them here. Whatever a source yields,
:func:`kpistream.produce.produce` sends to the streams of :mod:`kpistream.streams.registry`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol


class Source(Protocol):
    """Yields event lines (JSON of the contract; a line that is not is still sent, and the
    workers dead-letter it with its reason). Synchronous for what is at hand (a file), async
    for what arrives over time (a poller, live traffic); finite or not."""

    def lines(self) -> Iterable[bytes] | AsyncIterator[bytes]: ...


def encode(event: dict[str, Any]) -> bytes:
    """One event as a line of compact JSON."""
    return json.dumps(event, separators=(",", ":")).encode()
