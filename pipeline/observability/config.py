"""The observability package's view of the settings (`pipeline.config.settings.Settings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.config.settings import IngestSettings, Settings

REFRESH_ENV = "UPTAKE_ADOPTION_GAUGES_REFRESH_S"
PER_TEAM_ENV = "UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES"


@dataclass(frozen=True)
class ObservabilitySettings:
    """How the worker serves the adoption gauges.

    `adoption_refresh_s` (UPTAKE_ADOPTION_GAUGES_REFRESH_S, seconds, default 60): how often the
    adoption gauges are read from ClickHouse at most; 0 turns the adoption gauges off.
    `adoption_per_team_max_series` (UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES, default 0 = off): export
    per-team adoption and DORA series, at most this many in total (the most active teams first).
    """

    adoption_refresh_s: float = 60.0
    adoption_per_team_max_series: int = 0

    @property
    def adoption_enabled(self) -> bool:
        return self.adoption_refresh_s > 0

    @classmethod
    def from_settings(cls, ingest: IngestSettings) -> ObservabilitySettings:
        """From the worker's part of the settings (`Settings.ingest`)."""
        return cls(
            adoption_refresh_s=ingest.adoption_gauges_refresh_s,
            adoption_per_team_max_series=ingest.adoption_per_team_max_series,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ObservabilitySettings:
        """Read through Settings; raises SettingsError naming the variable for a bad value."""
        return cls.from_settings(Settings.from_env(environ).ingest)
