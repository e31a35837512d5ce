"""One retry policy for every wait on something that is not there yet: the first retry soon,
then twice as long each time up to a cap, so a long outage costs one log line per cap
interval, not a busy loop. Used for Redis outages while claiming, a broker that went away, a
batch that failed, and the worker's start-up wait for its servers; a worker's waits end early
when it stops (:func:`pause`)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

#: Redis or Kafka away: the first retry after 0.2 s, then doubling up to 10 s.
FIRST_S = 0.2
MAX_S = 10.0


@dataclass(slots=True)
class Backoff:
    first_s: float = FIRST_S
    max_s: float = MAX_S
    delay_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.delay_s = self.first_s

    def next(self) -> float:
        """The delay to wait now; the next one doubles, up to ``max_s``."""
        delay = self.delay_s
        self.delay_s = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """It worked: the next failure waits ``first_s`` again."""
        self.delay_s = self.first_s


async def pause(delay_s: float, stopping: asyncio.Event) -> bool:
    """Wait ``delay_s``, or less if ``stopping`` is set meanwhile (a worker that stops never
    waits out a retry); True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), delay_s)
    return stopping.is_set()
