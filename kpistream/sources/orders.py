"""Orders from where shops keep them: a CSV or JSON Lines file (``kpistream import orders``).

One order per JSON line, or per CSV row: ``customer_id``, ``order_id``, ``ts`` (epoch ms or
ISO 8601 with an offset) or ``date`` (``YYYY-MM-DD``, the day in the site's time zone),
``value``, ``currency``, and its lines: ``items`` (a list of ``item_id``, ``category``,
``quantity``, ``price``) in JSON, or the columns ``item_id``, ``category``, ``quantity``,
``price`` in CSV, one row per line of the order (adjacent rows of the same ``order_id`` are
one order). The shop's customer id is replaced by the customer zone's keyed hash before the
order leaves the machine; an e-mail address, an IP address or a person's name as a customer
id is refused, as are orders the contract refuses, each with its reason and line number.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kpistream.collector.privacy import customer_id
from kpistream.kpis.calendar import day_start_ms, parse
from kpistream.schemas.decoder import EventDecoder, Rejection
from kpistream.schemas.events import Order
from kpistream.schemas.personal import personal_id

ITEM_COLUMNS = ("item_id", "category", "quantity", "price")
#: A person's name: two or more words of letters (a shop's ids have no spaces).
_NAME = re.compile(r"^[^\W\d_][\w'.-]*(\s+[^\W\d_][\w'.-]*)+$")


@dataclass(frozen=True, slots=True)
class Refused:
    """A row that does not become an order: where, why (a reason of the contract's) and how
    to mend it (never the refused value)."""

    line: int
    reason: str
    detail: str


def raw_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Refused]]:
    """The file's rows as (line number, fields), CSV or JSON Lines by its first character."""
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        first = handle.read(1)
        handle.seek(0)
        if first in ("{", "[", ""):
            yield from _json_lines(handle)
        else:
            yield from _csv_rows(handle)


def _json_lines(handle: io.TextIOBase) -> Iterator[tuple[int, dict[str, Any] | Refused]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            yield number, Refused(number, "malformed_json", str(exc)[:200])
            continue
        if not isinstance(row, dict):
            yield number, Refused(number, "not_an_object", "each line must be one JSON object")
            continue
        yield number, row


def _csv_rows(handle: io.TextIOBase) -> Iterator[tuple[int, dict[str, Any] | Refused]]:
    """CSV rows; the rows of one order (adjacent, same ``order_id``) as one, with items."""
    reader = csv.DictReader(handle)
    current: dict[str, Any] | None = None
    start = 0
    for row in reader:
        number = reader.line_num
        fields = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        item = {k: fields.pop(k) for k in ITEM_COLUMNS if k in fields}
        order_id = fields.get("order_id")
        if current is not None and order_id and order_id == current.get("order_id"):
            if item.get("item_id"):
                current["items"].append(item)
            continue
        if current is not None:
            yield start, current
        current, start = {**fields, "items": [item] if item.get("item_id") else []}, number
    if current is not None:
        yield start, current


class OrderReader:
    """Turns a file's rows into orders of the contract for one site."""

    def __init__(self, *, site: str, secret: str, tz: ZoneInfo, now_ms: int) -> None:
        self.site = site
        self.secret = secret
        self.tz = tz
        self.now_ms = now_ms
        self.decoder: EventDecoder[Order] = EventDecoder(Order)

    def orders(
        self, rows: Iterable[tuple[int, dict[str, Any] | Refused]]
    ) -> Iterator[Order | Refused]:
        for number, row in rows:
            yield row if isinstance(row, Refused) else self.order(number, row)

    def order(self, number: int, row: dict[str, Any]) -> Order | Refused:
        """One row as an order, or why not."""
        given = row.get("customer_id")
        if given is None or given == "":
            return Refused(number, "missing_field", "customer_id is required")
        if isinstance(given, bool) or not isinstance(given, str | int):
            return Refused(number, "wrong_type", "customer_id must be a string or a number")
        kind = personal_id(str(given)) or ("name" if _NAME.match(str(given)) else None)
        if kind is not None:
            return Refused(
                number, "pii_id", f"customer_id is an {kind}; use the shop's customer number"
            )
        when = self._ts(row)
        if isinstance(when, str):
            return Refused(number, "invalid_value", when)
        event: dict[str, Any] = {
            "type": "order",
            "order_id": _text(row.get("order_id")),
            "ts": when,
            "site": self.site,
            "customer_id": customer_id(self.secret, self.site, str(given)),
            "value": _number(row.get("value")),
            "currency": row.get("currency"),
            "items": [_item(i) for i in row.get("items") or [] if isinstance(i, dict)],
        }
        decoded = self.decoder.convert(
            {k: v for k, v in event.items() if v is not None}, now_ms=self.now_ms
        )
        if isinstance(decoded, Rejection):
            where = f" at {decoded.field}" if decoded.field else ""
            return Refused(number, decoded.reason, f"{decoded.detail.split(' - at ')[0]}{where}")
        return decoded

    def _ts(self, row: dict[str, Any]) -> int | str | None:
        """Epoch ms from ``ts`` or ``date``; a string says what is wrong."""
        ts, day = row.get("ts"), row.get("date")
        if ts not in (None, ""):
            if isinstance(ts, int) and not isinstance(ts, bool):
                return ts
            text = str(ts)
            if text.isdigit():
                return int(text)
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return "ts must be epoch milliseconds or ISO 8601 (2026-03-29T14:05:00+02:00)"
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.tz)
            return int(moment.timestamp() * 1000)
        if day not in (None, ""):
            try:
                return day_start_ms(parse("day", str(day)), self.tz)
            except ValueError as exc:
                return str(exc)
        return None  # the contract says it is missing


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _number(value: Any) -> Any:
    """A CSV cell's number as a number (JSON's stay as they are)."""
    if isinstance(value, str) and value:
        try:
            return float(value)
        except ValueError:
            return value
    return value if value != "" else None


def _item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"item_id": _text(item.get("item_id"))}
    if item.get("category"):
        out["category"] = item["category"]
    if item.get("quantity") not in (None, ""):
        quantity = _number(item["quantity"])
        out["quantity"] = (
            int(quantity) if isinstance(quantity, float) and quantity.is_integer() else quantity
        )
    if item.get("price") not in (None, ""):
        out["price"] = _number(item["price"])
    return out
