"""The collector's options: the settings' collector part (`UPTAKE_COLLECTOR_*`), its Kafka part
and the live decoder limits, with the flags of `uptake collector` over them. Reads no
environment itself; bad values raise `SettingsError` naming the variable and the flag."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.settings import CollectorSettings, KafkaSettings, Settings, SettingsError
from pipeline.contract.decode import Limits
from pipeline.kafka.security import client_kwargs

_OPTIONS = dataclasses.fields(CollectorSettings)
ENV: dict[str, str] = {f.name: f.metadata["env"].name for f in _OPTIONS}
"""CollectorConfig field -> environment variable of its default (`UPTAKE_COLLECTOR_*`)."""

_NO_FLAG = (
    "webhook_max_body_bytes",
    "max_in_flight",
    "replay_ttl_s",
    "replay_entries",
    "coalesce_linger_ms",
    "coalesce_max_events",
    "coalesce_max_bytes",
)
FLAGS = {name: "--" + name.replace("_", "-") for name in ENV if name not in _NO_FLAG} | {
    "kafka_timeout_s": "--kafka-timeout",
    "scrape_port": "--metrics-port",
}
"""CollectorConfig field -> its `uptake collector` flag, named with the variable in errors."""
_UNSET_AS_NONE = ("tokens_file", "webhooks_file", "burst")  # "" or 0 in the settings
_DEFAULTS = CollectorSettings()
_KAFKA = KafkaSettings()


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs; immutable. Build it with `CollectorConfig.from_env()`.

    The options are those of the settings' collector part, with the same names and defaults, so
    a config built directly (in tests) and one built from an empty environment agree.
    """

    host: str = _DEFAULTS.host
    """Interface to listen on; 0.0.0.0 for every interface."""
    port: int = _DEFAULTS.port
    """TCP port to listen on (0: any free port)."""
    scrape_port: int = _DEFAULTS.scrape_port
    """Port of /metrics on the same interface (0: not served); never the public port."""
    tokens_file: Path | None = None
    """JSON or TOML file: source name -> sha256 hex of its bearer token (for /v1/events)."""
    webhooks_file: Path | None = None
    """TOML or JSON file of the webhook adapters to mount at /v1/webhooks/<name>."""
    max_body_bytes: int = _DEFAULTS.max_body_bytes
    """Largest request body accepted (bytes); larger gives 413."""
    max_events: int = _DEFAULTS.max_events
    """Most events in one request; more gives 413."""
    rate: float = _DEFAULTS.rate
    """Events per second each source may send on average (token bucket); 0 disables the limit."""
    burst: float | None = None
    """Bucket size: events a source may send at once. Default: max(rate, max_events)."""
    kafka_timeout_s: float = _DEFAULTS.kafka_timeout_s
    """How long a request waits for Kafka to acknowledge its events before answering 503."""
    webhook_max_body_bytes: int = _DEFAULTS.webhook_max_body_bytes
    """Largest webhook delivery (bytes), checked before reading; larger gives 413."""
    max_in_flight: int = _DEFAULTS.max_in_flight
    """Requests to the ingestion routes handled at once; one more is answered 503."""
    replay_ttl_s: float = _DEFAULTS.replay_ttl_s
    """How long a webhook delivery id is remembered, to answer its replay without producing."""
    replay_entries: int = _DEFAULTS.replay_entries
    """Most delivery ids remembered; the oldest is forgotten first."""
    coalesce_linger_ms: float = _DEFAULTS.coalesce_linger_ms
    """How long concurrent requests' events are gathered into one Kafka message per key (0: off)."""
    coalesce_max_events: int = _DEFAULTS.coalesce_max_events
    """Most events in one coalesced message; a window holding this many is sent at once."""
    coalesce_max_bytes: int = _DEFAULTS.coalesce_max_bytes
    """Largest coalesced message (bytes, capped by the worker's max_message_bytes)."""
    kafka_bootstrap: str = _KAFKA.bootstrap
    events_topic: str = _KAFKA.events_topic
    kafka_security: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """kafka-python security kwargs (`pipeline.kafka.security.client_kwargs`; {}: PLAINTEXT)."""
    kafka_compression: str = _KAFKA.compression
    """UPTAKE_KAFKA_COMPRESSION: what the collector's producer compresses with."""
    limits: Limits = field(default_factory=Limits)
    """The worker's size and clock rules, applied to each event."""

    @property
    def bucket_size(self) -> float:
        return self.burst if self.burst is not None else max(self.rate, float(self.max_events))

    @classmethod
    def from_env(cls, settings: Settings | None = None, **overrides: object) -> CollectorConfig:
        """Build from `settings` (default: `Settings.from_env()`); `overrides` (not None) win.

        `overrides` are CollectorConfig fields, e.g. the command-line flags. Raises
        `SettingsError` naming the variable and the flag for a value out of range.
        """
        settings = settings if settings is not None else Settings.from_env()
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"CollectorConfig has no option {', '.join(unknown)}")
        part = settings.collector
        values: dict[str, object] = {f.name: getattr(part, f.name) for f in _OPTIONS}
        values.update(
            tokens_file=_path(part.tokens_file),
            webhooks_file=_path(part.webhooks_file),
            kafka_bootstrap=settings.kafka.bootstrap,
            events_topic=settings.kafka.events_topic,
            kafka_security=client_kwargs(settings.kafka),
            kafka_compression=settings.kafka.compression,
            limits=settings.ingest.limits(),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["burst"] == 0:  # --burst 0, like UPTAKE_COLLECTOR_BURST=0: the default size
            values["burst"] = None
        config = cls(**values)  # type: ignore[arg-type]
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `SettingsError` for options the collector cannot work with, naming the variable
        and the flag (the checks of the settings' collector part)."""
        options = {f.name: getattr(self, f.name) for f in _OPTIONS if f.name not in _UNSET_AS_NONE}
        part = CollectorSettings(**options, burst=self.burst or 0.0)
        part.validate(flags=FLAGS)


def _path(value: str) -> Path | None:
    """A file setting: "" (or blanks) means none."""
    return Path(value) if value.strip() else None


def read_json_or_toml(path: Path, what: str, error: type[SettingsError] = SettingsError) -> object:
    """The data of a `.json` or `.toml` file (other names are tried as JSON, then TOML).

    `what` names the file in messages ("the tokens file"); problems raise `error`, a
    `SettingsError`, saying what to fix.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            if path.suffix.lower() == ".json":
                raise
            return tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON/TOML: {exc}") from None
