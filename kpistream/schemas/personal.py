"""Personal data inside text: e-mail addresses, IP addresses, phone numbers.

One place for the patterns that the decoder (ids that are personal data are refused), the
dead letters (personal values redacted) and the collector (personal data in URLs, referrers
and campaign values replaced before an event leaves it) look for.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal

import re2

Kind = Literal["email", "ip", "phone"]

#: Something shaped like an e-mail address, anywhere in a string. On RE2, in time linear in
#: the text: Python's ``re`` took 7 s for 60 KB of letters ending in ``@`` (every start
#: position scanned the run again), and dead letters and collector values are that long.
EMAIL: Any = re2.compile(r"[^@\s\"'<>(),;:/?&=#]+@[^@\s\"'<>(),;:/?&=#]+\.[A-Za-z]{2,}")
#: Characters an IP address is made of; only such strings are parsed as one.
_IP_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
#: Candidates for an IP address inside text; each is checked by parsing it.
_IP_LIKE = re.compile(r"[0-9A-Fa-f:.]{3,45}")
#: Phone numbers as people write them: international (``+44 20 7946 0958``,
#: ``+4915123456789``), national with a leading 0 and a separator (``030-1234567``,
#: ``0151 2345 6789``) and North American (``(555) 123-4567``, ``555.123.4567``). Bare digit
#: runs without ``+`` or a separator are not taken: those are order numbers and timestamps.
PHONE = re.compile(
    r"(?<![\w+])\+[1-9]\d{0,3}(?:[ ./-]?\(?\d{1,4}\)?){2,6}(?![\w])"
    r"|(?<![\w./-])\(?0\d{2,4}\)?[ /-]\d{3,4}[ -]?\d{2,5}(?![\w./-])"
    r"|(?<![\w./-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w./-])"
)


def looks_like_ip(value: str) -> bool:
    if ("." not in value and ":" not in value) or not _IP_CHARS.fullmatch(value):
        return False  # the cheap test first: most ids have neither
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def personal_id(value: str) -> str | None:
    """What personal data an id is (``e-mail address``, ``IP address``), or None."""
    if "@" in value and EMAIL.search(value):
        return "e-mail address"
    if looks_like_ip(value):
        return "IP address"
    return None


def replace(text: str, token: Callable[[Kind], str]) -> tuple[str, int]:
    """``text`` with every e-mail address, IP address and phone number replaced by
    ``token(kind)``, and how many were replaced."""
    count = 0

    def email(_: Any) -> str:
        nonlocal count
        count += 1
        return token("email")

    def ip(match: re.Match[str]) -> str:
        nonlocal count
        found = match.group(0)
        core = found.strip(".:")  # a sentence's full stop is not part of the address
        if not looks_like_ip(core):
            return found
        count += 1
        return found.replace(core, token("ip"))

    def phone(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return token("phone")

    if "@" in text:
        text = EMAIL.sub(email, text)
    if "." in text or ":" in text:
        text = _IP_LIKE.sub(ip, text)
    if any(c.isdigit() for c in text):
        text = PHONE.sub(phone, text)
    return text, count
