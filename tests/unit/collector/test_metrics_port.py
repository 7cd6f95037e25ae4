"""`uptake collector` serves /metrics on UPTAKE_COLLECTOR_METRICS_PORT, never on its public port
(issue #16, hole 4): the process as shipped, started from the command line."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.collector.auth import hash_token
from tests.conftest import REPO, free_port, wait_until


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def test_the_collector_process_serves_metrics_on_its_own_port_only(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"src": hash_token(secrets.token_urlsafe(32))}))
    public, metrics = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTAKE_")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        UPTAKE_HOME=str(tmp_path),
        UPTAKE_EVENTS_TOPIC=f"test.metrics-port.{secrets.token_hex(4)}",
        UPTAKE_COLLECTOR_PORT=str(public),
        UPTAKE_COLLECTOR_METRICS_PORT=str(metrics),
        UPTAKE_COLLECTOR_TOKENS=str(tokens),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "collector"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{public}"
        wait_until(lambda: _status(base + "/healthz") == 200, 60, what="the collector")
        assert _status(base + "/metrics") == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert "uptake_collector_requests_total" in text
        assert _status(f"http://127.0.0.1:{metrics}/v1/events") == 404  # nothing else there
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"collector metrics on http://127.0.0.1:{metrics}/metrics" in output
