"""The Redis key layout: one hash tag per partition (``{topic:partition}``), so each atomic
step touches one slot, and one for the label budgets (see :mod:`kpistream.sinks.window_store`)."""

from __future__ import annotations

from dataclasses import dataclass

from kpistream.contract.visitor import VisitorKey


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    prefix: str
    topic: str
    partition: int

    @classmethod
    def from_tag(cls, prefix: str, tag: str) -> PartitionKeys:
        topic, _, partition = tag.rpartition(":")
        return cls(prefix, topic, int(partition))

    @property
    def tag(self) -> str:
        return f"{self.topic}:{self.partition}"

    def key(self, name: str) -> str:
        return f"{self.prefix}:{{{self.tag}}}:{name}"

    @property
    def state(self) -> str:
        """The processor's keyed state: open sessions with their event ids (clickstream),
        accounts (social)."""
        return self.key("state")

    def minute(self, minute: int) -> str:
        return self.key(f"m:{minute}")

    def hour(self, hour: int) -> str:
        return self.key(f"h:{hour}")

    def day(self, day: int) -> str:
        return self.key(f"d:{day}")

    def kept(self, day: int) -> str:
        """Counters of a day that never expire (the customer counters)."""
        return self.key(f"k:{day}")

    def uniques_minute(self, minute: int, site: str) -> str:
        return self.key(f"u:m:{minute}:{site}")

    def uniques_hour(self, hour: int, site: str) -> str:
        return self.key(f"u:h:{hour}:{site}")

    def visitor(self, key: VisitorKey) -> str:
        site, visitor_id = key
        return self.key(f"v:{len(site)}:{site}:{visitor_id}")


def label_keys(prefix: str, dimension: str) -> tuple[str, str]:
    """(the budget's sorted set, its refused-values HyperLogLog): one hash slot."""
    return f"{prefix}:{{labels}}:{dimension}", f"{prefix}:{{labels}}:refused:{dimension}"
