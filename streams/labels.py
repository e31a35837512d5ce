"""Bounded label values (DESIGN invariant 4).

A dimension (site, campaign) either has an allowlist, and every other value folds into
``other``, or a budget of ``max_values`` distinct values admitted first come, first served,
across all workers (the admitted set lives in Redis), after which new values fold into
``other``. Admission is monotone, so a value's label never changes once decided.
"""

from __future__ import annotations

from collections.abc import Iterable

OTHER = "other"
NONE = "none"
#: A label value is for humans on a dashboard; longer values are cut, not rejected.
MAX_LABEL_CHARS = 100


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

    def __init__(self, *, allowlist: Iterable[str] = (), max_values: int = 50) -> None:
        self.allowlist = frozenset(allowlist)
        self.max_values = max_values
        self.admitted: set[str] = set()
        self.full = False
        self._cache: dict[str, str] = {}

    def unknown(self, values: Iterable[str]) -> set[str]:
        """Sanitized values whose fate is not decided yet (need a Redis admission)."""
        if self.allowlist or self.full:
            return set()
        return {v for v in map(sanitize, values) if v not in self.admitted}

    def learn(self, admitted: Iterable[str], *, full: bool) -> None:
        self.admitted.update(admitted)
        self.full = full or len(self.admitted) >= self.max_values
        self._cache.clear()

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
        elif self.full:
            result = OTHER
        else:
            raise KeyError(f"label {clean!r} was not admitted; call unknown()/learn() first")
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
