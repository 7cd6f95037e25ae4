"""The collector's options: one frozen dataclass, defaults from `UPTAKE_COLLECTOR_*` variables.

Kafka and contract options (bootstrap servers, events topic, message size and clock limits) come
from `pipeline.settings.Settings` like everywhere else; the collector's own options are read here
until they move into `Settings` (see `ENV` for their variables). Command-line flags of
`uptake collector` override both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pipeline.contract.decode import Limits
from pipeline.settings import Settings, SettingsError

ENV: dict[str, str] = {
    "host": "UPTAKE_COLLECTOR_HOST",
    "port": "UPTAKE_COLLECTOR_PORT",
    "tokens_file": "UPTAKE_COLLECTOR_TOKENS",
    "max_body_bytes": "UPTAKE_COLLECTOR_MAX_BODY_BYTES",
    "max_events": "UPTAKE_COLLECTOR_MAX_EVENTS",
    "rate": "UPTAKE_COLLECTOR_RATE",
    "burst": "UPTAKE_COLLECTOR_BURST",
    "kafka_timeout_s": "UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S",
}
"""Field -> environment variable of the collector's own options."""


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs; immutable. Build it with `CollectorConfig.from_env()`."""

    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 for every interface."""
    port: int = 8080
    """TCP port to listen on (0: any free port)."""
    tokens_file: Path | None = None
    """JSON or TOML file: source name -> sha256 hex of its bearer token. Required to serve."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted (bytes); larger gives 413."""
    max_events: int = 1000
    """Most events in one request; more gives 413."""
    rate: float = 1000.0
    """Events per second each source may send on average (token bucket); 0 disables the limit."""
    burst: float | None = None
    """Bucket size: events a source may send at once. Default: max(rate, max_events)."""
    kafka_timeout_s: float = 10.0
    """How long a request waits for Kafka to acknowledge its events before answering 503."""
    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "uptake.events"
    limits: Limits = field(default_factory=Limits)
    """The worker's size and clock rules, applied to each event."""

    @property
    def bucket_size(self) -> float:
        return self.burst if self.burst is not None else max(self.rate, float(self.max_events))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        **overrides: object,
    ) -> CollectorConfig:
        """Read `ENV` variables and the shared `Settings`; `overrides` (not None) win.

        Raises `SettingsError` naming the variable for a value of the wrong type or range.
        """
        env = os.environ if environ is None else environ
        settings = settings or Settings.from_env(env)
        values: dict[str, object] = {
            "kafka_bootstrap": settings.kafka_bootstrap,
            "events_topic": settings.events_topic,
            "limits": Limits(
                max_message_bytes=settings.max_message_bytes,
                max_future_skew=timedelta(seconds=settings.max_future_skew_s),
                max_lateness=timedelta(seconds=settings.max_lateness_s),
            ),
        }
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, variable in ENV.items():
            raw = env.get(variable, "")
            if raw:
                values[name] = _parse(variable, raw, str(kinds[name]))
        values.update({k: v for k, v in overrides.items() if v is not None})
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
        if self.rate < 0:
            raise SettingsError(f"{ENV['rate']} / --rate must not be negative (0 disables it)")
        if self.burst is not None and self.burst < 1:
            raise SettingsError(f"{ENV['burst']} / --burst must be at least 1")
        if self.kafka_timeout_s <= 0:
            raise SettingsError(f"{ENV['kafka_timeout_s']} / --kafka-timeout must be > 0")


def _parse(variable: str, raw: str, kind: str) -> object:
    try:
        if "Path" in kind:
            return Path(raw)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} is not a valid {kind.split(' ')[0]}") from None
    return raw
