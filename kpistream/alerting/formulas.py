"""The KPIs a goal can name, as PromQL over the exporter's ``_total`` counters, generated from
the catalogue's quotients (:mod:`kpistream.kpis.catalogue`).

Each KPI is a formula over *parts*: a counter's increase over the alert window (or, for
followers, a gauge), summed to the goal's scope. Ratios are always a ratio of summed
increases, never an average of ratios (docs/kpis.md). Formulas use ``{part}`` for a part's
recorded series and ``{on_part}`` for the vector-matching clause a part needs when it has
fewer labels than the scope (sessions have no ``goal`` label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kpistream.kpis import catalogue as K


@dataclass(frozen=True, slots=True)
class Part:
    metric: str  # a counter (its increase over the window) or, with gauge=True, a gauge
    labels: tuple[str, ...]
    gauge: bool = False


@dataclass(frozen=True, slots=True)
class GoalKpi:
    name: str
    title: str  # for people: "bounce rate"
    scope: tuple[str, ...]  # labels a goal's scope may name, in this order
    required: tuple[str, ...]  # labels it must name
    parts: dict[str, Part]
    value: str  # PromQL formula over the parts
    volume: str  # PromQL formula: what min_volume counts
    volume_unit: str  # "sessions"
    low: float
    high: float | None  # None: unbounded above
    kind: Literal["ratio", "mean", "score"]
    gauge: str  # the exporter's event-time window gauge of the same KPI
    unit: str = "percentunit"  # Grafana unit
    volume_name: str | None = None  # a name for the volume series when it is a formula

    @property
    def percent(self) -> bool:
        return self.unit == "percentunit"


def _part(c: K.Count | K.Level) -> Part:
    if isinstance(c, K.Level):
        return Part(c.metric, c.labels, gauge=True)
    return Part(f"{c.metric}_total", c.labels)


def _sum(parts: tuple[K.Count | K.Level, ...], *, minus: tuple[K.Count, ...] = ()) -> str:
    """``{a} + {b} - {c}``, in parentheses when it has more than one term."""
    text = " + ".join(f"{{{p.stem}}}" for p in parts)
    text += "".join(f" - {{{p.stem}}}" for p in minus)
    return f"({text})" if len(parts) + len(minus) > 1 else text


def goal_kpi(q: K.Quotient) -> GoalKpi:
    """The goal KPI of a quotient: its value and volume as PromQL templates."""
    den = q.denominator
    on = f"{{on_{den[0].stem}}} " if q.extra_labels and len(den) == 1 else ""
    volume = _sum(den)
    if q.complement is not None:
        value = f"clamp_min(1 - {{{q.complement.stem}}} / {on}{volume}, 0)"
    else:
        value = f"{_sum(q.numerator, minus=q.subtract)} / {on}{volume}"
    if q.factor != 1:
        value = f"{q.factor:g} * {value}"
    parts = {p.stem: _part(p) for p in (*q.numerator, *q.subtract, *den)}
    if q.complement is not None:
        parts = {**{d.stem: _part(d) for d in den}, q.complement.stem: _part(q.complement)}
    return GoalKpi(
        q.stem,
        q.title,
        q.labels,
        q.required,
        parts,
        value=value,
        volume=volume,
        volume_unit=q.volume_unit,
        low=q.low,
        high=q.high,
        kind=q.kind,
        gauge=q.metric,
        unit=K.GRAFANA_UNIT[q.unit],
        volume_name=f"kpi_{q.volume_unit.replace(' ', '_')}" if len(den) > 1 else None,
    )


CATALOGUE: dict[str, GoalKpi] = {q.stem: goal_kpi(q) for q in K.QUOTIENTS}
