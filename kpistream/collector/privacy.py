"""Privacy at the door: the two zones, the daily salts, the signals that mean "do not track".

*Audience zone* (default, cookieless): the visitor id is ``a-`` + BLAKE2b-128, keyed with a
random 32-byte salt of the current UTC day, of (site, client IP, User-Agent). Each day's salt
is created by whichever collector needs it first (``SET NX``) and expires 48 hours after the
day began, so at any moment only today's and yesterday's salts exist, and a visitor id cannot
be recomputed from an IP address once its salt is gone. The IP address itself is used in
memory for this hash and the rate limit and goes nowhere else.

*Customer zone*: a tracker-provided id, accepted only with an explicit consent signal, becomes
``c-`` + BLAKE2b-128 keyed with the deployment secret (``KPISTREAM_ID_SECRET``) of
(site, id): stable across days (retention, lead -> customer), never stored in clear, and
erasable (``kpistream forget`` computes the same hash).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

DAY_S = 86_400
#: A day's salt lives until 48 hours after that day began: then only today's and
#: yesterday's exist.
SALT_LIFE_S = 2 * DAY_S
SALT_BYTES = 32


def _digest(key: bytes, *parts: str) -> str:
    data = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, key=key, digest_size=16).hexdigest()


def customer_id(secret: str, site: str, given: str) -> str:
    """The stored form of a consented id (also what ``kpistream forget`` looks for)."""
    return "c-" + _digest(secret.encode(), site, given)


def customer_session_id(secret: str, site: str, given: str) -> str:
    return "s-" + _digest(secret.encode(), "session", site, given)


def audience_id(salt: bytes, site: str, ip: str, user_agent: str) -> str:
    return "a-" + _digest(salt, site, ip, user_agent)


def day_of(now_s: float) -> int:
    return int(now_s // DAY_S)


class Salts:
    """Today's salt from Redis (created there once per day by any collector), cached."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._cache: dict[int, bytes] = {}

    def key(self, day: int) -> str:
        return f"{self.prefix}:salt:{day}"

    async def current(self, now_s: float | None = None) -> bytes:
        day = day_of(time.time() if now_s is None else now_s)
        salt = self._cache.get(day)
        if salt is None:
            salt = await self._fetch(day)
            self._cache = {day: salt}  # yesterday's is not needed in memory
        return salt

    async def _fetch(self, day: int) -> bytes:
        key = self.key(day)
        expires_at = day * DAY_S + SALT_LIFE_S
        await self.redis.set(key, secrets.token_bytes(SALT_BYTES), nx=True, exat=expires_at)
        salt = await self.redis.get(key)
        if salt is None:  # expired between the two calls: only at the very end of its life
            raise RuntimeError(f"salt {key} vanished")
        return bytes(salt)


def consent_given(value: object) -> bool:
    """An explicit consent signal: true, 1, "1", "true", "yes", "granted"."""
    if value is True or value == 1:
        return True
    return isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "granted")


def refusal(headers: Mapping[str, str]) -> str | None:
    """``gpc`` or ``dnt`` when the browser asks not to be tracked, else None."""
    if headers.get("sec-gpc", "").strip() == "1":
        return "gpc"
    if headers.get("dnt", "").strip() == "1":
        return "dnt"
    return None


class ClientAddress:
    """The client's address: the peer, or the first untrusted hop of X-Forwarded-For when
    the peer is a configured proxy."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.trusted = [ipaddress.ip_network(n.strip(), strict=False) for n in trusted if n.strip()]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def __call__(self, peer: str, forwarded_for: str | None) -> str:
        if not self.trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):  # right to left: the nearest hop first
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer
