"""The Redis reader of the read model (:mod:`kpistream.contract.read_model`): the exporter's
scrape, the live tables and `kpistream labels` (the key layout: :mod:`.window_store`)."""

from __future__ import annotations

from collections import Counter

from kpistream.config.connections import SyncRedis
from kpistream.contract.keys import PartitionKeys, label_keys
from kpistream.contract.read_model import LabelUse, PartitionStatus, StoreSnapshot
from kpistream.kpis import catalogue as K
from kpistream.kpis.series import label_values
from kpistream.kpis.windows import day_of, window_cover, window_minutes
from kpistream.sinks.redis_values import add_counts, as_int, as_text, pfcount


class WindowReader:
    """Synchronous reader used by the exporter at scrape time."""

    def __init__(self, client: SyncRedis, *, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def label_use(self, budgets: dict[str, int]) -> dict[str, LabelUse]:
        """Each budgeted dimension's size, admitted values and refused values."""
        pipe = self.client.pipeline(transaction=False)
        names = list(budgets)
        for name in names:
            members, refused = label_keys(self.prefix, name)
            pipe.zcard(members)
            pfcount(pipe, refused)
        replies = pipe.execute()
        return {
            name: LabelUse(budgets[name], int(replies[2 * i]), int(replies[2 * i + 1]))
            for i, name in enumerate(names)
        }

    def snapshot(
        self,
        windows_min: dict[str, int],
        long_windows: dict[str, int] | None = None,
        label_budgets: dict[str, int] | None = None,
    ) -> StoreSnapshot:
        """Totals, each rolling window (minute precision) and each long window (day
        precision, day buckets only) ending at the newest watermark of any partition."""
        tags = sorted(as_text(t) for t in self.client.smembers(f"{self.prefix}:partitions"))
        parts = [PartitionKeys.from_tag(self.prefix, t) for t in tags]
        pipe = self.client.pipeline(transaction=False)
        for p in parts:
            pipe.hgetall(p.key("totals"))
            pipe.hmget(p.key("meta"), "watermark", "offset")
            pipe.hgetall(p.key("gauges"))
            pipe.hmget(p.key("live"), "end", "stalled", "at_ms")
            pipe.hgetall(p.key("health"))
        # Two keys in two hash slots: one GET each (a cluster refuses such an MGET).
        pipe.get(f"{self.prefix}:fenced_writes")
        pipe.get(f"{self.prefix}:state_resets")
        *replies, fenced, resets = pipe.execute()
        totals: Counter[str] = Counter()
        gauges: Counter[str] = Counter()
        health: Counter[str] = Counter()
        watermark: int | None = None
        status: dict[str, PartitionStatus] = {}
        for i, p in enumerate(parts):
            add_counts(totals, replies[5 * i])
            add_counts(gauges, replies[5 * i + 2])
            add_counts(health, replies[5 * i + 4])
            wm, offset = replies[5 * i + 1]
            end, stalled, reported = replies[5 * i + 3]
            status[p.tag] = PartitionStatus(
                offset=as_int(offset),
                watermark_ms=as_int(wm),
                end_offset=as_int(end),
                stalled=stalled is not None and int(stalled) == 1,
                reported_ms=as_int(reported),
            )
            if wm is not None and (watermark is None or int(wm) > watermark):
                watermark = int(wm)
        labels = self.label_use(label_budgets or {})

        def made() -> StoreSnapshot:
            return StoreSnapshot(
                watermark,
                totals,
                windows,
                len(parts),
                uniques,
                gauges,
                fenced_writes=int(fenced or 0),
                state_resets=int(resets or 0),
                partition_status=status,
                labels=labels,
                health=health,
                long_windows=frozenset(long_windows or ()),
            )

        long_windows = long_windows or {}
        windows: dict[str, Counter[str]] = {
            name: Counter() for name in [*windows_min, *long_windows]
        }
        uniques: dict[str, Counter[str]] = {name: Counter() for name in windows_min}
        if watermark is None or not parts:
            return made()
        covers = {
            name: window_cover(*window_minutes(minutes, watermark))
            for name, minutes in windows_min.items()
        }
        last_day = day_of(watermark)
        day_ranges = {
            name: range(last_day - days + 1, last_day + 1) for name, days in long_windows.items()
        }
        sites = sorted(label_values(totals, K.SESSIONS, "site"))
        wanted: dict[str, int] = {}
        for p in parts:
            for minutes, hours in covers.values():
                for m in minutes:
                    wanted.setdefault(p.minute(m), len(wanted))
                for h in hours:
                    wanted.setdefault(p.hour(h), len(wanted))
            for days_range in day_ranges.values():
                for d in days_range:
                    wanted.setdefault(p.day(d), len(wanted))
        pipe = self.client.pipeline(transaction=False)
        for key in wanted:
            pipe.hgetall(key)
        # Visitors are keyed to one partition, so per-partition counts add up exactly.
        counted: list[tuple[str, str]] = []
        for name, (minutes, hours) in covers.items():
            for p in parts:
                for site in sites:
                    hll_keys = [p.uniques_minute(m, site) for m in minutes]
                    hll_keys += [p.uniques_hour(h, site) for h in hours]
                    pfcount(pipe, *hll_keys)
                    counted.append((name, site))
        contents = pipe.execute()
        for name, (minutes, hours) in covers.items():
            counter = windows[name]
            for p in parts:
                for m in minutes:
                    add_counts(counter, contents[wanted[p.minute(m)]])
                for h in hours:
                    add_counts(counter, contents[wanted[p.hour(h)]])
        for name, days_range in day_ranges.items():
            for p in parts:
                for d in days_range:
                    add_counts(windows[name], contents[wanted[p.day(d)]])
        for (name, site), n in zip(counted, contents[len(wanted) :], strict=True):
            uniques[name][site] += int(n)
        return made()
