"""One frozen, typed settings object, read from the environment once.

Every knob of Uptake is a field here with its environment variable, default and unit in the
field's comment; `uptake settings` prints them (secrets redacted). Nothing else in the package
reads `os.environ`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pipeline import resources

KILL_POINTS = (
    "",
    "before_insert",
    "mid_batch",
    "after_insert",
    "lifecycle_after_state",
    "lifecycle_after_emit",
)
BACKFILL_MAX_AGE_LIMIT_DAYS = 2500
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# UPTAKE_KAFKA_COMPRESSION: what Uptake's producers compress with; every consumer reads all of
# them. The default is measured (docs/benchmarks.md, "Producer compression").
KAFKA_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
DEFAULT_KAFKA_COMPRESSION = "lz4"
# Always a Secret.
_SECRETS = ("clickhouse_url", "pseudonym_key", "kafka_sasl_password", "backstage_token")
WRITERS = ("direct", "kafka")  # UPTAKE_WRITER: who inserts into ClickHouse
"""One insert may touch at most 100 monthly partitions (ClickHouse's
max_partitions_per_insert_block): ~82 months of history keeps a backfill batch under it."""


class SettingsError(ValueError):
    """A setting has a value Uptake cannot use; the message names the variable."""


class Secret(str):
    """A string whose repr never shows its value (passwords, keys, tokens)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


def redact_url(url: str) -> str:
    """`http://user:pass@host/db` -> `http://user:***@host/db`; other URLs unchanged.

    Works on the text, not on a parsed URL: a password with an unencoded `/`, `#` or `?` would
    make a URL parser split it into path or query and show it.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


@dataclass(frozen=True)
class EnvSpec:
    name: str
    help: str


def _env(name: str, help_: str) -> dict[str, EnvSpec]:
    return {"env": EnvSpec(name, help_)}


P = TypeVar("P", "KafkaSettings", "FaultSettings")


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka part: where the brokers are and how clients authenticate (kafka/security.py)."""

    bootstrap: str
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    sasl_password: Secret
    ssl_cafile: str
    ssl_certfile: str
    ssl_keyfile: str
    compression: str


@dataclass(frozen=True)
class FaultSettings:
    """Fault injection for drills and the reliability suite; all empty in production."""

    fail_inserts: int = 0  # fail this many sink inserts (-1: all)
    fail_inserts_file: str = ""  # every sink insert fails while this file exists
    kill_at: str = ""  # a KILL_POINTS name: where the worker SIGKILLs itself
    kill_after_batches: int = 0  # batches to finish before the kill
    ignore_watermarks: bool = False  # the negative control: a sink without replay dedup
    poison: str = ""  # issue #16: a message holding this text makes an ingest step raise

    @property
    def present(self) -> bool:
        return bool(
            self.fail_inserts
            or self.fail_inserts_file
            or self.kill_at
            or self.ignore_watermarks
            or self.poison
        )


@dataclass(frozen=True)
class Settings:
    """Uptake's configuration. Build it with `Settings.from_env()`; fields are immutable."""

    home: Path = field(
        default=Path(".uptake"),
        metadata=_env("UPTAKE_HOME", "folder for local state: embedded warehouse, broker data"),
    )
    kafka_bootstrap: str = field(
        default="127.0.0.1:9092",
        metadata=_env("KAFKA_BOOTSTRAP_SERVERS", "Kafka bootstrap servers, host:port[,host:port]"),
    )
    events_topic: str = field(
        default="uptake.events",
        metadata=_env("UPTAKE_EVENTS_TOPIC", "topic the platform events arrive on"),
    )
    dlq_topic: str = field(
        default="uptake.events.dlq",
        metadata=_env("UPTAKE_DLQ_TOPIC", "dead-letter topic for rejected events"),
    )
    backfill_topic: str = field(
        default="",
        metadata=_env(
            "UPTAKE_BACKFILL_TOPIC",
            "topic `uptake backfill` sends old events to; the worker reads it without the "
            "lateness limit (default: <UPTAKE_EVENTS_TOPIC>.backfill)",
        ),
    )
    topic_partitions: int = field(
        default=4,
        metadata=_env("UPTAKE_TOPIC_PARTITIONS", "partitions when Uptake creates its topics"),
    )
    consumer_group: str = field(
        default="uptake-worker",
        metadata=_env("UPTAKE_CONSUMER_GROUP", "Kafka consumer group (and faust app id)"),
    )
    # --- Kafka security (docs/deploy.md#security; pipeline/kafka/security.py) ------------------
    kafka_security_protocol: str = field(
        default="PLAINTEXT",
        metadata=_env(
            "UPTAKE_KAFKA_SECURITY_PROTOCOL",
            "how every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        ),
    )
    kafka_sasl_mechanism: str = field(
        default="PLAIN",
        metadata=_env(
            "UPTAKE_KAFKA_SASL_MECHANISM",
            "SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        ),
    )
    kafka_sasl_username: str = field(
        default="",
        metadata=_env("UPTAKE_KAFKA_SASL_USERNAME", "SASL user name (SASL_* protocols)"),
    )
    kafka_sasl_password: Secret = field(
        default=Secret(""),
        metadata=_env(
            "UPTAKE_KAFKA_SASL_PASSWORD", "SASL password (SASL_* protocols; never shown)"
        ),
    )
    kafka_ssl_cafile: str = field(
        default="",
        metadata=_env(
            "UPTAKE_KAFKA_SSL_CAFILE",
            "PEM file of the CAs that sign the brokers' certificates with SSL/SASL_SSL "
            "(empty: the system's CAs)",
        ),
    )
    kafka_ssl_certfile: str = field(
        default="",
        metadata=_env(
            "UPTAKE_KAFKA_SSL_CERTFILE",
            "PEM client certificate for mutual TLS with SSL/SASL_SSL (empty: none)",
        ),
    )
    kafka_ssl_keyfile: str = field(
        default="",
        metadata=_env(
            "UPTAKE_KAFKA_SSL_KEYFILE",
            "PEM private key of UPTAKE_KAFKA_SSL_CERTFILE (empty: in the certificate file)",
        ),
    )
    kafka_compression: str = field(
        default=DEFAULT_KAFKA_COMPRESSION,
        metadata=_env(
            "UPTAKE_KAFKA_COMPRESSION",
            "compression of the record batches Uptake's producers send (SDK, collector, "
            "simulator, backfill, dead letters): none, gzip, snappy, lz4 or zstd; consumers "
            "read every codec whatever this says (docs/events.md#compression)",
        ),
    )
    clickhouse_url: Secret = field(
        default=Secret(""),
        metadata=_env(
            "UPTAKE_CLICKHOUSE_URL",
            "warehouse: chdb:///path (embedded, default <home>/warehouse) or "
            "http(s)://user:password@host:port/database",
        ),
    )
    clickhouse_cluster: str = field(
        default="",
        metadata=_env(
            "UPTAKE_CLICKHOUSE_CLUSTER",
            "ClickHouse cluster (remote_servers) for ON CLUSTER DDL: Replicated tables behind "
            "Distributed ones (empty: one server or the embedded engine; docs/deploy.md)",
        ),
    )
    writer: str = field(
        default="direct",
        metadata=_env(
            "UPTAKE_WRITER",
            "who writes to ClickHouse: direct (each worker) or kafka (workers publish enriched "
            "batches to UPTAKE_WRITER_TOPIC and one `uptake writer` inserts; docs/deploy.md)",
        ),
    )
    writer_topic: str = field(
        default="uptake.enriched",
        metadata=_env(
            "UPTAKE_WRITER_TOPIC",
            "internal topic from the workers to `uptake writer` when UPTAKE_WRITER=kafka",
        ),
    )
    pseudonym_key: Secret = field(
        default=Secret(""),
        metadata=_env(
            "UPTAKE_PSEUDONYM_KEY",
            "secret key of the user pseudonyms (default: a random key in <home>/pseudonym.key)",
        ),
    )
    # Catalog paths are `str` with "" meaning the repository's config/ (see the properties).
    team_catalog: str = field(
        default="",
        metadata=_env(
            "UPTAKE_TEAM_CATALOG",
            "team catalog: Backstage catalog-info .yaml files, ownership .csv files and folders "
            f"of them, separated by '{os.pathsep}' (default: config/teams)",
        ),
    )
    capabilities: str = field(
        default="",
        metadata=_env(
            "UPTAKE_CAPABILITIES",
            "capability catalog file (default: config/capabilities.yaml)",
        ),
    )
    catalog_reload_s: float = field(
        default=10.0,
        metadata=_env(
            "UPTAKE_CATALOG_RELOAD_S",
            "how often the worker checks the catalog files for changes (seconds; 0: never)",
        ),
    )
    backstage_url: str = field(
        default="",
        metadata=_env(
            "UPTAKE_BACKSTAGE_URL",
            "a Backstage backend whose catalog API is one more team catalog source, e.g. "
            "https://backstage.example.com (default: none)",
        ),
    )
    backstage_token: Secret = field(
        default=Secret(""),
        metadata=_env(
            "UPTAKE_BACKSTAGE_TOKEN",
            "bearer token for UPTAKE_BACKSTAGE_URL (a Backstage static external-access token)",
        ),
    )
    batch_max_messages: int = field(
        # 1,000 messages of ~100 events: inserts of up to ~100k rows (the design's 10k-100k)
        # and a worker RSS near 1.1 GB under backlog (5,000 held 2-2.7 GB; docs/reliability.md).
        default=1000,
        metadata=_env("UPTAKE_BATCH_MAX_MESSAGES", "Kafka messages per worker batch at most"),
    )
    flush_interval_s: float = field(
        default=1.0,
        metadata=_env("UPTAKE_FLUSH_INTERVAL_S", "seconds a batch may wait to fill (seconds)"),
    )
    max_message_bytes: int = field(
        default=1024 * 1024,
        metadata=_env("UPTAKE_MAX_MESSAGE_BYTES", "largest Kafka message accepted (bytes)"),
    )
    max_future_skew_s: float = field(
        default=300.0,
        metadata=_env(
            "UPTAKE_MAX_FUTURE_SKEW_S", "how far occurred_at may lie in the future (seconds)"
        ),
    )
    max_lateness_s: float = field(
        default=7 * 24 * 3600.0,
        metadata=_env("UPTAKE_MAX_LATENESS_S", "oldest occurred_at accepted, as an age (seconds)"),
    )
    backfill_max_age_s: float = field(
        default=730 * 24 * 3600.0,
        metadata=_env(
            "UPTAKE_BACKFILL_MAX_AGE_S",
            "oldest occurred_at `uptake backfill` and the backfill topic accept, as an age "
            f"(seconds; at most {BACKFILL_MAX_AGE_LIMIT_DAYS} days)",
        ),
    )
    dedup_window: int = field(
        default=1_000_000,
        metadata=_env(
            "UPTAKE_DEDUP_WINDOW",
            "event ids the sink remembers to skip an event sent twice (0: off; ~90 bytes each)",
        ),
    )
    undecodable_exit_delay_s: float = field(
        default=45.0,
        metadata=_env(
            "UPTAKE_UNDECODABLE_EXIT_DELAY_S",
            "after a record batch it cannot decode, the worker keeps serving /metrics this "
            "long (so Prometheus scrapes uptake_undecodable_batch_offset) before it exits "
            "with status 65 (seconds; docs/operations.md)",
        ),
    )
    metrics_port: int = field(
        default=9464,
        metadata=_env("UPTAKE_METRICS_PORT", "port of the worker's /metrics (0 disables it)"),
    )
    adoption_gauges_refresh_s: float = field(
        default=60.0,
        metadata=_env(
            "UPTAKE_ADOPTION_GAUGES_REFRESH_S",
            "how often the worker reads the adoption gauges from ClickHouse at most (seconds; "
            "0 turns them off)",
        ),
    )
    adoption_per_team_max_series: int = field(
        default=0,
        metadata=_env(
            "UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES",
            "export per-team adoption and DORA series, at most this many (0: off)",
        ),
    )
    chaos_fail_inserts: int = field(
        default=0,
        metadata=_env(
            "UPTAKE_CHAOS_FAIL_INSERTS",
            "fault injection for tests and drills: fail this many ClickHouse inserts (-1: all)",
        ),
    )
    chaos_fail_inserts_file: str = field(
        default="",
        metadata=_env(
            "UPTAKE_CHAOS_FAIL_INSERTS_FILE",
            "fault injection for tests and drills: every ClickHouse insert fails while this "
            "file exists (a warehouse outage switched on and off by creating and deleting it)",
        ),
    )
    chaos_kill_at: str = field(
        default="",
        metadata=_env(
            "UPTAKE_CHAOS_KILL_AT",
            "fault injection: SIGKILL the worker at before_insert, mid_batch (between the "
            "events and rejects inserts) or after_insert (before the offset commit); "
            "lifecycle_after_state or lifecycle_after_emit in a lifecycle batch",
        ),
    )
    chaos_kill_after_batches: int = field(
        default=0,
        metadata=_env(
            "UPTAKE_CHAOS_KILL_AFTER_BATCHES", "fault injection: batches to finish before the kill"
        ),
    )
    chaos_ignore_watermarks: bool = field(
        default=False,
        metadata=_env(
            "UPTAKE_CHAOS_IGNORE_WATERMARKS",
            "negative control for tests only: the sink forgets what it stored (double counts)",
        ),
    )
    # issue #16, hole 2 (a fault for tests and drills only)
    chaos_poison: str = field(
        default="",
        metadata=_env(
            "UPTAKE_CHAOS_POISON",
            "fault injection: the ingest step named before ':' raises on every message holding "
            "the text after it (e.g. pseudonymise:poison-marker)",
        ),
    )
    log_level: str = field(
        default="info",
        metadata=_env("UPTAKE_LOG_LEVEL", "log level: debug, info, warn, error"),
    )
    # --- the adoption lifecycle (docs/lifecycle.md) -------------------------------------------
    lifecycle_enabled: bool = field(
        default=True,
        metadata=_env(
            "UPTAKE_LIFECYCLE",
            "maintain the adoption lifecycle (milestones per team x capability) in the worker",
        ),
    )
    activation_days: int = field(
        default=3,
        metadata=_env(
            "UPTAKE_ACTIVATION_DAYS", "lifecycle: distinct active days that make an activation"
        ),
    )
    activation_window_days: int = field(
        default=14,
        metadata=_env(
            "UPTAKE_ACTIVATION_WINDOW_DAYS",
            "lifecycle: ... within this many days from the first use (days)",
        ),
    )
    churn_days: int = field(
        default=28,
        metadata=_env("UPTAKE_CHURN_DAYS", "lifecycle: days without use that make a churn (days)"),
    )
    lifecycle_allowed_lateness_days: int = field(
        default=7,
        metadata=_env(
            "UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS",
            "lifecycle: days the event-time watermark trails the newest day seen; a churn waits "
            "for the watermark (days)",
        ),
    )
    # --- the HTTP collector (`uptake collector`; its flags override these) ---------------------
    # Files are `str` with "" meaning none: a `Path` default cannot be empty (Path("") is ".").
    collector_host: str = field(
        default="127.0.0.1",
        metadata=_env("UPTAKE_COLLECTOR_HOST", "collector: interface to listen on (0.0.0.0: all)"),
    )
    collector_port: int = field(
        default=8080,
        metadata=_env("UPTAKE_COLLECTOR_PORT", "collector: TCP port (0: any free port)"),
    )
    collector_tokens: str = field(
        default="",
        metadata=_env(
            "UPTAKE_COLLECTOR_TOKENS",
            "collector: JSON or TOML file, source -> sha256 of its bearer token (empty: none)",
        ),
    )
    collector_webhooks: str = field(
        default="",
        metadata=_env(
            "UPTAKE_COLLECTOR_WEBHOOKS",
            "collector: TOML or JSON file of the webhook adapters to mount (empty: none)",
        ),
    )
    collector_max_body_bytes: int = field(
        default=1024 * 1024,
        metadata=_env(
            "UPTAKE_COLLECTOR_MAX_BODY_BYTES", "collector: largest request body, else 413 (bytes)"
        ),
    )
    collector_max_events: int = field(
        default=1000,
        metadata=_env(
            "UPTAKE_COLLECTOR_MAX_EVENTS", "collector: most events per request, else 413"
        ),
    )
    collector_rate: float = field(
        default=1000.0,
        metadata=_env(
            "UPTAKE_COLLECTOR_RATE",
            "collector: events/s per source on average, else 429 (0 disables the limit)",
        ),
    )
    collector_burst: float = field(
        default=0.0,
        metadata=_env(
            "UPTAKE_COLLECTOR_BURST",
            "collector: events a source may send at once (0: max(rate, max events))",
        ),
    )
    collector_kafka_timeout_s: float = field(
        default=10.0,
        metadata=_env(
            "UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S",
            "collector: wait this long for Kafka's acknowledgement, else 503 (seconds)",
        ),
    )

    @property
    def warehouse_url(self) -> str:
        """The ClickHouse URL in effect: the configured one or the embedded default."""
        if self.clickhouse_url:
            return self.clickhouse_url.reveal()
        return f"chdb://{(self.home / 'warehouse').resolve()}"

    @property
    def team_catalog_paths(self) -> tuple[Path, ...]:
        """The team catalog's files and folders: UPTAKE_TEAM_CATALOG, else config/teams."""
        if self.team_catalog:
            return tuple(Path(p) for p in self.team_catalog.split(os.pathsep) if p.strip())
        return (_default_config("teams"),)

    @property
    def capabilities_path(self) -> Path:
        """The capability catalog file: UPTAKE_CAPABILITIES, else config/capabilities.yaml."""
        if self.capabilities:
            return Path(self.capabilities)
        return _default_config("capabilities.yaml")

    @property
    def kafka(self) -> KafkaSettings:
        """The Kafka part (KAFKA_BOOTSTRAP_SERVERS, UPTAKE_KAFKA_*): the `kafka_*` fields."""
        return self._part(KafkaSettings, "kafka_")

    @property
    def faults(self) -> FaultSettings:
        """The fault-injection part (UPTAKE_CHAOS_*), for pipeline.devtools.faults only."""
        return self._part(FaultSettings, "chaos_")

    def _part(self, part: type[P], prefix: str) -> P:
        return part(**{f.name: getattr(self, prefix + f.name) for f in fields(part)})

    @property
    def pseudonym_key_file(self) -> Path:
        return self.home / "pseudonym.key"

    @property
    def broker_home(self) -> Path:
        return self.home / "kafka"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every field from its environment variable; `overrides` win over the environment.

        Raises SettingsError naming the variable when a value has the wrong type.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            spec: EnvSpec = f.metadata["env"]
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            raw = env.get(spec.name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(spec.name, raw, f.default)
        for name, value in values.items():
            if name in _SECRETS and not isinstance(value, Secret):
                values[name] = Secret(str(value))  # overrides too: never a plain secret
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        if not self.backfill_topic:  # derived, so a private events topic gets its own
            object.__setattr__(self, "backfill_topic", f"{self.events_topic}.backfill")

    def validate(self) -> None:
        if self.writer not in WRITERS:
            raise SettingsError(
                f"UPTAKE_WRITER must be one of {', '.join(WRITERS)}, not {self.writer!r}"
            )
        if not 0 < self.backfill_max_age_s <= BACKFILL_MAX_AGE_LIMIT_DAYS * 86400:
            raise SettingsError(
                f"UPTAKE_BACKFILL_MAX_AGE_S must be more than 0 and at most "
                f"{BACKFILL_MAX_AGE_LIMIT_DAYS} days ({BACKFILL_MAX_AGE_LIMIT_DAYS * 86400} s), "
                f"not {self.backfill_max_age_s:g}"
            )
        if self.backfill_topic in (self.events_topic, self.dlq_topic):
            raise SettingsError(
                "UPTAKE_BACKFILL_TOPIC must differ from UPTAKE_EVENTS_TOPIC and UPTAKE_DLQ_TOPIC"
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise SettingsError(
                f"UPTAKE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
            )
        if self.chaos_kill_at not in KILL_POINTS:
            raise SettingsError(
                f"UPTAKE_CHAOS_KILL_AT must be one of {', '.join(p for p in KILL_POINTS if p)} "
                f"(or empty), not {self.chaos_kill_at!r}"
            )
        if not 1 <= self.activation_days <= self.activation_window_days:
            raise SettingsError(
                "UPTAKE_ACTIVATION_DAYS must be at least 1 and at most "
                "UPTAKE_ACTIVATION_WINDOW_DAYS"
            )
        if self.churn_days < 1 or self.lifecycle_allowed_lateness_days < 0:
            raise SettingsError(
                "UPTAKE_CHURN_DAYS must be at least 1 and "
                "UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS at least 0"
            )
        if self.adoption_gauges_refresh_s != 0 and not 1 <= self.adoption_gauges_refresh_s < 1e9:
            raise SettingsError(
                "UPTAKE_ADOPTION_GAUGES_REFRESH_S must be 0 (off) or at least 1 second"
            )
        if self.adoption_per_team_max_series < 0:
            raise SettingsError(
                "UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES must be 0 (off) or a positive number of series"
            )
        if self.topic_partitions < 1:
            raise SettingsError("UPTAKE_TOPIC_PARTITIONS must be at least 1")
        self._validate_catalogs()
        if self.dedup_window < 0:
            raise SettingsError("UPTAKE_DEDUP_WINDOW must be 0 (off) or a positive number of ids")
        if self.batch_max_messages < 1:
            raise SettingsError("UPTAKE_BATCH_MAX_MESSAGES must be at least 1")
        if self.flush_interval_s <= 0:
            raise SettingsError("UPTAKE_FLUSH_INTERVAL_S must be greater than 0")
        if not 0 <= self.metrics_port <= 65535:
            raise SettingsError("UPTAKE_METRICS_PORT must be a port number (0 disables)")
        self._validate_collector()
        self._validate_kafka_security()
        try:
            parts = urlsplit(self.warehouse_url)
            scheme = parts.scheme
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise SettingsError(
                f"UPTAKE_CLICKHOUSE_URL has an invalid port: {redact_url(self.warehouse_url)} "
                "(percent-encode '/' and ':' in the password)"
            ) from None
        if scheme not in ("chdb", "http", "https"):
            raise SettingsError(
                f"UPTAKE_CLICKHOUSE_URL must start with chdb://, http:// or https://, "
                f"not {scheme or 'nothing'}:// ({redact_url(self.warehouse_url)})"
            )

    def _validate_catalogs(self) -> None:
        reload_s = self.catalog_reload_s
        if not math.isfinite(reload_s) or reload_s < 0:
            raise SettingsError(
                f"UPTAKE_CATALOG_RELOAD_S must be 0 (never reload) or a number of seconds > 0, "
                f"not {reload_s:g}"
            )
        if self.team_catalog and not self.team_catalog_paths:
            raise SettingsError(
                f"UPTAKE_TEAM_CATALOG names no path: give files or folders separated by "
                f"'{os.pathsep}', or leave it empty for config/teams"
            )
        if self.backstage_url:
            parts = urlsplit(self.backstage_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SettingsError(
                    "UPTAKE_BACKSTAGE_URL must be the http:// or https:// address of a Backstage "
                    f"backend, not {redact_url(self.backstage_url)!r}"
                )
        if self.capabilities and self.capabilities != self.capabilities.strip():
            raise SettingsError(
                f"UPTAKE_CAPABILITIES has leading or trailing spaces: {self.capabilities!r}"
            )

    def _validate_kafka_security(self) -> None:
        if self.kafka_compression not in KAFKA_COMPRESSIONS:
            raise SettingsError(
                f"UPTAKE_KAFKA_COMPRESSION must be one of {', '.join(KAFKA_COMPRESSIONS)}, "
                f"not {self.kafka_compression!r}"
            )
        delay = self.undecodable_exit_delay_s
        if not math.isfinite(delay) or not 0 <= delay <= 3600:
            raise SettingsError(
                f"UPTAKE_UNDECODABLE_EXIT_DELAY_S must be between 0 and 3600 seconds, not {delay:g}"
            )
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise SettingsError(
                f"UPTAKE_KAFKA_SECURITY_PROTOCOL must be one of "
                f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}, not {protocol!r}"
            )
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise SettingsError(
                f"UPTAKE_KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)}, "
                f"not {mechanism!r}"
            )
        sasl = protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise SettingsError(
                f"UPTAKE_KAFKA_SECURITY_PROTOCOL={protocol} needs UPTAKE_KAFKA_SASL_USERNAME "
                "and UPTAKE_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise SettingsError(
                "UPTAKE_KAFKA_SASL_USERNAME/UPTAKE_KAFKA_SASL_PASSWORD are set but "
                f"UPTAKE_KAFKA_SECURITY_PROTOCOL is {protocol}: set it to SASL_SSL or "
                "SASL_PLAINTEXT (or unset the credentials)"
            )
        files = (
            ("UPTAKE_KAFKA_SSL_CAFILE", self.kafka_ssl_cafile),
            ("UPTAKE_KAFKA_SSL_CERTFILE", self.kafka_ssl_certfile),
            ("UPTAKE_KAFKA_SSL_KEYFILE", self.kafka_ssl_keyfile),
        )
        for name, path in files:
            if path and protocol not in ("SSL", "SASL_SSL"):
                raise SettingsError(
                    f"{name} is set but UPTAKE_KAFKA_SECURITY_PROTOCOL is {protocol}: TLS "
                    "files need SSL or SASL_SSL"
                )
            if path and not Path(path).is_file():
                raise SettingsError(f"{name}={path!r}: no such file")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise SettingsError("UPTAKE_KAFKA_SSL_KEYFILE needs UPTAKE_KAFKA_SSL_CERTFILE")

    def _validate_collector(self) -> None:
        if not 0 <= self.collector_port <= 65535:
            raise SettingsError(
                f"UPTAKE_COLLECTOR_PORT must be a port number (0-65535, 0: any free port), "
                f"not {self.collector_port}"
            )
        if self.collector_max_body_bytes < 1:
            raise SettingsError("UPTAKE_COLLECTOR_MAX_BODY_BYTES must be at least 1")
        if self.collector_max_events < 1:
            raise SettingsError("UPTAKE_COLLECTOR_MAX_EVENTS must be at least 1")
        if not math.isfinite(self.collector_rate) or self.collector_rate < 0:
            raise SettingsError(
                f"UPTAKE_COLLECTOR_RATE must be a finite number >= 0 (0 disables the limit), "
                f"not {self.collector_rate:g}"
            )
        burst = self.collector_burst
        if not math.isfinite(burst) or (burst != 0 and burst < 1):
            raise SettingsError(
                f"UPTAKE_COLLECTOR_BURST must be 0 (the default size) or a finite number >= 1, "
                f"not {burst:g}"
            )
        timeout = self.collector_kafka_timeout_s
        if not math.isfinite(timeout) or timeout <= 0:
            raise SettingsError(
                f"UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S must be a finite number of seconds > 0, "
                f"not {timeout:g}"
            )

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, value as shown, help) for every setting; secrets redacted."""
        rows = []
        for f in fields(self):
            spec: EnvSpec = f.metadata["env"]
            value = getattr(self, f.name)
            if f.name == "pseudonym_key":
                shown = "(set, hidden)" if value else f"(default) {self.pseudonym_key_file}"
            elif f.name in ("kafka_sasl_password", "backstage_token"):
                shown = "(set, hidden)" if value else ""
            elif isinstance(value, Secret):
                shown = redact_url(value.reveal())
            else:
                shown = str(value)
            if f.name == "clickhouse_url" and not value:
                shown = f"(default) {self.warehouse_url}"
            if f.name == "team_catalog" and not value:
                shown = "(default) " + os.pathsep.join(map(str, self.team_catalog_paths))
            if f.name == "capabilities" and not value:
                shown = f"(default) {self.capabilities_path}"
            rows.append((spec.name, shown, spec.help))
        return rows


def _default_config(name: str) -> Path:
    """`config/<name>` of the working directory when there is one, else the example catalogs
    Uptake ships (the installed package's copy, or the checkout's `config/`)."""
    here = Path("config") / name
    if here.exists():
        return here.resolve()
    return resources.folder("config") / name


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "critical")


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        word = raw.strip().lower()
        if word not in _TRUE + _FALSE:
            choices = ", ".join(_TRUE + _FALSE)
            raise SettingsError(f"{name}={raw!r} is not a boolean: use one of {choices}")
        return word in _TRUE
    try:
        if isinstance(default, Secret):
            return Secret(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
    except ValueError:
        kind = type(default).__name__
        raise SettingsError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
