"""How every client reaches Kafka and Redis: security options from the settings, and URLs
with their secrets hidden for messages.

Kafka: ``KPISTREAM_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), SASL
PLAIN or SCRAM-SHA-256/512 with a user name and password, and TLS with a CA bundle and an
optional client certificate. Redis: everything is in ``KPISTREAM_REDIS`` as redis-py reads
it: ``redis://user:password@host:6379/0``, and ``rediss://`` for TLS with
``?ssl_ca_certs=/path/ca.pem`` (and ``ssl_certfile``/``ssl_keyfile`` for a client
certificate). With ``KPISTREAM_REDIS_CLUSTER=1`` the URL names one node of a Redis Cluster
and every client is cluster-aware: it learns the slot map from that node and follows
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
        return redis.RedisCluster.from_url(settings.redis, **options)
    return redis.Redis.from_url(settings.redis, **options)


def async_redis_client(settings: Settings, **options: Any) -> AsyncRedis:
    """An asyncio client for the settings' Redis (workers, the collector)."""
    if settings.redis_cluster:
        return aioredis.RedisCluster.from_url(settings.redis, **options)
    return aioredis.Redis.from_url(settings.redis, **options)


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
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
