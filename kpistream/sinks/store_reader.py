"""The Redis reader of the read model (:mod:`kpistream.contract.read_model`): the exporter's
scrape, the live tables and `kpistream labels` (the key layout: :mod:`.window_store`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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
        long_windows = long_windows or {}
        now = self._partitions()
        windows, uniques = self._windows(now, windows_min, long_windows)
        return StoreSnapshot(
            now.watermark,
            now.totals,
            windows,
            len(now.parts),
            uniques,
            now.gauges,
            fenced_writes=now.fenced_writes,
            state_resets=now.state_resets,
            partition_status=now.status,
            labels=self.label_use(label_budgets or {}),
            health=now.health,
            long_windows=frozenset(long_windows),
        )

    def _partitions(self) -> _Partitions:
        """Every partition's totals, gauges, health, position and live status: one round
        trip."""
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
        now = _Partitions(parts, fenced_writes=int(fenced or 0), state_resets=int(resets or 0))
        for i, p in enumerate(parts):
            add_counts(now.totals, replies[5 * i])
            add_counts(now.gauges, replies[5 * i + 2])
            add_counts(now.health, replies[5 * i + 4])
            wm, offset = replies[5 * i + 1]
            end, stalled, reported = replies[5 * i + 3]
            now.status[p.tag] = PartitionStatus(
                offset=as_int(offset),
                watermark_ms=as_int(wm),
                end_offset=as_int(end),
                stalled=stalled is not None and int(stalled) == 1,
                reported_ms=as_int(reported),
            )
            if wm is not None and (now.watermark is None or int(wm) > now.watermark):
                now.watermark = int(wm)
        return now

    def _windows(
        self, now: _Partitions, windows_min: dict[str, int], long_windows: dict[str, int]
    ) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
        """Each window's counts and unique visitors per site label: one round trip."""
        windows: dict[str, Counter[str]] = {
            name: Counter() for name in [*windows_min, *long_windows]
        }
        uniques: dict[str, Counter[str]] = {name: Counter() for name in windows_min}
        watermark, parts = now.watermark, now.parts
        if watermark is None or not parts:
            return windows, uniques
        covers = {
            name: window_cover(*window_minutes(minutes, watermark))
            for name, minutes in windows_min.items()
        }
        last_day = day_of(watermark)
        days = {name: range(last_day - n + 1, last_day + 1) for name, n in long_windows.items()}
        keys: dict[str, list[str]] = {}  # window -> its bucket keys, every partition's
        for name, (minutes, hours) in covers.items():
            keys[name] = [p.minute(m) for p in parts for m in minutes]
            keys[name] += [p.hour(h) for p in parts for h in hours]
        for name, span in days.items():
            keys[name] = [p.day(d) for p in parts for d in span]
        wanted = list(dict.fromkeys(k for window in keys.values() for k in window))
        pipe = self.client.pipeline(transaction=False)
        for key in wanted:
            pipe.hgetall(key)
        # Visitors are keyed to one partition, so per-partition counts add up exactly.
        sites = sorted(label_values(now.totals, K.SESSIONS, "site"))
        counted: list[tuple[str, str]] = []
        for name, (minutes, hours) in covers.items():
            for p in parts:
                for site in sites:
                    hll_keys = [p.uniques_minute(m, site) for m in minutes]
                    hll_keys += [p.uniques_hour(h, site) for h in hours]
                    pfcount(pipe, *hll_keys)
                    counted.append((name, site))
        contents = pipe.execute()
        found = dict(zip(wanted, contents, strict=False))
        for name, window in keys.items():
            for key in window:
                add_counts(windows[name], found[key])
        for (name, site), n in zip(counted, contents[len(wanted) :], strict=True):
            uniques[name][site] += int(n)
        return windows, uniques


@dataclass(slots=True)
class _Partitions:
    """What the first round trip of a snapshot reads."""

    parts: list[PartitionKeys]
    totals: Counter[str] = field(default_factory=Counter)
    gauges: Counter[str] = field(default_factory=Counter)
    health: Counter[str] = field(default_factory=Counter)
    watermark: int | None = None
    status: dict[str, PartitionStatus] = field(default_factory=dict)
    fenced_writes: int = 0
    state_resets: int = 0
