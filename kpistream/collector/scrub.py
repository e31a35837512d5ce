"""Personal data out of an event's URLs and values, before the event leaves the collector.

Trackers send what the page's address holds, and addresses hold what sites put there: a
newsletter link's ``?email=``, a search for a phone number, a login page's user name. So:

- a page URL (``url``, ``path``) keeps its path and only the query parameters that cannot
  carry a person: the ``utm_*`` campaign parameters and those the site declares harmless
  (``KPISTREAM_COLLECTOR_QUERY_PARAMS``); user and password before the host and the
  ``#fragment`` go;
- a referrer keeps scheme and host, and its path only when it is the page's own site;
- in every value kept (the path, kept parameters, campaign names, item ids ...), anything that
  looks like an e-mail address, an IP address or a phone number becomes ``[email]``,
  ``[ip]`` or ``[phone]``.

The pseudonymous ``visitor_id`` and ``session_id`` are hashes the collector made, and the
``site`` is the deployment's own name for the site; nothing else of an event is exempt.
docs/collector.md says the same to users.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from kpistream.schemas.personal import Kind, replace

#: Fields left as they are: the keyed hashes the collector made, and the site, which the
#: deployment names (its allowlist or label budget), not the visitor.
OURS = frozenset({"visitor_id", "session_id", "site"})
#: What a path may hold unescaped; the rest is percent-encoded again after scrubbing.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def token(kind: Kind) -> str:
    return f"[{kind}]"


#: Values longer than this are not scrubbed: the decoder refuses every string of the contract
#: above 2,048 characters (a URL's bound), so such a value never leaves the collector, and
#: scrubbing it would only cost the event loop time.
MAX_SCRUBBED = 2048


def text(value: str) -> str:
    if len(value) > MAX_SCRUBBED:
        return value
    return replace(value, token)[0]


def _host(parts: Any) -> str:
    """Host and port, without user and password; an IP address as host is personal too
    (a visitor's own device serving the page)."""
    try:
        port = parts.port
    except ValueError:  # a port that is not a number
        port = None
    host = text(parts.hostname or "")
    if ":" in host:  # an IPv6 literal that survived (not personal: e.g. a link-local) keeps []
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def _path(parts: Any) -> str:
    """The path, scrubbed as text and percent-encoded again."""
    return quote(text(unquote(parts.path)), safe=_PATH_SAFE)


def page_url(url: str, keep: Collection[str]) -> str:
    """``url`` (absolute, or a path with a query) reduced as the module says."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return text(url.split("?", 1)[0].split("#", 1)[0])
    path = _path(parts)
    query = urlencode(
        [
            (name, text(value))
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
            if name.startswith("utm_") or name in keep
        ]
    )
    netloc = _host(parts) if parts.netloc else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def referrer(url: str, page_host: str | None) -> str | None:
    """Scheme and host of ``url``; its path too when it is ``page_host`` (a visitor moving
    within the site). None when it names no host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    path = ""
    if page_host and parts.hostname == page_host:
        path = _path(parts)
    return urlunsplit((parts.scheme, _host(parts), path or "/", "", ""))


def event(item: dict[str, Any], site: str, keep: Collection[str]) -> None:
    """Scrub one candidate event in place (see the module docstring)."""
    for name, value in item.items():
        if not isinstance(value, str) or name in OURS or len(value) > MAX_SCRUBBED:
            continue
        if name in ("url", "path"):
            item[name] = page_url(value, keep)
        elif name == "referrer":
            continue
        else:
            item[name] = text(value)
    ref = item.get("referrer")
    if isinstance(ref, str):
        page = item.get("url")
        try:
            page_host = urlsplit(page).hostname if isinstance(page, str) else None
        except ValueError:
            page_host = None
        cleaned = referrer(ref, page_host or site)
        if cleaned is None:
            del item["referrer"]
        else:
            item["referrer"] = cleaned
