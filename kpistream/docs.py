"""``make docs``: rewrite the generated tables of the README and ``docs/kpis.md``."""

from __future__ import annotations

from pathlib import Path

from kpistream.config.settings import markdown_table as settings_table
from kpistream.kpis.tables import count_table, goal_kpis, metric_table, quotient_table

ROOT = Path(__file__).resolve().parents[1]


def _replace(text: str, table: str) -> str:
    """Put ``table`` where the table with the same header line is."""
    header = table.split("\n", 1)[0]
    start = text.index(header)
    end = text.find("\n\n", start)
    return text[:start] + table + (text[end:] if end >= 0 else "\n")


def generated() -> dict[Path, list[str]]:
    """Each generated file and the tables it holds."""
    return {
        ROOT / "README.md": [settings_table(), metric_table(), goal_kpis()],
        ROOT / "docs" / "kpis.md": [quotient_table(), count_table()],
    }


def update() -> None:
    for path, tables in generated().items():
        text = path.read_text()
        for table in tables:
            text = _replace(text, table)
        path.write_text(text)


if __name__ == "__main__":
    update()
