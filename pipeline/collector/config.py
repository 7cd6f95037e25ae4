"""The collector's options: one frozen dataclass built from the shared `Settings`.

Every option comes from `pipeline.config.settings.Settings` like everywhere else in Uptake: the
collector's own options are its `collector_*` fields (variables `UPTAKE_COLLECTOR_*`, listed in
`ENV`), Kafka and the contract limits are the shared fields the worker uses too. Command-line
flags of `uptake collector` override them. Nothing here reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipeline.config.settings import Settings, SettingsError
from pipeline.contract.decode import Limits
from pipeline.kafka.security import client_kwargs

SETTING_OF: dict[str, str] = {
    "host": "collector_host",
    "port": "collector_port",
    "tokens_file": "collector_tokens",
    "webhooks_file": "collector_webhooks",
    "max_body_bytes": "collector_max_body_bytes",
    "max_events": "collector_max_events",
    "rate": "collector_rate",
    "burst": "collector_burst",
    "kafka_timeout_s": "collector_kafka_timeout_s",
    "webhook_max_body_bytes": "collector_webhook_max_body_bytes",
    "max_in_flight": "collector_max_in_flight",
    "replay_ttl_s": "collector_webhook_replay_ttl_s",
    "replay_entries": "collector_webhook_replay_entries",
}
"""CollectorConfig field -> the `Settings` field it defaults to."""

_SETTINGS_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
ENV: dict[str, str] = {
    name: _SETTINGS_FIELDS[setting].metadata["env"].name for name, setting in SETTING_OF.items()
}
"""CollectorConfig field -> environment variable of its default (`UPTAKE_COLLECTOR_*`)."""

_DEFAULTS = Settings()


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs; immutable. Build it with `CollectorConfig.from_env()`.

    The defaults are those of `Settings`, so a config built directly (in tests) and one built
    from an empty environment agree.
    """

    host: str = _DEFAULTS.collector_host
    """Interface to listen on; 0.0.0.0 for every interface."""
    port: int = _DEFAULTS.collector_port
    """TCP port to listen on (0: any free port)."""
    tokens_file: Path | None = None
    """JSON or TOML file: source name -> sha256 hex of its bearer token (for /v1/events)."""
    webhooks_file: Path | None = None
    """TOML or JSON file of the webhook adapters to mount at /v1/webhooks/<name>."""
    max_body_bytes: int = _DEFAULTS.collector_max_body_bytes
    """Largest request body accepted (bytes); larger gives 413."""
    max_events: int = _DEFAULTS.collector_max_events
    """Most events in one request; more gives 413."""
    rate: float = _DEFAULTS.collector_rate
    """Events per second each source may send on average (token bucket); 0 disables the limit."""
    burst: float | None = None
    """Bucket size: events a source may send at once. Default: max(rate, max_events)."""
    kafka_timeout_s: float = _DEFAULTS.collector_kafka_timeout_s
    """How long a request waits for Kafka to acknowledge its events before answering 503."""
    webhook_max_body_bytes: int = _DEFAULTS.collector_webhook_max_body_bytes
    """Largest webhook delivery (bytes), checked before reading; larger gives 413."""
    max_in_flight: int = _DEFAULTS.collector_max_in_flight
    """Requests to the ingestion routes handled at once; one more is answered 503."""
    replay_ttl_s: float = _DEFAULTS.collector_webhook_replay_ttl_s
    """How long a webhook delivery id is remembered, to answer its replay without producing."""
    replay_entries: int = _DEFAULTS.collector_webhook_replay_entries
    """Most delivery ids remembered; the oldest is forgotten first."""
    kafka_bootstrap: str = _DEFAULTS.kafka_bootstrap
    events_topic: str = _DEFAULTS.events_topic
    kafka_security: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """kafka-python security kwargs (`pipeline.kafka.security.client_kwargs`; {}: PLAINTEXT)."""
    kafka_compression: str = _DEFAULTS.kafka_compression
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
        values: dict[str, object] = {
            "host": settings.collector_host,
            "port": settings.collector_port,
            "tokens_file": _path(settings.collector_tokens),
            "webhooks_file": _path(settings.collector_webhooks),
            "max_body_bytes": settings.collector_max_body_bytes,
            "max_events": settings.collector_max_events,
            "rate": settings.collector_rate,
            "burst": settings.collector_burst or None,  # 0: the default size
            "kafka_timeout_s": settings.collector_kafka_timeout_s,
            "webhook_max_body_bytes": settings.collector_webhook_max_body_bytes,
            "max_in_flight": settings.collector_max_in_flight,
            "replay_ttl_s": settings.collector_webhook_replay_ttl_s,
            "replay_entries": settings.collector_webhook_replay_entries,
            "kafka_bootstrap": settings.kafka_bootstrap,
            "events_topic": settings.events_topic,
            "kafka_security": client_kwargs(settings.kafka),
            "kafka_compression": settings.kafka_compression,
            "limits": Limits(
                max_message_bytes=settings.max_message_bytes,
                max_future_skew=timedelta(seconds=settings.max_future_skew_s),
                max_lateness=timedelta(seconds=settings.max_lateness_s),
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["burst"] == 0:  # --burst 0, like UPTAKE_COLLECTOR_BURST=0: the default size
            values["burst"] = None
        config = cls(**values)  # type: ignore[arg-type]
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `SettingsError` for options the collector cannot work with."""
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{ENV['port']} / --port must be a port number, not {self.port}")
        for name in ("max_body_bytes", "max_events"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise SettingsError(f"{ENV[name]} / {flag} must be at least 1")
        for name in ("webhook_max_body_bytes", "max_in_flight", "replay_entries"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{ENV[name]} must be at least 1")
        if not math.isfinite(self.rate) or self.rate < 0:
            raise SettingsError(
                f"{ENV['rate']} / --rate must be a finite number >= 0 (0 disables it), "
                f"not {self.rate:g}"
            )
        if self.burst is not None and (not math.isfinite(self.burst) or self.burst < 1):
            raise SettingsError(
                f"{ENV['burst']} / --burst must be a finite number >= 1 (0: the default size), "
                f"not {self.burst:g}"
            )
        if not math.isfinite(self.replay_ttl_s) or self.replay_ttl_s <= 0:
            raise SettingsError(
                f"{ENV['replay_ttl_s']} must be a finite number of seconds > 0, "
                f"not {self.replay_ttl_s:g}"
            )
        if not math.isfinite(self.kafka_timeout_s) or self.kafka_timeout_s <= 0:
            raise SettingsError(
                f"{ENV['kafka_timeout_s']} / --kafka-timeout must be a finite number of seconds "
                f"> 0, not {self.kafka_timeout_s:g}"
            )


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
