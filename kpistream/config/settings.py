"""Every setting, from the environment (``KPISTREAM_<NAME>``) or command-line flags.

``KPISTREAM_KAFKA`` (bootstrap servers) and ``KPISTREAM_REDIS`` (Redis URL) point at real
servers; ``kpistream up``/``demo`` start embedded ones when they are unset. The README's
settings table is generated from :data:`HELP`; a test keeps both in step.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from kpistream.kpis.calendar import UnknownZone, zone
from kpistream.kpis.windows import parse_window
from kpistream.schemas.events import ACTIVITY_TYPES, type_name

log = logging.getLogger(__name__)

CLICKSTREAM_TYPE_NAMES = frozenset(type_name(t) for t in ACTIVITY_TYPES)


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names it and says what to do."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    kafka: str = "127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "kpistream"
    redis_cluster: bool = False
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    clickstream_topic: str = "clickstream"
    social_topic: str = "social"
    orders_topic: str = "orders"
    deadletter_topic: str = "deadletter"
    partitions: int = 6
    consumer_group: str = "kpistream-workers"
    session_gap_s: int = 1800
    allowed_lateness_s: int = 120
    max_future_skew_s: int = 300
    windows: str = "5m,1h,24h"
    long_window_days: int = 30
    visitor_retention_days: int = 400
    visitor_cache: int = 20000
    sites: str = ""
    campaigns: str = ""
    max_sites: int = 50
    max_campaigns: int = 50
    max_landing_pages: int = 100
    max_channels: int = 30
    max_currencies: int = 20
    max_networks: int = 10
    max_accounts: int = 50
    label_idle_days: int = 30
    conversion_goals: str = "lead,purchase"
    site_zones: str = ""
    customer_horizon_days: int = 365
    customer_horizons: str = ""
    idle_after_s: int = 5
    max_event_bytes: int = 65536
    batch_max_records: int = 5000
    rebalance_timeout_s: int = 5
    startup_timeout_s: int = 60
    metrics_port: int = 9464
    exporter_cache_s: float = 1.0
    deadletter_redact_keys: str = "ip,email,name,phone,address"
    deadletter_redact_values: bool = True
    deadletter_retention_days: int = 7
    collector_port: int = 8787
    collector_origins: str = ""
    collector_write_keys: str = ""
    collector_query_params: str = ""
    collector_max_events: int = 100
    collector_queue: int = 10000
    collector_ack_timeout_s: float = 5.0
    collector_rate: float = 20.0
    collector_burst: int = 60
    collector_max_events_per_minute: int = 300
    collector_trusted_proxies: str = ""
    collector_allow_headless: bool = False
    id_secret: str = ""

    def __post_init__(self) -> None:
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.kafka_security_protocol not in protocols:
            raise SettingsError(
                f"{env_name('kafka_security_protocol')}: one of {', '.join(protocols)}; "
                f"got {self.kafka_security_protocol!r}"
            )
        mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if self.kafka_security_protocol.startswith("SASL"):
            if self.kafka_sasl_mechanism not in mechanisms:
                raise SettingsError(
                    f"{env_name('kafka_sasl_mechanism')}: one of {', '.join(mechanisms)} with "
                    f"{self.kafka_security_protocol}; got {self.kafka_sasl_mechanism!r}"
                )
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                raise SettingsError(
                    f"{self.kafka_security_protocol} needs {env_name('kafka_sasl_username')} "
                    f"and {env_name('kafka_sasl_password')}"
                )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise SettingsError(f"{env_name(name)}: no such file: {path}")
        unknown_goals = set(self.conversion_goal_types) - CLICKSTREAM_TYPE_NAMES
        if unknown_goals or not self.conversion_goal_types:
            raise SettingsError(
                f"{env_name('conversion_goals')}: conversion goals are clickstream event types, "
                f"one or more of "
                f"{', '.join(sorted(CLICKSTREAM_TYPE_NAMES))}; got {self.conversion_goals!r}"
            )
        for name in (
            "partitions",
            "session_gap_s",
            "batch_max_records",
            "max_sites",
            "max_campaigns",
            "max_event_bytes",
            "rebalance_timeout_s",
            "max_landing_pages",
            "max_channels",
            "max_currencies",
            "max_networks",
            "max_accounts",
            "idle_after_s",
            "long_window_days",
            "visitor_retention_days",
            "visitor_cache",
            "deadletter_retention_days",
            "collector_max_events",
            "collector_queue",
            "collector_ack_timeout_s",
            "collector_rate",
            "collector_burst",
            "collector_max_events_per_minute",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{env_name(name)} must be positive, got {getattr(self, name)}")
        for name in (
            "allowed_lateness_s",
            "max_future_skew_s",
            "startup_timeout_s",
            "label_idle_days",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{env_name(name)} must be >= 0, got {getattr(self, name)}")
        try:
            self.window_minutes()
        except ValueError as exc:
            raise SettingsError(f"{env_name('windows')}: {exc}") from None
        if self.id_secret and len(self.id_secret.encode()) < 16:
            raise SettingsError(
                f"{env_name('id_secret')}: at least 16 bytes (e.g. `openssl rand -hex 32`)"
            )
        for name in (
            "collector_origins",
            "collector_write_keys",
            "collector_query_params",
            "site_zones",
            "customer_horizons",
        ):
            try:
                _site_map(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{env_name(name)}: {exc}") from None
        for site, name in _site_map(self.site_zones).items():
            try:
                zone(name)
            except UnknownZone as exc:
                raise SettingsError(f"{env_name('site_zones')}: {site}: {exc}") from None
        for site, days in {
            "(default)": str(self.customer_horizon_days),
            **_site_map(self.customer_horizons),
        }.items():
            if not days.isdigit() or int(days) < 1:
                raise SettingsError(
                    f"{env_name('customer_horizons')}: {site}: the churn horizon is a whole "
                    f"number of days, at least 1, got {days!r}"
                )

    @property
    def site_origins(self) -> dict[str, list[str]]:
        """Extra origins allowed to send each site's events (besides the site's own host)."""
        return {site: value.split() for site, value in _site_map(self.collector_origins).items()}

    @property
    def query_params(self) -> dict[str, frozenset[str]]:
        """Query parameters each site declares harmless, kept in its page URLs."""
        return {
            site: frozenset(value.split())
            for site, value in _site_map(self.collector_query_params).items()
        }

    def site_zone(self, site: str) -> ZoneInfo:
        """The site's time zone (its calendar days and periods); UTC unless set."""
        return zone(_site_map(self.site_zones).get(site, "UTC"))

    def customer_horizon(self, site: str) -> int:
        """The site's churn horizon in days."""
        return int(_site_map(self.customer_horizons).get(site, self.customer_horizon_days))

    @property
    def write_keys(self) -> dict[str, str]:
        return _site_map(self.collector_write_keys)

    def window_minutes(self) -> dict[str, int]:
        names = [w.strip() for w in self.windows.split(",") if w.strip()]
        if not names:
            raise ValueError("at least one window is needed, e.g. 5m,1h,24h")
        return {name: parse_window(name) for name in names}

    @property
    def site_allowlist(self) -> list[str]:
        return _csv(self.sites)

    @property
    def campaign_allowlist(self) -> list[str]:
        return _csv(self.campaigns)

    @property
    def conversion_goal_types(self) -> list[str]:
        return _csv(self.conversion_goals)

    def label_budgets(self) -> dict[str, int]:
        """The budgeted dimensions (not those with an allowlist) and their sizes."""
        budgets = {
            "site": 0 if self.site_allowlist else self.max_sites,
            "campaign": 0 if self.campaign_allowlist else self.max_campaigns,
            "landing_page": self.max_landing_pages,
            "channel": self.max_channels,
            "currency": self.max_currencies,
            "network": self.max_networks,
            "account": self.max_accounts,
        }
        return {name: size for name, size in budgets.items() if size}

    @property
    def bucket_ttl_s(self) -> int:
        """Buckets live as long as the longest window plus lateness, plus an hour of margin."""
        return max(self.window_minutes().values()) * 60 + self.allowed_lateness_s + 3600

    @property
    def long_windows(self) -> dict[str, int]:
        """The long window by name (``30d``), in days."""
        return {f"{self.long_window_days}d": self.long_window_days}

    @property
    def day_ttl_s(self) -> int:
        """Day buckets live as long as the long window plus two days of margin."""
        return (self.long_window_days + 2) * 86_400

    @property
    def visitor_ttl_s(self) -> int:
        return self.visitor_retention_days * 86_400

    @property
    def session_ttl_s(self) -> int:
        """A partition's session hash outlives its last write by gap + lateness + margin."""
        return self.session_gap_s + self.allowed_lateness_s + 3600


HELP: dict[str, str] = {
    "kafka": "Kafka bootstrap servers (host:port,...); `up`/`demo` embed a broker when unset",
    "redis": "Redis URL; `up`/`demo` embed a redis-server when unset",
    "redis_prefix": "prefix of every Redis key this deployment writes",
    "redis_cluster": "the Redis URL names a node of a Redis Cluster (Valkey, or a managed "
    "service in cluster mode); clients discover the other nodes from it",
    "kafka_security_protocol": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    "kafka_sasl_mechanism": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)",
    "kafka_sasl_username": "SASL user name",
    "kafka_sasl_password": "SASL password (never logged)",
    "kafka_ssl_cafile": "CA bundle that signed the brokers' certificates (SSL, SASL_SSL)",
    "kafka_ssl_certfile": "client certificate, for brokers that require one (mutual TLS)",
    "kafka_ssl_keyfile": "the client certificate's private key",
    "clickstream_topic": "topic of website events",
    "social_topic": "topic of social-network events",
    "orders_topic": "topic of customers' orders (the customer KPIs)",
    "deadletter_topic": "topic that receives invalid events with a reason",
    "partitions": "partitions of the clickstream topic when kpistream creates it",
    "consumer_group": "Kafka consumer group of the stream workers",
    "session_gap_s": "inactivity (event time) that ends a session",
    "allowed_lateness_s": "how far behind the partition's watermark an event may arrive; "
    "sessions are decided (abandoned carts, time on site) once this has passed after their gap",
    "max_future_skew_s": "how far ahead of the wall clock an event's ts may be",
    "windows": "rolling windows, comma-separated (5m, 1h, 1d ...)",
    "long_window_days": "window of lead -> customer, in whole days",
    "visitor_retention_days": "a visitor unseen this long is forgotten (and new again)",
    "visitor_cache": "visitors kept in a worker's memory per partition, least recently seen "
    "dropped first; a miss costs one key in the batch's Redis read",
    "sites": "site allowlist, comma-separated; empty accepts every site",
    "campaigns": "campaign allowlist, comma-separated; empty admits the first max_campaigns",
    "max_sites": "label budget for sites when no allowlist is set",
    "max_campaigns": "label budget for campaigns when no allowlist is set",
    "max_landing_pages": "label budget for landing pages (first page view's path)",
    "max_channels": "label budget for channels (utm source/medium)",
    "max_currencies": "label budget for revenue currencies",
    "max_networks": "label budget for social networks",
    "max_accounts": "label budget for social accounts",
    "label_idle_days": "a label value unseen this long gives its budget slot up (0: never)",
    "conversion_goals": "conversion goals (not SMART goals): clickstream event types, "
    "comma-separated; KPISTREAM_GOALS is its deprecated name",
    "site_zones": "each site's IANA time zone for calendar days and periods "
    "(`site=Europe/Berlin;...`); UTC for the others",
    "customer_horizon_days": "churn horizon in days: a customer is active while their last "
    "order is this recent",
    "customer_horizons": "a churn horizon per site (`site=90;...`), in days",
    "idle_after_s": "seconds without records after which a partition's watermark follows the clock",
    "max_event_bytes": "largest accepted event",
    "batch_max_records": "most records fetched per batch",
    "rebalance_timeout_s": "consumer-group rebalance timeout (a first join waits this long)",
    "startup_timeout_s": "how long a worker waits for Kafka and Redis at start-up (0: not at all)",
    "metrics_port": "port of the exporter's /metrics",
    "exporter_cache_s": "how long a scrape result is reused",
    "deadletter_redact_keys": "dead letters lose the values of keys with these words "
    "(client_ip, userEmail, first_name ...)",
    "deadletter_redact_values": "dead letters lose e-mail addresses, IP addresses and phone "
    "numbers found in any value",
    "deadletter_retention_days": "retention of the dead-letter topic when kpistream creates it",
    "collector_port": "port of `kpistream collector` (HTTP: trackers, /healthz, /metrics)",
    "collector_origins": "origins allowed per site besides the site's own host and subdomains: "
    "`site=https://a.example https://b.example;site2=...`",
    "collector_write_keys": "per-site keys for server-side senders (`site=key;site2=key`); "
    "a site with a key accepts requests without an Origin only with it (never logged)",
    "collector_query_params": "query parameters a site's page URLs keep besides utm_*, "
    "per site: `site=page sort;site2=q` (every other parameter is removed at the collector)",
    "collector_max_events": "most events in one request",
    "collector_queue": "events the collector holds until Kafka acknowledges them; beyond, 503",
    "collector_ack_timeout_s": "how long a request waits for Kafka's acknowledgement before 503",
    "collector_rate": "requests per second per client (token bucket)",
    "collector_burst": "burst size of a client's token bucket",
    "collector_max_events_per_minute": "events per visitor and minute beyond which the rest "
    "are dropped as `bot_behaviour`",
    "collector_trusted_proxies": "addresses/networks whose X-Forwarded-For is believed "
    "(comma-separated CIDR); empty: none",
    "collector_allow_headless": "count headless browsers (HeadlessChrome) as people: for tests",
    "id_secret": "key of the customer zone's keyed hashes (16+ bytes); empty: consented ids "
    "are refused. `up`/`demo` make one per run",
}


def default_of(name: str) -> Any:
    """A setting's default value."""
    return Settings.__struct_defaults__[Settings.__struct_fields__.index(name)]


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, text in HELP.items():
        default = default_of(name)
        shown = f"`{default}`" if default != "" else "(empty)"
        rows.append(f"| `{env_name(name)}` | {shown} | {text} |")
    return "\n".join(rows)


def _site_map(text: str) -> dict[str, str]:
    """``site=value;site2=value`` as a dict."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        site, sep, value = part.partition("=")
        if not sep or not site.strip() or not value.strip():
            raise ValueError(f"expected `site=value;...`, got {part.strip()!r}")
        out[site.strip()] = value.strip()
    return out


def env_name(name: str) -> str:
    return f"KPISTREAM_{name.upper()}"


def child_environment(settings: Settings, *layers: Mapping[str, str]) -> dict[str, str]:
    """The environment a child process needs to run on exactly ``settings``: this
    process's own without its ``KPISTREAM_*`` variables, then ``layers`` in order, then every
    setting as its ``KPISTREAM_*`` variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPISTREAM_")}
    for layer in layers:
        env.update(layer)
    env.update({env_name(f): str(getattr(settings, f)) for f in Settings.__struct_fields__})
    return env


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


#: Environment variables renamed, by old name: still read (the new name wins), with a line.
DEPRECATED_ENV: dict[str, str] = {"KPISTREAM_GOALS": "conversion_goals"}
#: ``KPISTREAM_*`` variables read elsewhere than here: not settings, not misspelled.
OTHER_ENV = frozenset({"KPISTREAM_STATE_DIR"})
_warned: set[str] = set()


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One line per ``KPISTREAM_*`` variable that no setting reads, naming the closest one
    (a misspelled ``KPISTREAM_REDDIS`` was silently ignored)."""
    known = {env_name(f) for f in Settings.__struct_fields__} | set(DEPRECATED_ENV) | OTHER_ENV
    lines = []
    for name in sorted(env):
        if not name.startswith("KPISTREAM_") or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; `kpistream --help` lists them"
        lines.append(f"kpistream: warning: {name} is not a setting and is ignored{hint}")
    return lines


def load(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``env`` (default: the process environment), then non-None ``overrides``."""
    env = os.environ if env is None else env
    for line in unknown_variables(env):
        if line not in _warned:  # once per process, however often settings are loaded
            _warned.add(line)
            log.warning(line)
    raw: dict[str, Any] = {}
    for name in Settings.__struct_fields__:
        value = env.get(env_name(name))
        if value is not None and value != "":
            raw[name] = value
    for old_name, name in DEPRECATED_ENV.items():
        value = env.get(old_name)
        if value:
            log.warning("%s is deprecated: set %s instead", old_name, env_name(name))
            raw.setdefault(name, value)
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = message.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in message else ""
        where = f"{env_name(field)}={raw.get(field)!r}: " if field else ""
        raise SettingsError(f"bad setting {where}{message.split(' - at')[0]}") from None
