"""Uptake's settings: one frozen root read from the environment once, one part per component.

`Settings.from_env()` reads every variable (listed by `uptake settings`, secrets redacted) and
validates them; it raises `SettingsError` naming the variable. Each component receives only its
part: `settings.kafka`, `.warehouse`, `.catalog`, `.ingest`, `.faults`, `.lifecycle`,
`.collector`. Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline import resources
from pipeline.contract.decode import Limits

KILL_POINTS = (
    "",
    "before_insert",
    "mid_batch",
    "after_insert",
    "lifecycle_after_state",
    "lifecycle_after_emit",
)
BACKFILL_MAX_AGE_LIMIT_DAYS = 2500
"""One insert may touch at most 100 monthly partitions (ClickHouse's
max_partitions_per_insert_block): ~82 months of history keeps a backfill batch under it."""
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# UPTAKE_KAFKA_COMPRESSION: what Uptake's producers compress with; every consumer reads all of
# them. The default is measured (docs/benchmarks.md, "Producer compression").
KAFKA_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
DEFAULT_KAFKA_COMPRESSION = "lz4"
WRITERS = ("direct", "kafka")  # UPTAKE_WRITER: who inserts into ClickHouse
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")  # UPTAKE_LOG_FORMAT (docs/operations.md#logs)
# Where `uptake rules render` points each alert's runbook_url by default: the operations guide
# of the upstream repository (an operator sets UPTAKE_RUNBOOK_BASE_URL to their own copy).
DEFAULT_RUNBOOK_BASE_URL = "https://github.com/uptake-dev/uptake/blob/main/docs/operations.md"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_HIDDEN = "(set, hidden)"


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


def _setting(variable: str, default: Any, help_: str) -> Any:
    """A field read from `variable` (`default` when unset or empty); `help_` is its listing."""
    return field(default=default, metadata={"env": EnvSpec(variable, help_)})


def _home() -> Any:
    """The root's UPTAKE_HOME, handed down to the parts that keep state in it (not listed)."""
    return field(default=Path(".uptake"), repr=False)


def _one_of(variable: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        listed = ", ".join(c for c in choices if c)
        tail = " (or empty)" if "" in choices else ""
        raise SettingsError(f"{variable} must be one of {listed}{tail}, not {value!r}")


def check_log_format(word: str) -> str:
    """`word` when it is a UPTAKE_LOG_FORMAT (the CLI reads it before the settings); else
    SettingsError naming the choices."""
    _one_of("UPTAKE_LOG_FORMAT", word, LOG_FORMATS)
    return word


def _check_runbook_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise SettingsError(
            "UPTAKE_RUNBOOK_BASE_URL must be an absolute http(s) URL of docs/operations.md "
            f"without a #fragment (each alert adds its anchor), not {url!r}"
        )


def _at_least(variable: str, value: float, low: float, what: str = "") -> None:
    if value < low:
        raise SettingsError(f"{variable} must be {what or f'at least {low}'}")


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka part: brokers, Uptake's topics and how clients authenticate (kafka/security.py)."""

    bootstrap: str = _setting(
        "KAFKA_BOOTSTRAP_SERVERS",
        "127.0.0.1:9092",
        "Kafka bootstrap servers, host:port[,host:port]",
    )
    events_topic: str = _setting(
        "UPTAKE_EVENTS_TOPIC", "uptake.events", "topic the platform events arrive on"
    )
    dlq_topic: str = _setting(
        "UPTAKE_DLQ_TOPIC", "uptake.events.dlq", "dead-letter topic for rejected events"
    )
    backfill_topic: str = _setting(
        "UPTAKE_BACKFILL_TOPIC",
        "",
        "topic `uptake backfill` sends old events to; the worker reads it without the "
        "lateness limit (default: <UPTAKE_EVENTS_TOPIC>.backfill)",
    )
    topic_partitions: int = _setting(
        "UPTAKE_TOPIC_PARTITIONS", 4, "partitions when Uptake creates its topics"
    )
    consumer_group: str = _setting(
        "UPTAKE_CONSUMER_GROUP", "uptake-worker", "Kafka consumer group (and faust app id)"
    )
    # --- security (docs/deploy.md#security; pipeline/kafka/security.py) ------------------------
    security_protocol: str = _setting(
        "UPTAKE_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "how every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    )
    sasl_mechanism: str = _setting(
        "UPTAKE_KAFKA_SASL_MECHANISM",
        "PLAIN",
        "SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    sasl_username: str = _setting(
        "UPTAKE_KAFKA_SASL_USERNAME", "", "SASL user name (SASL_* protocols)"
    )
    sasl_password: Secret = _setting(
        "UPTAKE_KAFKA_SASL_PASSWORD", Secret(""), "SASL password (SASL_* protocols; never shown)"
    )
    ssl_cafile: str = _setting(
        "UPTAKE_KAFKA_SSL_CAFILE",
        "",
        "PEM file of the CAs that sign the brokers' certificates with SSL/SASL_SSL "
        "(empty: the system's CAs)",
    )
    ssl_certfile: str = _setting(
        "UPTAKE_KAFKA_SSL_CERTFILE",
        "",
        "PEM client certificate for mutual TLS with SSL/SASL_SSL (empty: none)",
    )
    ssl_keyfile: str = _setting(
        "UPTAKE_KAFKA_SSL_KEYFILE",
        "",
        "PEM private key of UPTAKE_KAFKA_SSL_CERTFILE (empty: in the certificate file)",
    )
    compression: str = _setting(
        "UPTAKE_KAFKA_COMPRESSION",
        DEFAULT_KAFKA_COMPRESSION,
        "compression of the record batches Uptake's producers send (SDK, collector, "
        "simulator, backfill, dead letters): none, gzip, snappy, lz4 or zstd; consumers "
        "read every codec whatever this says (docs/events.md#compression)",
    )

    def __post_init__(self) -> None:
        if not self.backfill_topic:  # derived, so a private events topic gets its own
            object.__setattr__(self, "backfill_topic", f"{self.events_topic}.backfill")

    def validate(self) -> None:
        if self.backfill_topic in (self.events_topic, self.dlq_topic):
            raise SettingsError(
                "UPTAKE_BACKFILL_TOPIC must differ from UPTAKE_EVENTS_TOPIC and UPTAKE_DLQ_TOPIC"
            )
        _at_least("UPTAKE_TOPIC_PARTITIONS", self.topic_partitions, 1)
        _one_of("UPTAKE_KAFKA_COMPRESSION", self.compression, KAFKA_COMPRESSIONS)
        protocol = self.security_protocol
        _one_of("UPTAKE_KAFKA_SECURITY_PROTOCOL", protocol, KAFKA_SECURITY_PROTOCOLS)
        _one_of("UPTAKE_KAFKA_SASL_MECHANISM", self.sasl_mechanism, KAFKA_SASL_MECHANISMS)
        sasl = protocol.startswith("SASL_")
        if sasl and not (self.sasl_username and self.sasl_password):
            raise SettingsError(
                f"UPTAKE_KAFKA_SECURITY_PROTOCOL={protocol} needs UPTAKE_KAFKA_SASL_USERNAME "
                "and UPTAKE_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_username or self.sasl_password):
            raise SettingsError(
                "UPTAKE_KAFKA_SASL_USERNAME/UPTAKE_KAFKA_SASL_PASSWORD are set but "
                f"UPTAKE_KAFKA_SECURITY_PROTOCOL is {protocol}: set it to SASL_SSL or "
                "SASL_PLAINTEXT (or unset the credentials)"
            )
        files = (
            ("UPTAKE_KAFKA_SSL_CAFILE", self.ssl_cafile),
            ("UPTAKE_KAFKA_SSL_CERTFILE", self.ssl_certfile),
            ("UPTAKE_KAFKA_SSL_KEYFILE", self.ssl_keyfile),
        )
        for name, path in files:
            if path and protocol not in ("SSL", "SASL_SSL"):
                raise SettingsError(
                    f"{name} is set but UPTAKE_KAFKA_SECURITY_PROTOCOL is {protocol}: TLS "
                    "files need SSL or SASL_SSL"
                )
            if path and not Path(path).is_file():
                raise SettingsError(f"{name}={path!r}: no such file")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise SettingsError("UPTAKE_KAFKA_SSL_KEYFILE needs UPTAKE_KAFKA_SSL_CERTFILE")


@dataclass(frozen=True)
class WarehouseSettings:
    """The warehouse part: which ClickHouse, in which mode, and who writes to it."""

    clickhouse_url: Secret = _setting(
        "UPTAKE_CLICKHOUSE_URL",
        Secret(""),
        "warehouse: chdb:///path (embedded, default <home>/warehouse) or "
        "http(s)://user:password@host:port/database",
    )
    cluster: str = _setting(
        "UPTAKE_CLICKHOUSE_CLUSTER",
        "",
        "ClickHouse cluster (remote_servers) for ON CLUSTER DDL: Replicated tables behind "
        "Distributed ones (empty: one server or the embedded engine; docs/deploy.md)",
    )
    writer: str = _setting(
        "UPTAKE_WRITER",
        "direct",
        "who writes to ClickHouse: direct (each worker) or kafka (workers publish enriched "
        "batches to UPTAKE_WRITER_TOPIC and one `uptake writer` inserts; docs/deploy.md)",
    )
    writer_topic: str = _setting(
        "UPTAKE_WRITER_TOPIC",
        "uptake.enriched",
        "internal topic from the workers to `uptake writer` when UPTAKE_WRITER=kafka",
    )
    # Bounds of the embedded engine (chdb) inside the worker: 1,000-message batches of 100
    # events use ~130 MB of it (docs/benchmarks.md, "Batch size and memory").
    chdb_max_memory_mb: int = _setting(
        "UPTAKE_CHDB_MAX_MEMORY_MB",
        320,
        "embedded engine in the worker: memory for all its queries, inserts and merges "
        "together (MB; max_server_memory_usage; a ClickHouse server ignores it)",
    )
    chdb_max_query_memory_mb: int = _setting(
        "UPTAKE_CHDB_MAX_QUERY_MEMORY_MB",
        256,
        "embedded engine in the worker: memory one query or insert may use (MB; "
        "max_memory_usage; at most UPTAKE_CHDB_MAX_MEMORY_MB)",
    )
    chdb_cache_mb: int = _setting(
        "UPTAKE_CHDB_CACHE_MB",
        32,
        "embedded engine in the worker: size of each of its caches of marks, primary index "
        "and query conditions (MB; ClickHouse's default is 5 GB each)",
    )
    home: Path = _home()

    def engine_options(self) -> dict[str, int]:
        """The embedded engine's settings (ClickHouse names) that bound its memory."""
        mb = 1024 * 1024
        cache = self.chdb_cache_mb * mb
        return {
            "max_server_memory_usage": self.chdb_max_memory_mb * mb,
            "max_memory_usage": self.chdb_max_query_memory_mb * mb,
            "mark_cache_size": cache,
            "index_mark_cache_size": cache,
            "primary_index_cache_size": cache,
            "query_condition_cache_size": cache,
        }

    @property
    def url(self) -> str:
        """The ClickHouse URL in effect: the configured one or the embedded default."""
        if self.clickhouse_url:
            return self.clickhouse_url.reveal()
        return f"chdb://{(self.home / 'warehouse').resolve()}"

    def validate(self) -> None:
        _one_of("UPTAKE_WRITER", self.writer, WRITERS)
        _at_least("UPTAKE_CHDB_MAX_MEMORY_MB", self.chdb_max_memory_mb, 64, "at least 64 MB")
        if not 16 <= self.chdb_max_query_memory_mb <= self.chdb_max_memory_mb:
            raise SettingsError(
                "UPTAKE_CHDB_MAX_QUERY_MEMORY_MB must be at least 16 MB and at most "
                f"UPTAKE_CHDB_MAX_MEMORY_MB ({self.chdb_max_memory_mb}), not "
                f"{self.chdb_max_query_memory_mb}"
            )
        _at_least("UPTAKE_CHDB_CACHE_MB", self.chdb_cache_mb, 0, "0 (no cache) or more MB")
        try:
            parts = urlsplit(self.url)
            scheme = parts.scheme
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise SettingsError(
                f"UPTAKE_CLICKHOUSE_URL has an invalid port: {redact_url(self.url)} "
                "(percent-encode '/' and ':' in the password)"
            ) from None
        if scheme not in ("chdb", "http", "https"):
            raise SettingsError(
                f"UPTAKE_CLICKHOUSE_URL must start with chdb://, http:// or https://, "
                f"not {scheme or 'nothing'}:// ({redact_url(self.url)})"
            )


@dataclass(frozen=True)
class CatalogSettings:
    """The enrichment part: the team and capability catalogs and the user pseudonym key."""

    pseudonym_key: Secret = _setting(
        "UPTAKE_PSEUDONYM_KEY",
        Secret(""),
        "secret key of the user pseudonyms (default: a random key in <home>/pseudonym.key)",
    )
    # Catalog paths are `str` with "" meaning the repository's config/ (see the properties).
    team_catalog: str = _setting(
        "UPTAKE_TEAM_CATALOG",
        "",
        "team catalog: Backstage catalog-info .yaml files, ownership .csv files and folders "
        f"of them, separated by '{os.pathsep}' (default: config/teams)",
    )
    capabilities: str = _setting(
        "UPTAKE_CAPABILITIES", "", "capability catalog file (default: config/capabilities.yaml)"
    )
    reload_s: float = _setting(
        "UPTAKE_CATALOG_RELOAD_S",
        10.0,
        "how often the worker checks the catalog files for changes (seconds; 0: never)",
    )
    backstage_url: str = _setting(
        "UPTAKE_BACKSTAGE_URL",
        "",
        "a Backstage backend whose catalog API is one more team catalog source, e.g. "
        "https://backstage.example.com (default: none)",
    )
    backstage_token: Secret = _setting(
        "UPTAKE_BACKSTAGE_TOKEN",
        Secret(""),
        "bearer token for UPTAKE_BACKSTAGE_URL (a Backstage static external-access token)",
    )
    home: Path = _home()

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
    def pseudonym_key_file(self) -> Path:
        return self.home / "pseudonym.key"

    def validate(self) -> None:
        if not math.isfinite(self.reload_s) or self.reload_s < 0:
            raise SettingsError(
                f"UPTAKE_CATALOG_RELOAD_S must be 0 (never reload) or a number of seconds > 0, "
                f"not {self.reload_s:g}"
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


@dataclass(frozen=True)
class IngestSettings:
    """The worker part: batches, the decoder's limits, replay dedup, exit delay, /metrics."""

    batch_max_messages: int = _setting(
        # 20,000 one-event messages make one ~20k-row insert (1,000 made the worker insert-bound
        # at ~4k events/s); messages of ~100 events meet UPTAKE_BATCH_MAX_BYTES first, at ~400
        # (docs/benchmarks.md, "Where the time goes (1 event per message)").
        "UPTAKE_BATCH_MAX_MESSAGES",
        20_000,
        "Kafka messages per worker batch at most",
    )
    batch_max_bytes: int = _setting(
        # Whichever bound comes first closes a batch: bytes keep a batch of large messages
        # small in memory (8 MiB: ~24k events of ~340 bytes; 16 MiB peaked ~90 MiB higher
        # through a backlog at no measurable gain, docs/benchmarks.md "Batch size and
        # memory"), while ~20,000 one-event messages still make one large insert.
        "UPTAKE_BATCH_MAX_BYTES",
        8 * 1024 * 1024,
        "Kafka message bytes (values and keys) per worker batch at most; a larger single "
        "message is a batch of its own",
    )
    fetch_max_bytes: int = _setting(
        # 16 MiB per partition held ~200 MB of fetched messages under backlog (8 partitions:
        # events and backfill topics); docs/benchmarks.md, "Batch size and memory".
        "UPTAKE_FETCH_MAX_BYTES",
        1024 * 1024,
        "bytes the worker fetches from Kafka per partition and request at most (a larger "
        "message is still fetched whole)",
    )
    stream_buffer_messages: int = _setting(
        # faust's default floor of 4,096 messages held ~80 MB more under backlog.
        "UPTAKE_STREAM_BUFFER_MESSAGES",
        0,
        "fetched messages the worker holds ahead of its batch at most (0: "
        "UPTAKE_BATCH_MAX_MESSAGES; at least that many)",
    )
    flush_interval_s: float = _setting(
        "UPTAKE_FLUSH_INTERVAL_S", 1.0, "seconds a batch may wait to fill (seconds)"
    )
    max_message_bytes: int = _setting(
        "UPTAKE_MAX_MESSAGE_BYTES", 1024 * 1024, "largest Kafka message accepted (bytes)"
    )
    max_future_skew_s: float = _setting(
        "UPTAKE_MAX_FUTURE_SKEW_S", 300.0, "how far occurred_at may lie in the future (seconds)"
    )
    max_lateness_s: float = _setting(
        "UPTAKE_MAX_LATENESS_S", 7 * 24 * 3600.0, "oldest occurred_at accepted, as an age (seconds)"
    )
    backfill_max_age_s: float = _setting(
        "UPTAKE_BACKFILL_MAX_AGE_S",
        730 * 24 * 3600.0,
        "oldest occurred_at `uptake backfill` and the backfill topic accept, as an age "
        f"(seconds; at most {BACKFILL_MAX_AGE_LIMIT_DAYS} days)",
    )
    dedup_window: int = _setting(
        "UPTAKE_DEDUP_WINDOW",
        1_000_000,
        "event ids the sink remembers to skip an event sent twice (0: off; 28 bytes each)",
    )
    undecodable_exit_delay_s: float = _setting(
        "UPTAKE_UNDECODABLE_EXIT_DELAY_S",
        45.0,
        "after a record batch it cannot decode, the worker keeps serving /metrics this "
        "long (so Prometheus scrapes uptake_undecodable_batch_offset) before it exits "
        "with status 65 (seconds; docs/operations.md)",
    )
    metrics_port: int = _setting(
        "UPTAKE_METRICS_PORT", 9464, "port of the worker's /metrics (0 disables it)"
    )
    adoption_gauges_refresh_s: float = _setting(
        "UPTAKE_ADOPTION_GAUGES_REFRESH_S",
        60.0,
        "how often the worker reads the adoption gauges from ClickHouse at most (seconds; "
        "0 turns them off)",
    )
    adoption_per_team_max_series: int = _setting(
        "UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES",
        0,
        "export per-team adoption and DORA series, at most this many (0: off)",
    )

    def stream_buffer(self) -> int:
        """Messages faust buffers per stream: at least one batch."""
        return max(self.stream_buffer_messages, self.batch_max_messages)

    def limits(self, *, backfill: bool = False) -> Limits:
        """The decoder rules of the live topic, or of the backfill topic (its own age limit)."""
        if backfill:
            lateness, hint = (
                self.backfill_max_age_s,
                "UPTAKE_BACKFILL_MAX_AGE_S sets the limit of backfills",
            )
        else:
            lateness, hint = self.max_lateness_s, Limits.too_old_hint
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_future_skew=timedelta(seconds=self.max_future_skew_s),
            max_lateness=timedelta(seconds=lateness),
            too_old_hint=hint,
        )

    def validate(self) -> None:
        if not 0 < self.backfill_max_age_s <= BACKFILL_MAX_AGE_LIMIT_DAYS * 86400:
            raise SettingsError(
                f"UPTAKE_BACKFILL_MAX_AGE_S must be more than 0 and at most "
                f"{BACKFILL_MAX_AGE_LIMIT_DAYS} days ({BACKFILL_MAX_AGE_LIMIT_DAYS * 86400} s), "
                f"not {self.backfill_max_age_s:g}"
            )
        if self.adoption_gauges_refresh_s != 0 and not 1 <= self.adoption_gauges_refresh_s < 1e9:
            raise SettingsError(
                "UPTAKE_ADOPTION_GAUGES_REFRESH_S must be 0 (off) or at least 1 second"
            )
        series = "0 (off) or a positive number of series"
        _at_least(
            "UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES", self.adoption_per_team_max_series, 0, series
        )
        ids = "0 (off) or a positive number of ids"
        _at_least("UPTAKE_DEDUP_WINDOW", self.dedup_window, 0, ids)
        _at_least("UPTAKE_BATCH_MAX_MESSAGES", self.batch_max_messages, 1)
        _at_least("UPTAKE_STREAM_BUFFER_MESSAGES", self.stream_buffer_messages, 0)
        _at_least("UPTAKE_FETCH_MAX_BYTES", self.fetch_max_bytes, 64 * 1024, "at least 65536")
        _at_least("UPTAKE_BATCH_MAX_BYTES", self.batch_max_bytes, 1)
        if self.flush_interval_s <= 0:
            raise SettingsError("UPTAKE_FLUSH_INTERVAL_S must be greater than 0")
        if not 0 <= self.metrics_port <= 65535:
            raise SettingsError("UPTAKE_METRICS_PORT must be a port number (0 disables)")
        delay = self.undecodable_exit_delay_s
        if not math.isfinite(delay) or not 0 <= delay <= 3600:
            raise SettingsError(
                f"UPTAKE_UNDECODABLE_EXIT_DELAY_S must be between 0 and 3600 seconds, not {delay:g}"
            )


@dataclass(frozen=True)
class FaultSettings:
    """Fault injection for drills and the reliability suite (devtools/faults.py); all empty in
    production."""

    fail_inserts: int = _setting(
        "UPTAKE_CHAOS_FAIL_INSERTS",
        0,
        "fault injection for tests and drills: fail this many ClickHouse inserts (-1: all)",
    )
    fail_inserts_file: str = _setting(
        "UPTAKE_CHAOS_FAIL_INSERTS_FILE",
        "",
        "fault injection for tests and drills: every ClickHouse insert fails while this "
        "file exists (a warehouse outage switched on and off by creating and deleting it)",
    )
    kill_at: str = _setting(
        "UPTAKE_CHAOS_KILL_AT",
        "",
        "fault injection: SIGKILL the worker at before_insert, mid_batch (between the "
        "events and rejects inserts) or after_insert (before the offset commit); "
        "lifecycle_after_state or lifecycle_after_emit in a lifecycle batch",
    )
    kill_after_batches: int = _setting(
        "UPTAKE_CHAOS_KILL_AFTER_BATCHES", 0, "fault injection: batches to finish before the kill"
    )
    ignore_watermarks: bool = _setting(
        "UPTAKE_CHAOS_IGNORE_WATERMARKS",
        False,
        "negative control for tests only: the sink forgets what it stored (double counts)",
    )
    # issue #16, hole 2: a message that makes an ingest step raise
    poison: str = _setting(
        "UPTAKE_CHAOS_POISON",
        "",
        "fault injection: the ingest step named before ':' raises on every message holding "
        "the text after it (e.g. pseudonymise:poison-marker)",
    )

    @property
    def present(self) -> bool:
        return bool(
            self.fail_inserts
            or self.fail_inserts_file
            or self.kill_at
            or self.ignore_watermarks
            or self.poison
        )

    def validate(self) -> None:
        _one_of("UPTAKE_CHAOS_KILL_AT", self.kill_at, KILL_POINTS)


@dataclass(frozen=True)
class LifecycleSettings:
    """The adoption lifecycle part (docs/lifecycle.md)."""

    enabled: bool = _setting(
        "UPTAKE_LIFECYCLE",
        True,
        "maintain the adoption lifecycle (milestones per team x capability) in the worker",
    )
    activation_days: int = _setting(
        "UPTAKE_ACTIVATION_DAYS", 3, "lifecycle: distinct active days that make an activation"
    )
    activation_window_days: int = _setting(
        "UPTAKE_ACTIVATION_WINDOW_DAYS",
        14,
        "lifecycle: ... within this many days from the first use (days)",
    )
    churn_days: int = _setting(
        "UPTAKE_CHURN_DAYS", 28, "lifecycle: days without use that make a churn (days)"
    )
    allowed_lateness_days: int = _setting(
        "UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS",
        7,
        "lifecycle: days the event-time watermark trails the newest day seen; a churn waits "
        "for the watermark (days)",
    )

    def validate(self) -> None:
        if not 1 <= self.activation_days <= self.activation_window_days:
            raise SettingsError(
                "UPTAKE_ACTIVATION_DAYS must be at least 1 and at most "
                "UPTAKE_ACTIVATION_WINDOW_DAYS"
            )
        if self.churn_days < 1 or self.allowed_lateness_days < 0:
            raise SettingsError(
                "UPTAKE_CHURN_DAYS must be at least 1 and "
                "UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS at least 0"
            )


@dataclass(frozen=True)
class CollectorSettings:
    """The HTTP collector part (`uptake collector`; its flags override these)."""

    # Files are `str` with "" meaning none: a `Path` default cannot be empty (Path("") is ".").
    host: str = _setting(
        "UPTAKE_COLLECTOR_HOST", "127.0.0.1", "collector: interface to listen on (0.0.0.0: all)"
    )
    port: int = _setting("UPTAKE_COLLECTOR_PORT", 8080, "collector: TCP port (0: any free port)")
    scrape_port: int = _setting(
        "UPTAKE_COLLECTOR_METRICS_PORT",
        9101,
        "collector: port of /metrics, on the same interface, never the public port (0: not served)",
    )
    tokens_file: str = _setting(
        "UPTAKE_COLLECTOR_TOKENS",
        "",
        "collector: JSON or TOML file, source -> sha256 of its bearer token (empty: none)",
    )
    webhooks_file: str = _setting(
        "UPTAKE_COLLECTOR_WEBHOOKS",
        "",
        "collector: TOML or JSON file of the webhook adapters to mount (empty: none)",
    )
    max_body_bytes: int = _setting(
        "UPTAKE_COLLECTOR_MAX_BODY_BYTES",
        1024 * 1024,
        "collector: largest request body, else 413 (bytes)",
    )
    max_events: int = _setting(
        "UPTAKE_COLLECTOR_MAX_EVENTS", 1000, "collector: most events per request, else 413"
    )
    rate: float = _setting(
        "UPTAKE_COLLECTOR_RATE",
        1000.0,
        "collector: events/s per source on average, else 429 (0 disables the limit)",
    )
    burst: float = _setting(
        "UPTAKE_COLLECTOR_BURST",
        0.0,
        "collector: events a source may send at once (0: max(rate, max events))",
    )
    kafka_timeout_s: float = _setting(
        "UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S",
        10.0,
        "collector: wait this long for Kafka's acknowledgement, else 503 (seconds)",
    )
    # --- webhook limits and replay protection (issue #16, hole 7) ----------------------------
    webhook_max_body_bytes: int = _setting(
        "UPTAKE_COLLECTOR_WEBHOOK_MAX_BODY_BYTES",
        64 * 1024,
        "collector: largest webhook delivery, checked before reading, else 413 (bytes)",
    )
    max_in_flight: int = _setting(
        "UPTAKE_COLLECTOR_MAX_IN_FLIGHT",
        256,
        "collector: requests to /v1/events and /v1/webhooks handled at once, else 503",
    )
    replay_ttl_s: float = _setting(
        "UPTAKE_COLLECTOR_WEBHOOK_REPLAY_TTL_S",
        3 * 24 * 3600.0,
        "collector: remember a webhook delivery id this long to answer a replay (seconds)",
    )
    replay_entries: int = _setting(
        "UPTAKE_COLLECTOR_WEBHOOK_REPLAY_ENTRIES",
        100_000,
        "collector: most delivery ids remembered (oldest forgotten first)",
    )
    # --- coalescing concurrent requests into fewer Kafka messages (issue #15, item 4) ---------
    coalesce_linger_ms: float = _setting(
        "UPTAKE_COLLECTOR_COALESCE_LINGER_MS",
        3.0,
        "collector: gather concurrent requests' events this long into one message per key "
        "(milliseconds; 0: each request produced alone)",
    )
    coalesce_max_events: int = _setting(
        "UPTAKE_COLLECTOR_COALESCE_MAX_EVENTS",
        500,
        "collector: most events in one coalesced message (a window closes at this many)",
    )
    coalesce_max_bytes: int = _setting(
        "UPTAKE_COLLECTOR_COALESCE_MAX_BYTES",
        512 * 1024,  # the SDK's MESSAGE_TARGET_BYTES; capped by UPTAKE_MAX_MESSAGE_BYTES
        "collector: largest coalesced message (bytes; a window closes at this many)",
    )

    def validate(self, flags: Mapping[str, str] | None = None) -> None:
        """Raise SettingsError naming the variable (and its flag from `flags`, field -> flag)."""

        def name(option: str) -> str:
            variable = _COLLECTOR_ENV[option]
            flag = (flags or {}).get(option)
            return f"{variable} / {flag}" if flag else variable

        if not 0 <= self.port <= 65535:
            raise SettingsError(
                f"{name('port')} must be a port number (0-65535, 0: any free port), not {self.port}"
            )
        if not 0 <= self.scrape_port <= 65535 or self.scrape_port == self.port != 0:
            raise SettingsError(
                f"{name('scrape_port')} must be a port number other than {name('port')} "
                f"(0: no /metrics), not {self.scrape_port}"
            )
        _at_least(name("max_body_bytes"), self.max_body_bytes, 1)
        _at_least(name("max_events"), self.max_events, 1)
        if not math.isfinite(self.rate) or self.rate < 0:
            raise SettingsError(
                f"{name('rate')} must be a finite number >= 0 (0 disables the limit), "
                f"not {self.rate:g}"
            )
        if not math.isfinite(self.burst) or (self.burst != 0 and self.burst < 1):
            raise SettingsError(
                f"{name('burst')} must be 0 (the default size) or a finite number >= 1, "
                f"not {self.burst:g}"
            )
        if not math.isfinite(self.kafka_timeout_s) or self.kafka_timeout_s <= 0:
            raise SettingsError(
                f"{name('kafka_timeout_s')} must be a finite number of seconds > 0, "
                f"not {self.kafka_timeout_s:g}"
            )
        for option in ("webhook_max_body_bytes", "max_in_flight", "replay_entries"):
            _at_least(name(option), getattr(self, option), 1)
        if not math.isfinite(self.replay_ttl_s) or self.replay_ttl_s <= 0:
            raise SettingsError(
                f"{name('replay_ttl_s')} must be a finite number of seconds > 0, "
                f"not {self.replay_ttl_s:g}"
            )
        if not math.isfinite(self.coalesce_linger_ms) or not 0 <= self.coalesce_linger_ms <= 1000:
            raise SettingsError(
                f"{name('coalesce_linger_ms')} must be 0 (no coalescing) to 1000 milliseconds, "
                f"not {self.coalesce_linger_ms:g}"
            )
        for option in ("coalesce_max_events", "coalesce_max_bytes"):
            _at_least(name(option), getattr(self, option), 1)


_COLLECTOR_ENV = {f.name: f.metadata["env"].name for f in fields(CollectorSettings)}


Part = (
    KafkaSettings
    | WarehouseSettings
    | CatalogSettings
    | IngestSettings
    | FaultSettings
    | LifecycleSettings
    | CollectorSettings
)


@dataclass(frozen=True)
class Settings:
    """Uptake's configuration: the root and its parts, in the order `uptake settings` lists them.

    Build it with `Settings.from_env()`; fields are immutable.
    """

    home: Path = _setting(
        "UPTAKE_HOME", Path(".uptake"), "folder for local state: embedded warehouse, broker data"
    )
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    warehouse: WarehouseSettings = field(default_factory=WarehouseSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    log_level: str = _setting("UPTAKE_LOG_LEVEL", "info", "log level: debug, info, warn, error")
    log_format: str = _setting(
        "UPTAKE_LOG_FORMAT",
        "text",
        "log lines on stderr: text, or json (one object a line: timestamp, level, logger, "
        "message, component, pid and extras) in every process",
    )
    runbook_base_url: str = _setting(
        "UPTAKE_RUNBOOK_BASE_URL",
        DEFAULT_RUNBOOK_BASE_URL,
        "absolute http(s) URL of docs/operations.md that `uptake rules render` puts in every "
        "alert's runbook_url (the alert's anchor is appended)",
    )
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    collector: CollectorSettings = field(default_factory=CollectorSettings)

    def __post_init__(self) -> None:  # the parts that keep state in UPTAKE_HOME get it
        for name in ("warehouse", "catalog"):
            object.__setattr__(self, name, replace(getattr(self, name), home=self.home))

    @property
    def broker_home(self) -> Path:
        return self.home / "kafka"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every variable; `overrides` (field names of the root or of a part) win.

        Raises SettingsError naming the variable when a value has the wrong type or is out of
        range, TypeError for an override that names no field.
        """
        env = os.environ if environ is None else environ
        unknown = sorted(set(overrides) - set(_VARIABLES))
        if unknown:
            raise TypeError(f"Settings has no field {', '.join(unknown)}")
        values: dict[str | None, dict[str, Any]] = {}
        for name, (part, f) in _VARIABLES.items():
            spec, default = f.metadata["env"], f.default
            raw = env.get(spec.name)
            if name in overrides:
                value = overrides[name]
            elif raw is None or raw == "":
                continue
            else:
                value = _parse(spec.name, raw, default)
            if isinstance(default, Secret) and not isinstance(value, Secret):
                value = Secret(str(value))  # overrides too: never a plain secret
            values.setdefault(part, {})[name] = value
        root: dict[str, Any] = values.pop(None, {})
        for name, part_type in _PARTS.items():
            root[name] = part_type(**values.get(name, {}))
        settings = cls(**root)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise SettingsError, naming the variable, for the first value Uptake cannot use."""
        if self.log_level.lower() not in LOG_LEVELS:
            raise SettingsError(
                f"UPTAKE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
            )
        check_log_format(self.log_format)
        _check_runbook_base_url(self.runbook_base_url)
        for part in self.parts():
            part.validate()

    def parts(self) -> tuple[Part, ...]:
        return tuple(getattr(self, name) for name in _PARTS)

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, value as shown, help) for every setting; secrets redacted."""
        rows = []
        for name, (part, f) in _VARIABLES.items():
            spec = f.metadata["env"]
            value = getattr(self if part is None else getattr(self, part), name)
            if isinstance(value, Secret) and not name.endswith("_url"):
                shown = _HIDDEN if value else ""
            elif isinstance(value, Secret):
                shown = redact_url(value.reveal())
            else:
                shown = str(value)
            if not value:
                shown = self._default_shown(name) or shown
            rows.append((spec.name, shown, spec.help))
        return rows

    def _default_shown(self, name: str) -> str:
        """How an unset setting with a derived default is listed ("" for the others)."""
        derived = {
            "pseudonym_key": lambda: self.catalog.pseudonym_key_file,
            "clickhouse_url": lambda: self.warehouse.url,
            "team_catalog": lambda: os.pathsep.join(map(str, self.catalog.team_catalog_paths)),
            "capabilities": lambda: self.catalog.capabilities_path,
        }
        return f"(default) {derived[name]()}" if name in derived else ""


_PARTS: dict[str, type[Part]] = {
    f.name: f.default_factory  # type: ignore[misc]  # each part's factory is its class
    for f in fields(Settings)
    if "env" not in f.metadata
}


def variable_fields() -> list[Field[Any]]:
    """The field of every variable, of the root and of the parts, in listing order."""
    return [g for _, g in _variables().values()]


def _variables() -> dict[str, tuple[str | None, Field[Any]]]:
    """field name -> (its part, or None for the root; its field), in listing order. Field names
    are unique across the parts, so an override names one field."""
    found: dict[str, tuple[str | None, Field[Any]]] = {}
    for f in fields(Settings):
        members: list[tuple[str | None, Field[Any]]] = [(None, f)]
        if f.name in _PARTS:
            members = [(f.name, g) for g in fields(_PARTS[f.name])]
        for part, g in members:
            if "env" in g.metadata:
                assert g.name not in found, f"two settings named {g.name}"
                found[g.name] = (part, g)
    return found


_VARIABLES = _variables()


def _default_config(name: str) -> Path:
    """`config/<name>` of the working directory when there is one, else the example catalogs
    Uptake ships (the installed package's copy, or the checkout's `config/`)."""
    here = Path("config") / name
    if here.exists():
        return here.resolve()
    return resources.folder("config") / name


def _parse(name: str, raw: str, default: object) -> object:
    """`raw` read as the type of `default`; SettingsError naming `name` when it is not one."""
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
