"""Kafka and Redis connection settings, as every client receives them."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
import trustme

from kpistream.config.connections import kafka_options, redacted
from kpistream.config.settings import SettingsError, load
from kpistream.worker import credentials


def test_plaintext_by_default() -> None:
    options = kafka_options(load({"kafka": "k:9092"}, env={}))
    assert options == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert credentials(load({}, env={})) is None


def test_sasl_scram_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cafile, certfile, keyfile = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(cafile))
    client = ca.issue_cert("kpistream-worker")
    client.cert_chain_pems[0].write_to_path(str(certfile))
    client.private_key_pem.write_to_path(str(keyfile))
    env = {
        "KPISTREAM_KAFKA": "broker:9093",
        "KPISTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KPISTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KPISTREAM_KAFKA_SASL_USERNAME": "kpi",
        "KPISTREAM_KAFKA_SASL_PASSWORD": "s3cret",
        "KPISTREAM_KAFKA_SSL_CAFILE": str(cafile),
        "KPISTREAM_KAFKA_SSL_CERTFILE": str(certfile),
        "KPISTREAM_KAFKA_SSL_KEYFILE": str(keyfile),
    }
    settings = load(env=env)
    options = kafka_options(settings)
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert options == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "kpi",
        "sasl_plain_password": "s3cret",
    }
    creds = credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "kpi",
        "s3cret",
        "SCRAM-SHA-512",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KPISTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "one of PLAINTEXT, SSL"),
        (
            {
                "KPISTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KPISTREAM_KAFKA_SASL_MECHANISM": "GSSAPI",
            },
            "one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 with SASL_SSL",
        ),
        (
            {
                "KPISTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KPISTREAM_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "needs KPISTREAM_KAFKA_SASL_USERNAME and KPISTREAM_KAFKA_SASL_PASSWORD",
        ),
        ({"KPISTREAM_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no such file: /nonexistent"),
    ],
)
def test_bad_security_settings_are_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        load(env=env)


def test_urls_lose_their_password_in_messages() -> None:
    assert redacted("redis://kpi:s3cret@cache:6380/1") == "redis://kpi:***@cache:6380/1"
    assert redacted("rediss://:pw@127.0.0.1:7000/0?ssl_ca_certs=/ca.pem") == (
        "rediss://:***@127.0.0.1:7000/0?ssl_ca_certs=/ca.pem"
    )
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"
