"""Erasure: `kpistream forget` removes a customer-zone visitor's state everywhere it lives
(the worker's memory, its open sessions and dedupe ids, its visitor record in Redis),
idempotently, while the aggregates stay whole."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx
import pytest

from kpistream.collector.privacy import customer_id
from kpistream.config.connections import async_redis_client
from kpistream.config.settings import Settings, env_name
from kpistream.contract.keys import PartitionKeys
from kpistream.contract.routing import owner, ownership_key
from kpistream.forget import forget
from kpistream.kpis import catalogue as K
from kpistream.kpis import fields
from kpistream.streams.sessionizer import decode_key
from tests.support.collector_server import SECRET, running_collector
from tests.support.collector_server import headers as _headers
from tests.support.stack import on_cluster
from tests.support.waits import wait_for_totals

SITE = "shop.test"


async def _state(settings: Settings, visitor: str) -> tuple[int, bool]:
    """(open sessions of the visitor in Redis, whether its visitor record exists)."""
    partition = owner(ownership_key(SITE, visitor), settings.partitions)
    keys = PartitionKeys(settings.redis_prefix, settings.clickstream_topic, partition)
    client = async_redis_client(settings)
    try:
        fields = await client.hkeys(keys.state)
        sessions = sum(decode_key(f)[:2] == (SITE, visitor) for f in fields if isinstance(f, bytes))
        return sessions, bool(await client.exists(keys.visitor((SITE, visitor))))
    finally:
        await client.aclose()


async def _send(url: str, events: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/events", headers=_headers(), content=json.dumps(events))
        assert response.status_code == 202, response.text


@pytest.mark.parametrize("store", ["redis", "cluster"])
async def test_forget_erases_a_customer_everywhere_and_twice_is_harmless(
    settings_factory: Any, workers: Any, request: Any, store: str
) -> None:
    """Collector, worker, the forget call and the forget command, on one redis-server and on
    a Redis Cluster."""
    if store == "cluster":
        settings_factory = on_cluster(settings_factory, request.getfixturevalue("redis_cluster"))
    settings: Settings = settings_factory(id_secret=SECRET, collector_trusted_proxies="127.0.0.1")
    visitor = customer_id(SECRET, SITE, "crm-7")
    mine = {"site": SITE, "visitor_id": "crm-7", "consent": True}
    async with running_collector(settings) as url:
        await workers(settings)
        await _send(
            url,
            [
                {"type": "page_view", "path": "/", "event_id": "p1", **mine},
                {"type": "add_to_cart", "item_id": "chair", "event_id": "c1", **mine},
                {"type": "lead", "event_id": "l1", **mine},
                {"type": "page_view", "path": "/", "event_id": "o1", "site": SITE},  # audience zone
            ],
        )
        await wait_for_totals(
            settings,
            {fields.field(K.PAGE_VIEWS.code, SITE): 2, fields.field(K.NEW_VISITORS.code, SITE): 2},
        )
        assert await _state(settings, visitor) == (1, True)

        first = await forget(settings, SITE, visitor, wait_s=30)
        assert (first.applied, first.sessions_left, first.record_left) == (True, 0, False)
        assert await _state(settings, visitor) == (0, False)
        # The erased session was ended, not dropped: the aggregates stay whole.
        reader = await wait_for_totals(
            settings,
            {fields.field(K.ENDED.code, SITE): 1, fields.field(K.CART_ABANDONED.code, SITE): 1},
        )

        # Through the CLI, a second time: nothing left to erase, nothing changes.
        env = {
            **os.environ,
            env_name("id_secret"): SECRET,
            env_name("clickstream_topic"): settings.clickstream_topic,
            env_name("redis_prefix"): settings.redis_prefix,
            env_name("partitions"): str(settings.partitions),
            env_name("redis_cluster"): str(settings.redis_cluster).lower(),
        }
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kpistream",
            "forget",
            "--site",
            SITE,
            "--visitor",
            "crm-7",
            "--kafka",
            settings.kafka,
            "--redis",
            settings.redis,
            "--wait",
            "30",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await cli.communicate()
        assert cli.returncode == 0, out.decode()
        assert b"erased" in out and b"no session or record of the visitor remains" in out
        assert await _state(settings, visitor) == (0, False)

        # Seen again, the visitor is new: nothing of before was kept.
        await _send(url, [{"type": "page_view", "path": "/", "event_id": "p2", **mine}])
        await wait_for_totals(settings, {fields.field(K.NEW_VISITORS.code, SITE): 3})
    totals = reader.snapshot(settings.window_minutes()).totals
    assert totals[fields.field(K.SESSIONS.code, SITE)] >= 2
    assert totals.get(fields.field(K.LEADS.code, SITE)) == 1  # the aggregate stays
