"""Where personal data must never be: everything a test's deployment keeps in Redis."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from kpistream.config.settings import Settings


async def redis_dump(settings: Settings) -> bytes:
    """Every key and value under the deployment's prefix (hashes, strings, sorted sets),
    as one text to search."""
    client = aioredis.Redis.from_url(settings.redis)
    try:
        dump: list[Any] = []
        async for key in client.scan_iter(match=f"{settings.redis_prefix}:*"):
            dump.append(key)
            kind = await client.type(key)
            if kind == b"hash":
                dump += [kv for pair in (await client.hgetall(key)).items() for kv in pair]
            elif kind == b"string":
                dump.append(await client.get(key) or b"")
            elif kind == b"zset":
                dump += await client.zrange(key, 0, -1)
            elif kind == b"set":
                dump += list(await client.smembers(key))
    finally:
        await client.aclose()
    return b"\n".join(x if isinstance(x, bytes) else str(x).encode() for x in dump)
