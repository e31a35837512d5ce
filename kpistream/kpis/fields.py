"""Names of the counter fields inside bucket and totals hashes.

A field is a count's code (:mod:`kpistream.kpis.catalogue`) followed by its label values,
joined by the ASCII unit separator; label values never contain it because
:func:`kpistream.streams.labels.sanitize` strips control characters.
"""

from __future__ import annotations

SEP = "\x1f"


def field(code: str, *labels: str) -> str:
    return SEP.join((code, *labels))


def split(name: str) -> list[str]:
    return name.split(SEP)
