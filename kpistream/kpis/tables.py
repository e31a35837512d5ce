"""Markdown tables generated from the catalogue: the README's metric table and the catalogue
tables of ``docs/kpis.md`` (``make docs`` rewrites them; a test keeps them current)."""

from __future__ import annotations

import textwrap

from kpistream.kpis import catalogue as K


def metric_table() -> str:
    """Every KPI series the exporter serves: metric, type, labels, meaning."""
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for c in K.COUNTS:
        labels = ", ".join(c.labels)
        if c.window:
            rows.append(f"| `{c.metric}` | gauge | {labels}, window | {c.help}, in the window |")
        if c.total:
            rows.append(f"| `{c.metric}_total` | counter | {labels} | {c.help} |")
    for q in K.QUOTIENTS:
        rows.append(f"| `{q.metric}` | gauge | {', '.join(q.labels)}, window | {q.help} |")
    for f in K.FAMILIES:
        labels = ", ".join((*f.labels, "window") if f.windowed else f.labels)
        rows.append(f"| `{f.metric}` | {f.type} | {labels} | {f.help} |")
    return "\n".join(rows)


def _terms(parts: tuple[K.Count | K.Level, ...], minus: tuple[K.Count, ...] = ()) -> str:
    text = " + ".join(p.stem.replace("_", " ") for p in parts)
    text += "".join(f" - {p.stem.replace('_', ' ')}" for p in minus)
    return f"({text})" if len(parts) + len(minus) > 1 else text


def formula(q: K.Quotient) -> str:
    """The quotient's formula in words, from its declaration."""
    den = _terms(q.denominator)
    if q.complement is not None:
        text = f"{_terms(q.numerator)} ÷ {den}; over counters: 1 - "
        text += f"{q.complement.stem.replace('_', ' ')} ÷ {den}"
    else:
        text = f"{_terms(q.numerator, q.subtract)} ÷ {den}"
    return f"{q.factor:g} x {text}" if q.factor != 1 else text


def quotient_table() -> str:
    """Every ratio, mean and score: goal name, metric, formula, unit and range, labels."""
    rows = [
        "| KPI (`kpi:` in a goal) | metric | formula | unit, range | labels | tier |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for q in K.QUOTIENTS:
        high = "∞" if q.high is None else f"{q.high:g}"
        rows.append(
            f"| `{q.stem}` | `{q.metric}` | {formula(q)} | {q.unit}, {q.low:g}..{high} "
            f"| {', '.join(q.labels)} | {q.tier.value.lower()} |"
        )
    return "\n".join(rows)


def count_table() -> str:
    """Every counter: name, labels, where in time it is attributed, meaning."""
    rows = [
        "| count | metric | labels | attributed at | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in K.COUNTS:
        series = [f"`{c.metric}`"] if c.window else []
        series += [f"`{c.metric}_total`"] if c.total else []
        at = c.at.value + (f" (totals: {c.total_at.value})" if c.total_at else "")
        at += "; day buckets, long window only" if c.long_window else ""
        rows.append(
            f"| {c.stem.replace('_', ' ')} | {', '.join(series) or 'internal'} "
            f"| {', '.join(c.labels)} | {at} | {c.help} |"
        )
    return "\n".join(rows)


def goal_kpis() -> str:
    """The README's list of the KPIs a goal can name."""
    names = ", ".join(f"`{q.stem}`" for q in K.QUOTIENTS)
    return "KPIs a goal can name:\n" + "\n".join(textwrap.wrap(names + ".", 95))
