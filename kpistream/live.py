"""The demo's live KPI table, read straight from the Redis window store."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from sinks import fields as F
from sinks.window_store import StoreSnapshot


def _pct(numerator: int, denominator: int) -> str:
    return f"{100 * numerator / denominator:5.1f}%" if denominator else "    -"


def kpi_table(snapshot: StoreSnapshot) -> Table:
    table = Table(title="kpistream: live KPIs (event time)", expand=False)
    table.add_column("window")
    table.add_column("site")
    table.add_column("sessions", justify="right")
    table.add_column("bounce rate", justify="right")
    table.add_column("impr.", justify="right")
    table.add_column("clicks", justify="right")
    table.add_column("CTR", justify="right")
    for window, counter in snapshot.windows.items():
        per_site: dict[str, Counter[str]] = {}
        for name, value in counter.items():
            kind, site, *_ = F.split(name)
            per_site.setdefault(site, Counter())[kind] += value
        for site in sorted(per_site):
            c = per_site[site]
            table.add_row(
                window,
                site,
                str(c[F.SESSIONS]),
                _pct(c[F.BOUNCES], c[F.SESSIONS]),
                str(c[F.IMPRESSIONS]),
                str(c[F.CLICKS]),
                _pct(c[F.CLICKS], c[F.IMPRESSIONS]),
            )
    t = snapshot.totals
    rejected = sum(v for k, v in t.items() if k.startswith(F.REJECTED))
    table.caption = (
        f"events processed {t[F.PROCESSED]:,}  rejected {rejected:,}  "
        f"late {t[F.LATE]:,}  partitions {snapshot.partitions}"
    )
    return table
