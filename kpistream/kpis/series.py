"""Counter fields read back by name: the only place that parses a field name
(:mod:`kpistream.kpis.fields`). A field's code finds its count in the catalogue, whose
declared labels name the values that follow the code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kpistream.kpis.catalogue import STORED, Count, Level
from kpistream.kpis.fields import split

BY_CODE: dict[str, Count | Level] = {kind.code: kind for kind in STORED}


@dataclass(frozen=True, slots=True)
class Series:
    """One stored field: its count (or level) and its label values by label name."""

    kind: Count | Level
    labels: Mapping[str, str]


def parse(name: str) -> Series | None:
    """The series a field name stores; None for a name that is not a KPI field of the
    catalogue (a health counter, or a label count that does not match the declaration)."""
    code, *values = split(name)
    kind = BY_CODE.get(code)
    if kind is None or len(values) != len(kind.labels):
        return None
    return Series(kind, dict(zip(kind.labels, values, strict=True)))


#: A counter's values per count, each keyed by its label values in declared order.
Grouped = dict[Count | Level, dict[tuple[str, ...], int]]


def group(counter: Mapping[str, int]) -> Grouped:
    """Every KPI field of ``counter`` under its count (each name parsed once)."""
    out: Grouped = {}
    for name, value in counter.items():
        code, *values = split(name)
        kind = BY_CODE.get(code)
        if kind is not None and len(values) == len(kind.labels):
            out.setdefault(kind, {})[tuple(values)] = value
    return out


def by_labels(counter: Mapping[str, int], kind: Count | Level) -> dict[tuple[str, ...], int]:
    """The values of one count in ``counter``, keyed by its label values in declared order."""
    return group(counter).get(kind, {})


def label_values(counter: Mapping[str, int], kind: Count | Level, label: str) -> set[str]:
    """The values one label of a count takes in ``counter`` (e.g. the sites with sessions)."""
    found: set[str] = set()
    for name in counter:
        series = parse(name)
        if series is not None and series.kind is kind:
            found.add(series.labels[label])
    return found
