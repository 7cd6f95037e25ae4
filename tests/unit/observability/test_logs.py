"""UPTAKE_LOG_FORMAT: every stderr line of a real `uptake` process is one JSON object with the
same fields (docs/operations.md#logs), or the usual text; an unknown format is a usage error."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.observability.logs import JSON_FIELDS, formatter
from tests.conftest import REPO, Pipeline, free_port


def _uptake(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return Pipeline(env, Path(env["UPTAKE_HOME"])).run(*args, timeout=120, check=False)


def _json_lines(stderr: str, component: str) -> list[dict[str, Any]]:
    """Every line of `stderr` as a JSON object with the fields of every Uptake log line."""
    lines = [json.loads(line) for line in stderr.splitlines()]  # any other line fails here
    assert lines, "no log lines at all"
    for line in lines:
        assert set(JSON_FIELDS) <= line.keys(), line
        assert line["component"] == component, line
        stamp = datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() == timedelta(0), line  # ISO 8601 in UTC
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
    return lines


def _cli_env(tmp_path: Path, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTAKE_")}
    env.update(UPTAKE_HOME=str(tmp_path / "home"), **changes)
    return env


def test_a_cli_command_logs_its_error_as_json(tmp_path: Path) -> None:
    done = _uptake(_cli_env(tmp_path, UPTAKE_LOG_FORMAT="json"), "query", "SELECT 1")
    assert done.returncode == 1
    (line,) = _json_lines(done.stderr, component="query")
    assert line["level"] == "ERROR" and line["logger"] == "uptake.cli"
    assert "uptake migrate" in line["message"]


def test_negative_control_the_default_text_format_is_not_json(tmp_path: Path) -> None:
    done = _uptake(_cli_env(tmp_path), "query", "SELECT 1")
    assert done.returncode == 1
    assert done.stderr.startswith("error: the warehouse has no database"), done.stderr
    with pytest.raises(json.JSONDecodeError):
        _json_lines(done.stderr, component="query")


def test_an_unknown_log_format_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    done = _uptake(_cli_env(tmp_path, UPTAKE_LOG_FORMAT="JSON"), "settings")
    assert done.returncode == 2
    assert done.stderr == "error: UPTAKE_LOG_FORMAT must be one of text, json, not 'JSON'\n"


def test_the_settings_command_lists_the_log_format_and_the_runbook_base(tmp_path: Path) -> None:
    done = _uptake(_cli_env(tmp_path, UPTAKE_LOG_FORMAT="json"), "settings")
    assert done.returncode == 0, done.stderr
    assert "UPTAKE_LOG_FORMAT" in done.stdout and "UPTAKE_RUNBOOK_BASE_URL" in done.stdout


def test_extras_of_a_record_are_fields_of_its_json_line() -> None:
    record = logging.LogRecord("uptake.worker", logging.ERROR, __file__, 1, "bad batch", (), None)
    record.__dict__.update(topic="platform.events", partition=3, offset=1234)
    line = json.loads(formatter("json", "worker").format(record))
    assert line["topic"] == "platform.events" and (line["partition"], line["offset"]) == (3, 1234)
    assert (line["component"], line["logger"], line["message"]) == (
        "worker",
        "uptake.worker",
        "bad batch",
    )


@pytest.mark.integration
def test_the_worker_logs_only_json_lines_with_the_same_fields(pipeline_env: Pipeline) -> None:
    """A real worker (faust, aiokafka, the lifecycle agent in it) against the real broker and
    engine: stderr is JSON only, its own lines and faust's alike."""
    pipeline_env.run("migrate")
    pipeline_env.run("simulate", "--events", "300", "--teams", "2", "--flat")
    pipeline_env.env.update(UPTAKE_LOG_FORMAT="json", UPTAKE_LOG_LEVEL="info")
    done = pipeline_env.run("worker", "--exit-when-idle", "3")
    lines = _json_lines(done.stderr, component="worker")
    messages = [line["message"] for line in lines]
    assert any(m.startswith("worker: ") for m in messages), messages
    assert any(m.startswith("worker stopped: ") for m in messages), messages
    assert {"uptake.worker", "uptake.lifecycle"} <= {line["logger"] for line in lines}, messages


def test_the_collector_logs_only_json_lines_also_third_party_debug(tmp_path: Path) -> None:
    """`uptake -v collector` without a broker: its warning and kafka-python's and aiohttp's
    debug lines are all JSON lines of component `collector`."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"ci": "' + "0" * 64 + '"}')
    env = _cli_env(tmp_path, UPTAKE_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # nothing there: the collector warns
    args = ["-v", "collector", "--tokens", str(tokens), "--port", str(free_port())]
    args += ["--metrics-port", str(free_port())]
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as collector:
        assert collector.stdout is not None
        started = [collector.stdout.readline() for _ in range(2)]  # metrics port, then serving
        assert any("uptake collector on" in line for line in started), started
        collector.send_signal(signal.SIGTERM)
        _, stderr = collector.communicate(timeout=60)
    lines = _json_lines(stderr, component="collector")
    warning = [line for line in lines if line["logger"] == "uptake.collector"]
    assert [line["level"] for line in warning] == ["WARNING"], stderr
    assert "starts anyway" in warning[0]["message"]
    assert any(line["logger"].startswith("kafka") for line in lines), "no third-party lines"


@pytest.mark.integration
def test_the_scale_out_worker_and_the_writer_log_only_json_lines(pipeline_env: Pipeline) -> None:
    """UPTAKE_WRITER=kafka: the publishing worker and `uptake writer`, each its own component."""
    pipeline_env.env.update(
        UPTAKE_WRITER="kafka",
        UPTAKE_WRITER_TOPIC=f"test.enriched.{pipeline_env.env['UPTAKE_CONSUMER_GROUP']}",
        UPTAKE_LIFECYCLE="false",  # not run with UPTAKE_WRITER=kafka (docs/lifecycle.md)
        UPTAKE_PSEUDONYM_KEY="log-test-" + "0f" * 16,  # required with UPTAKE_WRITER=kafka
        UPTAKE_LOG_FORMAT="json",
        UPTAKE_LOG_LEVEL="info",
    )
    pipeline_env.run("migrate")
    pipeline_env.run("simulate", "--events", "300", "--teams", "2", "--flat")
    worker = pipeline_env.run("worker", "--exit-when-idle", "3")
    _json_lines(worker.stderr, component="worker")
    writer = pipeline_env.run("writer", "--exit-when-idle", "5")
    lines = _json_lines(writer.stderr, component="writer")
    messages = [line["message"] for line in lines]
    assert any(m.startswith("writer stopped: ") and "nothing written" not in m for m in messages)
    assert "uptake.writer" in {line["logger"] for line in lines}, messages
