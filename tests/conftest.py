"""Session-scoped services for the tests: a real Kafka broker and a real ClickHouse engine.

Where each comes from, first match wins:
- Kafka: KAFKA_BOOTSTRAP_SERVERS if set; else a Kafka container (KRaft) through testcontainers
  when a Docker engine answers; else the project's local broker (devtools.broker) on a free port.
- ClickHouse: UPTAKE_CLICKHOUSE_URL (a server) if set; else a ClickHouse server container when a
  Docker engine answers; else the embedded engine (chdb) in temporary folders.

The embedded engine opens one folder per process, and a folder in one process at a time. Tests
that run the worker therefore give it its own folder and read the warehouse afterwards through
`uptake query` in a subprocess (`Warehouse.rows` below); tests that use the engine in-process
share one session folder, each in its own database.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def env_without_settings() -> dict[str, str]:
    """This process's environment without Uptake's settings (UPTAKE_*, KAFKA_BOOTSTRAP_SERVERS):
    what a test starts `uptake` with before adding its own."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("UPTAKE_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }


@pytest.fixture(scope="session")
def docker() -> bool:
    return docker_engine_answers()


@pytest.fixture(scope="session")
def kafka_bootstrap(docker: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka broker for the whole session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if docker:
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from pipeline.devtools.broker import LocalBroker

    port = free_port()
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), port=port, controller_port=free_port())
    broker.start(timeout=120, progress=lambda line: None)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def clickhouse_server_url(docker: bool) -> Iterator[str | None]:
    """A ClickHouse server URL (no database) or None when only the embedded engine exists."""
    given = os.environ.get("UPTAKE_CLICKHOUSE_URL", "")
    if given.startswith(("http://", "https://")):
        yield given.rsplit("/", 1)[0] if given.count("/") > 2 else given
        return
    if docker:
        from testcontainers.clickhouse import ClickHouseContainer

        with ClickHouseContainer("clickhouse/clickhouse-server:25.8") as ch:
            host, port = ch.get_container_host_ip(), ch.get_exposed_port(8123)
            yield f"http://{ch.username}:{ch.password}@{host}:{port}"
        return
    yield None


@pytest.fixture
def warehouse_url(clickhouse_server_url: str | None, tmp_path: Path) -> str:
    """A fresh, empty warehouse for one test: its own server database or chdb folder."""
    if clickhouse_server_url:
        return f"{clickhouse_server_url}/t_{uuid.uuid4().hex[:12]}"
    return f"chdb://{tmp_path / 'warehouse'}"


@pytest.fixture(scope="session")
def inprocess_chdb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chdb folder this pytest process may open (in separate databases per test)."""
    return tmp_path_factory.mktemp("chdb-inprocess")


@pytest.fixture
def inprocess_warehouse_url(clickhouse_server_url: str | None, inprocess_chdb_folder: Path) -> str:
    """A fresh database this test process may open itself."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    if clickhouse_server_url:
        return f"{clickhouse_server_url}/{name}"
    return f"chdb://{inprocess_chdb_folder}?database={name}"


@dataclass
class Pipeline:
    """Environment for running `uptake` subprocesses against the session's services."""

    env: dict[str, str]
    home: Path

    def run(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"uptake {' '.join(args)} exited {done.returncode}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return done

    def start_worker(self, *args: str) -> subprocess.Popen[str]:
        log = open(self.home / "worker.log", "a")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )

    def worker_log(self) -> str:
        path = self.home / "worker.log"
        return path.read_text() if path.exists() else ""

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Query the warehouse from a separate process (the embedded engine is per process)."""
        done = self.run("query", "--format", "json", "--max-rows", "1000000", sql)
        return list(json.loads(done.stdout))

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['UPTAKE_METRICS_PORT']}/metrics"


@pytest.fixture
def pipeline_env(kafka_bootstrap: str, warehouse_url: str, tmp_path: Path) -> Pipeline:
    """A private topic, consumer group, warehouse and metrics port for one test's pipeline."""
    suffix = uuid.uuid4().hex[:8]
    env = env_without_settings()
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "UPTAKE_CLICKHOUSE_URL": warehouse_url,
            "UPTAKE_HOME": str(tmp_path / "home"),
            "UPTAKE_EVENTS_TOPIC": f"test.events.{suffix}",
            "UPTAKE_DLQ_TOPIC": f"test.events.dlq.{suffix}",
            "UPTAKE_CONSUMER_GROUP": f"test-worker-{suffix}",
            "UPTAKE_METRICS_PORT": str(free_port()),
            "UPTAKE_COLLECTOR_METRICS_PORT": str(free_port()),  # not the shared default 9101
            "UPTAKE_FLUSH_INTERVAL_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if not warehouse_url.startswith("chdb:"):  # a server needs an explicit key (docs/deploy.md)
        env["UPTAKE_PSEUDONYM_KEY"] = f"pipeline-test-key-{uuid.uuid4().hex}"
    home = tmp_path / "home"
    home.mkdir()
    return Pipeline(env, home)


def wait_until(condition: Any, timeout: float, interval: float = 0.25, what: str = "") -> Any:
    """Poll `condition()` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
