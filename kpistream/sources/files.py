"""A file of JSON lines (``kpistream produce FILE``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class JsonLines:
    """The non-blank lines of a file, stripped, read as they are sent (any size)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    yield line
