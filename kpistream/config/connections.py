"""How every client reaches Kafka and Redis: security options from the settings, and URLs
with their secrets hidden for messages.

Kafka: ``KPISTREAM_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), SASL
PLAIN or SCRAM-SHA-256/512 with a user name and password, and TLS with a CA bundle and an
optional client certificate. Redis: everything is in ``KPISTREAM_REDIS`` as redis-py reads
it: ``redis://user:password@host:6379/0``, and ``rediss://`` for TLS with
``?ssl_ca_certs=/path/ca.pem`` (and ``ssl_certfile``/``ssl_keyfile`` for a client
certificate). With ``KPISTREAM_REDIS_CLUSTER=1`` the URL names nodes of a Redis Cluster
(one, or several: ``redis://:password@node1:6379,node2:6379/0``) and every client is
cluster-aware: it learns the slot map from the first node that answers and follows
redirections, failovers and resharding.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis

from kpistream.config.settings import Settings

#: A client of one Redis server or of a Redis Cluster: every command kpistream sends works
#: on both (an atomic step's keys share one hash slot; other reads are pipelined per key).
SyncRedis = redis.Redis | redis.RedisCluster
AsyncRedis = aioredis.Redis | aioredis.RedisCluster


def redis_client(settings: Settings, **options: Any) -> SyncRedis:
    """A blocking client for the settings' Redis (the exporter, the CLI)."""
    if settings.redis_cluster:
        url, others = seed_nodes(settings.redis)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in others]  # type: ignore[no-untyped-call]
        return redis.RedisCluster.from_url(url, startup_nodes=nodes or None, **options)
    return redis.Redis.from_url(settings.redis, **options)


def async_redis_client(settings: Settings, **options: Any) -> AsyncRedis:
    """An asyncio client for the settings' Redis (workers, the collector)."""
    if settings.redis_cluster:
        url, others = seed_nodes(settings.redis)
        nodes = [aioredis.cluster.ClusterNode(host, port) for host, port in others]
        return aioredis.RedisCluster.from_url(url, startup_nodes=nodes or None, **options)
    return aioredis.Redis.from_url(settings.redis, **options)


def seed_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A URL that names several nodes (``host:port,host:port``) as the URL of its first node
    (with the credentials and options of the whole) and the other nodes' addresses; a
    client that starts while one of them is down learns the cluster from another."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    first, *rest = hosts.split(",")
    others = []
    for node in rest:
        host, _, port = node.rpartition(":")
        others.append((host, int(port)) if host else (node, 6379))
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{first}")), others


def node_urls(url: str) -> list[str]:
    """One URL per node a URL names, each with the credentials and options of the whole."""
    first, others = seed_nodes(url)
    parts = urlsplit(first)
    userinfo, at, _ = parts.netloc.rpartition("@")
    rest = [
        urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{port}")) for host, port in others
    ]
    return [first, *rest]


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client (consumer, producer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile or None,
            certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None,
        )
    return options


def redacted(url: str) -> str:
    """``url`` without its password, for log lines and error messages."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))
