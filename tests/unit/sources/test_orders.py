"""An order file as shops export it, CSV or JSON Lines, read into orders of the contract:
hand-written files with what each row must become, or why not."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpistream.collector.privacy import customer_id
from kpistream.kpis.calendar import zone
from kpistream.schemas.events import Order, OrderItem
from kpistream.sources.orders import OrderReader, Refused, raw_rows

SECRET = "s3cret"
NOW_MS = 1_800_000_000_000


def read(tmp_path: Path, name: str, text: str, tz: str = "UTC") -> list[Order | Refused]:
    path = tmp_path / name
    path.write_text(text)
    reader = OrderReader(site="shop", secret=SECRET, tz=zone(tz), now_ms=NOW_MS)
    return list(reader.orders(raw_rows(path)))


def test_csv_rows_of_one_order_become_one_order_with_its_lines(tmp_path: Path) -> None:
    got = read(
        tmp_path,
        "orders.csv",
        "customer_id,order_id,date,value,currency,item_id,category,quantity,price\n"
        "42,A-1,2026-03-29,30.5,EUR,sku-1,shoes,1,20.5\n"
        "42,A-1,2026-03-29,30.5,EUR,sku-2,socks,2,5\n"
        "43,A-2,2026-03-30,9,EUR,,,,\n",
        tz="Europe/Berlin",
    )
    assert got == [
        Order(
            order_id="A-1",
            ts=1_774_738_800_000,  # 2026-03-29 00:00 in Berlin (UTC+1 until 02:00)
            site="shop",
            customer_id=customer_id(SECRET, "shop", "42"),
            value=30.5,
            currency="EUR",
            items=[
                OrderItem(item_id="sku-1", category="shoes", quantity=1, price=20.5),
                OrderItem(item_id="sku-2", category="socks", quantity=2, price=5.0),
            ],
        ),
        Order(
            order_id="A-2",
            ts=1_774_821_600_000,  # 2026-03-30 00:00 in Berlin (UTC+2 from the 29th)
            site="shop",
            customer_id=customer_id(SECRET, "shop", "43"),
            value=9.0,
            currency="EUR",
        ),
    ]


def test_json_lines_with_ts_in_milliseconds_or_iso_8601(tmp_path: Path) -> None:
    got = read(
        tmp_path,
        "orders.jsonl",
        '{"customer_id": 7, "order_id": 99, "ts": 1774735200000, "value": 10, "currency": "USD",'
        ' "items": [{"item_id": "x"}]}\n'
        "\n"
        '{"customer_id": "7", "order_id": "100", "ts": "2026-03-29T10:00:00+02:00",'
        ' "value": 5, "currency": "USD"}\n',
    )
    assert [
        (o.order_id, o.ts, o.customer_id, len(o.items)) for o in got if isinstance(o, Order)
    ] == [
        ("99", 1_774_735_200_000, customer_id(SECRET, "shop", "7"), 1),
        ("100", 1_774_771_200_000, customer_id(SECRET, "shop", "7"), 0),
    ]


@pytest.mark.parametrize(
    ("row", "reason", "says"),
    [
        ('"customer_id": "anna@example.com"', "pii_id", "e-mail address"),
        ('"customer_id": "Anna Schmidt"', "pii_id", "name"),
        ('"customer_id": "10.1.2.3"', "pii_id", "IP address"),
        ('"customer_id": true', "wrong_type", "customer_id"),
        ('"order_id": "A-1"', "missing_field", "customer_id"),
    ],
)
def test_a_customer_id_that_is_personal_or_missing_is_refused_without_repeating_it(
    tmp_path: Path, row: str, reason: str, says: str
) -> None:
    line = '{"order_id": "A-1", "ts": 1774735200000, "value": 1, "currency": "EUR", ' + row + "}"
    (got,) = read(tmp_path, "o.jsonl", line + "\n")
    assert isinstance(got, Refused) and (got.line, got.reason) == (1, reason)
    assert says in got.detail and "anna" not in got.detail.lower()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ('"ts": 1774735200000, "value": 1, "currency": "EUR"', "missing_field"),  # no order_id
        ('"order_id": "A", "ts": "yesterday", "value": 1, "currency": "EUR"', "invalid_value"),
        ('"order_id": "A", "date": "2026-02-30", "value": 1, "currency": "EUR"', "invalid_value"),
        ('"order_id": "A", "ts": 1774735200000, "value": -1, "currency": "EUR"', "invalid_value"),
        ('"order_id": "A", "ts": 1774735200000, "value": 1, "currency": "euro"', "invalid_value"),
        ('"order_id": "A", "value": 1, "currency": "EUR"', "missing_field"),  # no ts nor date
    ],
)
def test_rows_the_contract_refuses_get_its_reason_and_their_line(
    tmp_path: Path, fields: str, reason: str
) -> None:
    text = '{"customer_id": "1", "order_id": "ok", "ts": 1774735200000, "value": 1, '
    text += '"currency": "EUR"}\n'
    text += '{"customer_id": "1", ' + fields + "}\nnot json\n"
    ok, bad, garbage = read(tmp_path, "o.jsonl", text)
    assert isinstance(ok, Order)
    assert isinstance(bad, Refused) and (bad.line, bad.reason) == (2, reason), bad
    assert isinstance(garbage, Refused) and (garbage.line, garbage.reason) == (3, "malformed_json")
