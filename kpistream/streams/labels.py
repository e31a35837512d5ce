"""Bounded label values (DESIGN invariant 4).

A dimension (site, campaign) either has an allowlist, and every other value folds into
``other``, or a budget of ``max_values`` distinct values shared by all workers (the admitted
set lives in Redis, each value scored with when it was last seen). A value gets a label while
there is room; the rest fold into ``other``. Budgets are not first come forever: a value
unseen for the idle time (``KPISTREAM_LABEL_IDLE_DAYS``) gives its slot up, so a site launched
later gets a label once an old one has gone quiet. Every worker refreshes the values it uses,
retries the ones it folded, and reloads the admitted set every :data:`SYNC_S` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

OTHER = "other"
NONE = "none"
#: A label value is for humans on a dashboard; longer values are cut, not rejected.
MAX_LABEL_CHARS = 100
#: How often a worker refreshes the values it uses and reloads a budget: last-seen times are
#: days apart in effect, so twice a minute costs nothing and lets a freed slot go in 30 s.
SYNC_S = 30.0
#: Folded values remembered for the next retry, per budget: a flood of 100,000 campaign
#: names must not become 100,000 strings in memory.
MAX_PENDING = 1024
#: Folded values this worker has already had counted as refused (the store's HyperLogLog
#: counts each distinct value once, however often it is sent): remembered so that a value
#: seen in every batch is not sent again each time; forgotten all at once when full.
MAX_FOLDED_SEEN = 10 * MAX_PENDING


#: The fold labels are reserved: a raw value spelled like one is shown with this suffix, so
#: a site or campaign named ``other`` is never mixed up with the folded rest.
RESERVED_SUFFIX = "_"


def sanitize(value: str) -> str:
    """Drop control characters (our field separator is one), cap the length, and keep the
    fold labels for folding (``other`` -> ``other_``)."""
    if not value.isprintable() or len(value) > MAX_LABEL_CHARS:
        value = "".join(ch for ch in value if ch.isprintable())[:MAX_LABEL_CHARS]
        if not value:
            return NONE  # nothing printable: as good as absent
    if value in (OTHER, NONE):
        return value + RESERVED_SUFFIX
    return value


class LabelBudget:
    """Maps raw dimension values to bounded label values for one dimension."""

    def __init__(
        self,
        *,
        allowlist: Iterable[str] = (),
        max_values: int = 50,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowlist = frozenset(allowlist)
        self.max_values = max_values
        self.admitted: set[str] = set()
        self.full = False
        #: values that lost their slot (unseen too long): they fold until admitted again
        self.retired: set[str] = set()
        #: admitted values used, and values folded, since the last sync
        self.used: set[str] = set()
        self.pending: set[str] = set()
        self.synced_at_s = monotonic()
        self._monotonic = monotonic
        self._cache: dict[str, str] = {}
        #: folded values already sent to the store (counted as refused there)
        self._folded_seen: set[str] = set()

    def unknown(self, values: Iterable[str]) -> set[str]:
        """Sanitized values whose fate is not decided yet (need a Redis admission). Notes
        the admitted values in use (to refresh) and the folded ones (to retry). With the
        budget full, values not seen folded before are still asked: the store admits them
        if a slot has come free, and otherwise counts each distinct one as refused (only
        the retries of :data:`MAX_PENDING` values waited for the sync, and the refusals
        beyond went uncounted)."""
        if self.allowlist:
            return set()
        clean = {sanitize(v) for v in values}
        new = clean - self.admitted
        self.used |= clean - new
        if not self.full:
            return new
        for value in new:
            if len(self.pending) >= MAX_PENDING:
                break
            self.pending.add(value)
        fresh = new - self._folded_seen
        if len(self._folded_seen) + len(fresh) > MAX_FOLDED_SEEN:
            self._folded_seen.clear()
        self._folded_seen |= fresh
        return fresh

    def due(self) -> bool:
        """Time to refresh and reload the budget (never for an allowlist)."""
        return not self.allowlist and self._monotonic() - self.synced_at_s >= SYNC_S

    def sync_values(self) -> set[str]:
        """What to send at a sync: admitted values in use (refreshed), folded ones (retried)."""
        return self.used | self.pending

    def learn(self, admitted: Iterable[str], *, full: bool, replace: bool = False) -> None:
        """Record an admission's result; ``replace``: it is the whole admitted set (a sync),
        so values missing from it lost their slot."""
        members = set(admitted)
        was_full = self.full
        if replace:
            self.retired |= self.admitted - members
            changed = members != self.admitted
            self.admitted = members
            self.used.clear()
            self.pending.clear()
            self.synced_at_s = self._monotonic()
        else:
            changed = not members <= self.admitted
            self.admitted |= members
        self.retired -= self.admitted
        self.full = full or len(self.admitted) >= self.max_values
        if changed or self.full != was_full:
            self._cache.clear()  # a refusal learned changes no label: the cache stays

    def label(self, value: str | None) -> str:
        if value is None:
            return NONE
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        clean = sanitize(value)
        if self.allowlist:
            result = clean if clean in self.allowlist else OTHER
        elif clean in self.admitted:
            result = clean
        elif self.full or clean in self.retired:
            result = OTHER
        else:
            raise KeyError(f"label {clean!r} not decided: the enrich step admits a batch's values")
        if len(self._cache) < 4 * self.max_values + 1024:
            self._cache[value] = result
        return result


class Dimensions:
    """The bounded dimensions of the clickstream, each with its own budget."""

    NAMES = ("site", "campaign", "landing_page", "channel", "currency")

    def __init__(
        self,
        *,
        sites: Iterable[str] = (),
        campaigns: Iterable[str] = (),
        max_sites: int = 50,
        max_campaigns: int = 50,
        max_landing_pages: int = 100,
        max_channels: int = 30,
        max_currencies: int = 20,
    ) -> None:
        self.site = LabelBudget(allowlist=sites, max_values=max_sites)
        self.campaign = LabelBudget(allowlist=campaigns, max_values=max_campaigns)
        self.landing_page = LabelBudget(max_values=max_landing_pages)
        self.channel = LabelBudget(max_values=max_channels)
        self.currency = LabelBudget(max_values=max_currencies)

    def budget(self, name: str) -> LabelBudget:
        budget: LabelBudget = getattr(self, name)
        return budget
