"""The built wheel runs on its own: installed (not editable) into a new virtualenv outside the
repository, with the locked dependencies, it migrates, syncs the catalogs, generates the
dashboards, simulates, consumes and collects against the session's real broker and engine."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import REPO, Pipeline, free_port

pytestmark = pytest.mark.integration

UV = Path(sys.executable).with_name("uv")


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """bin/ of a virtualenv holding the locked runtime dependencies and the built wheel."""
    assert UV.exists(), f"uv is a locked dev dependency and should be at {UV}"
    root = tmp_path_factory.mktemp("wheel")
    _run(UV, "build", "--wheel", "--quiet", "--out-dir", root / "dist", REPO, cwd=root)
    # uptake depends on uptake-sdk, built from sdk/ of the same repository
    _run(UV, "build", "--wheel", "--quiet", "--out-dir", root / "dist", REPO / "sdk", cwd=root)
    wheels = sorted((root / "dist").glob("uptake*.whl"))
    assert len(wheels) == 2, wheels
    requirements = root / "requirements.txt"
    _run(UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-emit-workspace",
         "--quiet", "--output-file", requirements, cwd=REPO)  # fmt: skip
    venv = root / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, venv, cwd=root)
    python = venv / "bin" / "python"
    _run(UV, "pip", "install", "--quiet", "--python", python, "--require-hashes",
         "-r", requirements, cwd=root)  # fmt: skip
    _run(UV, "pip", "install", "--quiet", "--python", python, "--no-deps", *wheels, cwd=root)
    yield venv / "bin"


@pytest.fixture
def outside(pipeline_env: Pipeline, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder outside the repository and an environment that cannot see the checkout."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    env = {k: v for k, v in pipeline_env.env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return folder, env


def test_the_installed_package_is_not_the_checkout(wheel_venv: Path, tmp_path: Path) -> None:
    where = _run(wheel_venv / "python", "-c", "import pipeline; print(pipeline.__file__)",
                 cwd=tmp_path)  # fmt: skip
    assert "site-packages" in where and str(REPO) not in where


def test_migrate_catalog_dashboards_simulate_worker_from_the_wheel(
    wheel_venv: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    folder, env = outside
    uptake = wheel_venv / "uptake"

    migrated = _run(uptake, "migrate", cwd=folder, env=env)
    assert "to version" in migrated, migrated
    status = _run(uptake, "migrate", "--status", cwd=folder, env=env)
    shipped = sorted(p.name for p in (REPO / "schemas" / "clickhouse").glob("*.sql"))
    assert [line.split()[0] for line in status.splitlines()] == shipped
    assert all(line.split()[1] == "applied" for line in status.splitlines())

    synced = _run(uptake, "catalog", "sync", cwd=folder, env=env)
    assert "site-packages" in synced and "teams" in synced, synced

    _run(uptake, "dashboards", "generate", cwd=folder, env=env)
    generated = sorted(p.name for p in (folder / "dashboards").glob("*.json"))
    assert generated == sorted(p.name for p in (REPO / "dashboards").glob("*.json"))
    _run(uptake, "dashboards", "check", cwd=folder, env=env)

    truth = folder / "truth.json"
    _run(uptake, "simulate", "--events", "2000", "--seed", "3", "--truth", truth, cwd=folder,
         env=env)  # fmt: skip
    _run(uptake, "worker", "--exit-when-idle", "5", cwd=folder, env=env)
    counted = json.loads(
        _run(uptake, "query", "--format", "json",
             "SELECT count() AS n, uniqExact(event_id) AS ids FROM events", cwd=folder, env=env)
    )  # fmt: skip
    rejected = json.loads(
        _run(uptake, "query", "--format", "json", "SELECT count() AS n FROM rejected_events",
             cwd=folder, env=env)
    )  # fmt: skip
    assert int(counted[0]["n"]) == int(counted[0]["ids"])
    assert int(counted[0]["n"]) + int(rejected[0]["n"]) == 2000


def test_collector_from_the_wheel_answers_after_kafka_acknowledged(
    wheel_venv: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    folder, env = outside
    env = {**env, "UPTAKE_COLLECTOR_METRICS_PORT": str(free_port())}  # not the shared 9101
    token = secrets.token_urlsafe(24)
    tokens = folder / "tokens.json"
    tokens.write_text(json.dumps({"svc": hashlib.sha256(token.encode()).hexdigest()}))
    port = free_port()
    collector = subprocess.Popen(
        [wheel_venv / "uptake", "collector", "--tokens", tokens, "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        event = {
            "event_type": "api_call",
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC).isoformat(),
            "source": "svc",
            "team": "checkout",
            "capability": "api-gateway",
            "data": {"api": "orders", "operation": "GET /v1/orders", "status_code": 200,
                     "latency_ms": 12.5},
        }  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events",
            data=json.dumps(event).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    assert answer.status == 200, answer.read()
                    break
            except urllib.error.HTTPError as error:
                raise AssertionError(f"{error.code}: {error.read().decode()}") from error
            except (urllib.error.URLError, ConnectionError):
                assert collector.poll() is None, collector.communicate()[0]
                assert time.monotonic() < deadline, "the collector never answered"
                time.sleep(0.3)
    finally:
        collector.terminate()
        collector.wait(timeout=30)


def test_an_installation_without_its_migrations_is_an_error_not_up_to_date(
    wheel_venv: Path, outside: tuple[Path, dict[str, str]]
) -> None:
    folder, env = outside
    site = Path(
        _run(wheel_venv / "python", "-c", "import pipeline, os; print(os.path.dirname("
             "pipeline.__file__))", cwd=folder).strip()
    )  # fmt: skip
    migrations = site / "_data" / "schemas" / "clickhouse"
    hidden = migrations.with_name("clickhouse.hidden")
    migrations.rename(hidden)
    try:
        done = subprocess.run(
            [wheel_venv / "uptake", "migrate"], cwd=folder, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
    finally:
        hidden.rename(migrations)
    assert done.returncode != 0
    assert "up to date" not in done.stdout
    assert "no warehouse migrations" in done.stderr, done.stderr
