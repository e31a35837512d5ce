"""Give memory back to the operating system after a flood of sessions or visitors has gone.

CPython frees objects at once, but its allocator returns a memory arena only when every
object in it is gone, and glibc keeps freed pages for reuse: a worker that held a million
sessions kept its peak RSS long after they ended, pinned by the few objects that outlived
the flood (cached visitors, later sessions) scattered over its arenas. So when the state a
worker holds (open sessions, cached visitors, accounts) has shrunk by a lot since its peak,
the worker re-creates what is left as fresh objects (``compact``: a msgpack round trip,
milliseconds for tens of thousands), which empties the old arenas, and then asks glibc to
return free pages (``malloc_trim``; elsewhere a no-op).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

#: Only a large drop is worth a trim (it walks the heap: milliseconds for a big one).
MIN_DROP = 20_000
#: And not more often than this, whatever the traffic does.
MIN_INTERVAL_S = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[assignment]
    except (OSError, AttributeError):
        return None
    return trim


class Reclaimer:
    """Watches how many state objects a worker holds and trims the heap after big drops."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._trim = _malloc_trim()
        self._monotonic = monotonic
        self.peak = 0
        self.last_s = 0.0
        self.trims = 0

    def observe(self, held: int) -> bool:
        """Note the current count; True when the drop since the peak calls for a compaction
        and trim (the caller compacts, then calls :meth:`trim`)."""
        self.peak = max(self.peak, held)
        now = self._monotonic()
        if self.peak - held < MIN_DROP or now - self.last_s < MIN_INTERVAL_S:
            return False
        self.peak = held
        self.last_s = now
        return True

    def trim(self) -> None:
        if self._trim is not None:
            self._trim(0)
        self.trims += 1
