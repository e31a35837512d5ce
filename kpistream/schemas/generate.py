"""Generate the JSON Schema documents in ``kpistream/schemas/v1/`` from the msgspec structs.

Run ``python -m kpistream.schemas.generate`` after changing :mod:`kpistream.schemas.events`; a
test fails while the committed documents differ from what this module generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from kpistream.schemas.events import SCHEMA_VERSION, SURVEY_SCALES, Clickstream, Orders, Social

SCHEMA_DIR = Path(__file__).parent / f"v{SCHEMA_VERSION}"


def _document(union: Any, name: str, title: str) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(union)
    defs: dict[str, Any] = schema["$defs"]
    # Rules msgspec checks in __post_init__, which its schema generator cannot see.
    if "PageView" in defs:
        defs["PageView"]["anyOf"] = [{"required": ["url"]}, {"required": ["path"]}]
    if "SurveyResponse" in defs:
        defs["SurveyResponse"]["allOf"] = [
            {
                "if": {"properties": {"kind": {"const": kind}}},
                "then": {"properties": {"score": {"minimum": low, "maximum": high}}},
            }
            for kind, (low, high) in SURVEY_SCALES.items()
        ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"kpistream/v{SCHEMA_VERSION}/{name}.schema.json",
        "title": title,
        **schema,
    }


def documents() -> dict[str, dict[str, Any]]:
    return {
        "clickstream": _document(Clickstream, "clickstream", "kpistream clickstream event v1"),
        "social": _document(Social, "social", "kpistream social event v1"),
        "orders": _document(Orders, "orders", "kpistream order v1"),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, document in documents().items():
        (SCHEMA_DIR / f"{name}.schema.json").write_text(render(document))


if __name__ == "__main__":
    main()
