"""A port already taken gives a one-line error that says what to change, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Pipeline


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_collector_on_a_taken_port(taken_port: int, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"ci": "' + "0" * 64 + '"}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTAKE_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # nothing there: the collector starts anyway
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "collector",
            "--tokens",
            str(tokens),
            "--host",
            "0.0.0.0",
            "--port",
            str(taken_port),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode != 0
    assert f"cannot listen on 0.0.0.0:{taken_port}: the address is in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_worker_metrics_on_a_taken_port(taken_port: int, pipeline_env: Pipeline) -> None:
    pipeline_env.run("migrate")
    pipeline_env.env["UPTAKE_METRICS_PORT"] = str(taken_port)
    done = pipeline_env.run("worker", check=False, timeout=120)
    assert done.returncode == 2
    assert f"cannot serve /metrics on port {taken_port}" in done.stderr
    assert "UPTAKE_METRICS_PORT" in done.stderr and "Traceback" not in done.stderr
