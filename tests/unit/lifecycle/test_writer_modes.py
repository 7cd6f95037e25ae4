"""Hole 8 of issue #16: the lifecycle runs in direct mode; with UPTAKE_WRITER=kafka it is refused
at start with the reason, instead of the workers silently running without it."""

from __future__ import annotations

import pytest

from pipeline.config.settings import Settings, SettingsError
from pipeline.ingest.run import run_worker
from pipeline.ingest.writer import run_writer
from pipeline.lifecycle.agent import refuse_unsupported_mode


def test_kafka_writer_mode_with_the_lifecycle_is_refused_with_the_reason() -> None:
    settings = Settings.from_env({"UPTAKE_WRITER": "kafka"})
    assert settings.lifecycle.enabled, "the lifecycle is on by default"
    with pytest.raises(SettingsError, match="UPTAKE_WRITER=kafka does not run the adoption") as e:
        refuse_unsupported_mode(settings)
    assert "UPTAKE_LIFECYCLE=false" in str(e.value) and "docs/lifecycle.md" in str(e.value)


@pytest.mark.parametrize("run", [run_worker, run_writer])
def test_worker_and_writer_refuse_it_before_touching_kafka_or_the_warehouse(run: object) -> None:
    settings = Settings.from_env(
        {"UPTAKE_WRITER": "kafka", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    with pytest.raises(SettingsError, match="UPTAKE_WRITER=kafka"):
        run(settings)  # type: ignore[operator]


@pytest.mark.parametrize(
    "environ",
    [
        {"UPTAKE_WRITER": "kafka", "UPTAKE_LIFECYCLE": "false"},
        {"UPTAKE_WRITER": "direct"},
        {"UPTAKE_WRITER": "direct", "UPTAKE_LIFECYCLE": "false"},
    ],
)
def test_the_supported_combinations_start(environ: dict[str, str]) -> None:
    refuse_unsupported_mode(Settings.from_env(environ))
