"""The slim `uptake-sdk` wheel on its own: built from sdk/, installed with its locked
dependencies into a fresh virtualenv, it holds no faust, aiokafka or chdb, carries the worker's
own contract files, stays small and imports fast, and sends to the session's real broker and to
a real collector. The measured size and import time are printed (sdk/README.md records them)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pipeline.kafka.topics import ensure_topics
from tests.conftest import REPO, Pipeline, free_port
from tests.support.collector import start_collector
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration

UV = Path(sys.executable).with_name("uv")
CONTRACT_FILES = ["events.py", "reasons.py", "decode.py", "cloudevents.py"]
HEAVY = {"faust-streaming", "aiokafka", "chdb", "clickhouse-connect", "grafana-foundation-sdk",
         "prometheus-client", "uptake"}  # fmt: skip
MAX_INSTALLED_BYTES = 15 * 1024 * 1024
MAX_IMPORT_S = 0.100


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def sdk_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sdk-wheel")
    _run(UV, "build", "--wheel", "--quiet", "--out-dir", root, REPO / "sdk", cwd=root)
    [wheel] = root.glob("uptake_sdk-*.whl")
    return wheel


@pytest.fixture(scope="module")
def sdk_venv(sdk_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the SDK's locked dependencies and the SDK wheel, nothing else."""
    root = tmp_path_factory.mktemp("sdk-venv")
    requirements = root / "requirements.txt"
    _run(UV, "export", "--frozen", "--package", "uptake-sdk", "--no-dev", "--no-emit-workspace",
         "--quiet", "--output-file", requirements, cwd=REPO)  # fmt: skip
    venv = root / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, venv, cwd=root)
    python = venv / "bin" / "python"
    _run(UV, "pip", "install", "--quiet", "--python", python, "--require-hashes",
         "-r", requirements, cwd=root)  # fmt: skip
    _run(UV, "pip", "install", "--quiet", "--python", python, "--no-deps", sdk_wheel, cwd=root)
    yield python


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_wheel_carries_the_workers_own_contract_files(sdk_wheel: Path) -> None:
    with zipfile.ZipFile(sdk_wheel) as wheel:
        for name in CONTRACT_FILES:
            packed = wheel.read(f"uptake_sdk/_contract/{name}")
            assert packed == (REPO / "pipeline" / "contract" / name).read_bytes(), name
        assert not [n for n in wheel.namelist() if n.startswith("pipeline/")]


def test_installs_without_the_pipeline_and_is_small_and_fast(sdk_venv: Path) -> None:
    names = "sorted(d.metadata['Name'].lower() for d in m.distributions())"
    code = f"import importlib.metadata as m, json; print(json.dumps({names}))"
    listed = _run(sdk_venv, "-c", code, cwd=sdk_venv.parent, env=clean_env())
    installed = set(json.loads(listed))
    assert not installed & HEAVY, installed & HEAVY
    assert installed == {"uptake-sdk", "msgspec", "kafka-python", "crc32c", "lz4"}, installed
    where = "import msgspec, os; print(os.path.dirname(os.path.dirname(msgspec.__file__)))"
    site = Path(_run(sdk_venv, "-c", where, cwd=sdk_venv.parent, env=clean_env()).strip())
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    timings = []
    for _ in range(7):
        out = subprocess.run(
            [sdk_venv, "-X", "importtime", "-c", "import uptake_sdk"],
            capture_output=True, text=True, env=clean_env(), check=True,
        )  # fmt: skip
        last = out.stderr.strip().splitlines()[-1]  # "import time: self | cumulative | uptake_sdk"
        assert last.endswith("| uptake_sdk"), last
        timings.append(int(last.split("|")[1]) / 1e6)
    print(f"\nuptake-sdk installed: {size / 1e6:.2f} MB in site-packages "
          f"({', '.join(sorted(installed))}); import uptake_sdk: {min(timings) * 1000:.1f} ms "
          f"(min of 7, median {sorted(timings)[3] * 1000:.1f} ms)")  # fmt: skip
    assert size < MAX_INSTALLED_BYTES
    assert min(timings) < MAX_IMPORT_S


def test_the_slim_sdk_sends_to_a_real_broker(sdk_venv: Path, kafka_bootstrap: str) -> None:
    topic = f"test.sdk.slim.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, {topic: 1})
    script = textwrap.dedent(
        f"""
        import json
        from uptake_sdk import UptakeClient, api_call
        c = UptakeClient({kafka_bootstrap!r}, {topic!r}, source="slim")
        ids = []
        for _ in range(5):
            e = api_call(capability="api-gateway", team="checkout", api="o", operation="GET /o",
                         status_code=200, latency_ms=1.0)
            ids.append(e["event_id"])
            c.emit(e)
        assert c.flush(30), c.stats()
        c.close()
        print(json.dumps(ids))
        """
    )
    out = _run(sdk_venv, "-c", script, cwd=sdk_venv.parent, env=clean_env())
    landed = [e["event_id"] for _, v in read_topic(kafka_bootstrap, topic)
              for e in msgspec.json.decode(v)]  # fmt: skip
    assert sorted(landed) == sorted(json.loads(out))


def test_the_slim_sdk_sends_to_a_real_collector(
    sdk_venv: Path, pipeline_env: Pipeline, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    ensure_topics(kafka_bootstrap, {topic: 1})
    token = secrets.token_urlsafe(24)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"slim": hashlib.sha256(token.encode()).hexdigest()}))
    port = free_port()
    collector = start_collector(pipeline_env, tokens, port)
    try:
        script = textwrap.dedent(
            f"""
            import json
            from uptake_sdk import UptakeClient, deploy
            c = UptakeClient(url="http://127.0.0.1:{port}", token={token!r}, source="slim")
            ids = []
            for i in range(5):
                e = deploy(deployment_id=f"dep-{{i}}", service="checkout-api", team="checkout",
                           environment="production", status="succeeded")
                ids.append(e["event_id"])
                c.emit(e)
            assert c.flush(30), c.stats()
            assert c.stats().delivered == 5, c.stats()
            c.close()
            print(json.dumps(ids))
            """
        )
        out = _run(sdk_venv, "-c", script, cwd=sdk_venv.parent, env=clean_env())
    finally:
        collector.terminate()
        collector.wait(30)
    landed = [e["event_id"] for _, v in read_topic(kafka_bootstrap, topic)
              for e in msgspec.json.decode(v)]  # fmt: skip
    assert sorted(landed) == sorted(json.loads(out))
