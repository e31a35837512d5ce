"""The documentation says what the code does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kpistream.alerting.formulas import CATALOGUE
from kpistream.config.settings import HELP, Settings, markdown_table
from kpistream.docs import generated
from kpistream.kpis import catalogue as K
from kpistream.kpis.tables import metric_table
from kpistream.schemas.decoder import REASONS, EventDecoder, Rejection
from kpistream.schemas.events import Clickstream, Social

ROOT = Path(__file__).resolve().parents[2]
EVENTS_DOC = (ROOT / "docs" / "events.md").read_text()


def test_readme_settings_table_is_current() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text(), (
        "README settings table is stale: run `make docs`"
    )


def test_every_setting_is_documented() -> None:
    assert list(HELP) == list(Settings.__struct_fields__)


def _examples(heading: str) -> list[bytes]:
    section = EVENTS_DOC.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None
    return [line.encode() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("heading", "union", "count"),
    [
        ("Clickstream types", Clickstream, 10),
        ("Social types", Social, 7),
    ],
)
def test_documented_examples_are_valid_events(heading: str, union: Any, count: int) -> None:
    examples = _examples(heading)
    assert len(examples) == count
    decoder: EventDecoder[Any] = EventDecoder(union)
    for raw in examples:
        result = decoder.decode(raw, now_ms=1_763_800_200_000)
        assert not isinstance(result, Rejection), (raw, result)
    assert {json.loads(r)["type"] for r in examples} == {
        t.__struct_config__.tag for t in union.__args__
    }


def test_every_reject_reason_is_documented() -> None:
    documented = set(
        re.findall(r"^\| `([a-z_]+)` \|", EVENTS_DOC.split("## Dead letters")[1], re.M)
    )
    assert documented == set(REASONS)


@pytest.mark.parametrize("path", list(generated()), ids=lambda p: p.name)
def test_generated_tables_are_current(path: Path) -> None:
    text = path.read_text()
    for table in generated()[path]:
        assert table in text, f"a table of {path.name} is stale: run `make docs`"


def test_the_guarantees_table_names_every_fault_test_module() -> None:
    section = (ROOT / "README.md").read_text().split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+\.py)`", section))
    modules = {p.name for p in (ROOT / "tests" / "faults").glob("test_*.py")}
    assert named == modules


def test_the_readme_lists_every_kpi_a_goal_can_name() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("KPIs a goal can name:", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"`(\w+)`", section) == list(CATALOGUE)


def test_kpi_definitions_name_only_served_metrics_and_every_ratio() -> None:
    served = set(re.findall(r"^\| `(kpi_[a-z_]+)`", metric_table(), re.M))
    text = (ROOT / "docs" / "kpis.md").read_text()
    named = set(re.findall(r"`(kpi_[a-z_]+)", text))
    assert named - served == set(), "docs/kpis.md names metrics the exporter does not serve"
    derived = {q.metric for q in K.QUOTIENTS}
    assert derived - named == set(), "a ratio, score or mean without a definition in docs/kpis.md"
