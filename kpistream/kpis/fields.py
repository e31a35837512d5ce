"""Names of the counter fields inside bucket and totals hashes.

A field is a count's code (:mod:`kpistream.kpis.catalogue`) followed by its label values,
joined by the ASCII unit separator; label values never contain it because
:func:`kpistream.streams.labels.sanitize` strips control characters.
"""

from __future__ import annotations

from collections.abc import Iterable

SEP = "\x1f"


def field(code: str, *labels: str) -> str:
    return SEP.join((code, *labels))


def split(name: str) -> list[str]:
    return name.split(SEP)


class SiteFields:
    """The field names of one site label, built once: the stream names the same few
    hundred fields (label values are bounded by their budgets) millions of times.
    ``one[code]`` names a count labelled by the site alone; :meth:`of` the others."""

    __slots__ = ("_more", "one", "site")

    def __init__(self, site: str, codes: Iterable[str]) -> None:
        self.site = site
        self.one = {code: field(code, site) for code in codes}
        self._more: dict[tuple[str, ...], str] = {}

    def of(self, code: str, *labels: str) -> str:
        """``field(code, site, *labels)``, cached."""
        key = (code, *labels)
        name = self._more.get(key)
        if name is None:
            name = self._more[key] = field(code, self.site, *labels)
        return name
