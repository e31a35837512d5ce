"""What every tracker protocol shares: candidates, refusals, campaign parameters, numbers.

Pure functions: a request body (or query) in, a list of *candidates* out. A candidate is a
dict in the shape of the event contract, still without the pseudonymous ``visitor_id`` the
collector adds (a consented id rides as ``visitor_id`` with ``consent``), or a :class:`Skip`:
rejected (the sender made a mistake: HTTP 400 with the reason) or dropped (a valid event we do
not count, such as a Plausible goal with no mapping: counted by reason).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec

from kpistream.schemas.decoder import out_of_range

json_decoder = msgspec.json.Decoder()


class Skip(msgspec.Struct, frozen=True):
    kind: Literal["rejected", "dropped"]
    reason: str
    detail: str = ""
    field: str | None = None


Candidate = dict[str, Any] | Skip


def reject(reason: str, detail: str, field: str | None = None) -> Skip:
    return Skip("rejected", reason, detail, field)


def drop(reason: str, detail: str = "") -> Skip:
    return Skip("dropped", reason, detail)


def normalise(name: str) -> str:
    """``Add to Cart``, ``add-to-cart``, ``AddToCart`` -> ``addtocart``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def utm(url: str | None) -> dict[str, str]:
    """The utm_source/medium/campaign of a page URL's query."""
    if not url or "utm_" not in url:
        return {}
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    wanted = ("utm_source", "utm_medium", "utm_campaign")
    return {k: v for k, v in parse_qsl(query) if k in wanted and v}


def host_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def page_view(url: str | None, referrer: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "page_view", "url": url}
    if referrer:
        event["referrer"] = referrer
    event.update(utm(url))
    return event


class BadNumber(ValueError):
    """A number that is not finite (``Infinity``, ``NaN``, ``1e400``): rejected as
    ``invalid_number`` with the field it came in."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def money(value: Any, field: str) -> float | None:
    """A number given as a number or as text; None when it is neither."""
    if isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            raise BadNumber(field) from None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        raise BadNumber(field)
    return number


def integer(value: Any, field: str) -> int | None:
    """A whole number given as a number or as text (``3``, ``"3"``, ``3.0``); None when it
    is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = money(value, field)
    return int(number) if number is not None and number.is_integer() else None


def invalid_number(exc: BadNumber) -> Skip:
    return reject("invalid_number", f"{exc.field} must be a finite number", exc.field)


def undecodable(exc: Exception) -> Skip:
    """A body that JSON cannot take: a number beyond any float (``1e400``) is its own
    reason; anything else is malformed."""
    reason = "invalid_number" if out_of_range(exc) else "malformed_json"
    return reject(reason, str(exc)[:200])


#: Most distinct domains in one Plausible ``d`` (a site rolled up into a few dashboards
