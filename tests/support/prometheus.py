"""A real Prometheus server (Debian's package) on loopback, scraping a worker's /metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, wait_until


class Prometheus:
    """A Prometheus server on loopback and its HTTP API."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of `promql`, as Prometheus's /api/v1/query returns it."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, promql: str) -> float | None:
        """The single value of `promql`, or None while it has no sample."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def by(self, label: str, promql: str) -> dict[str, float]:
        return {r["metric"][label]: float(r["value"][1]) for r in self.query(promql)}

    def alerts(self, state: str, drill: str = "") -> set[str]:
        """Names of the alerts in `state` (pending, firing); drill "" is the shipped rule set."""
        found = self.query(f'ALERTS{{alertstate="{state}", drill="{drill}"}}')
        return {r["metric"]["alertname"] for r in found}


@contextmanager
def running_prometheus(
    metrics_port: str, tmp_path: Path, rule_files: Sequence[Path]
) -> Iterator[Prometheus]:
    """Prometheus scraping 127.0.0.1:`metrics_port` every second (job uptake-worker) with
    `rule_files`; skips the test when no prometheus binary is installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary: `make test` installs Debian's prometheus package")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "uptake-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(ready, timeout=30, what="prometheus to be ready")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
