"""Placeholder and demo secrets are refused at start (issue #16, hole 4; pipeline/config/safety.py).

Every secret value the repository publishes (docs, examples, Compose, Kubernetes) must be in
`KNOWN_DEMO_SECRETS` or look like a placeholder; each secret setting that holds one is refused
with a message naming the setting; a real secret, and the embedded demo without any, start.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.collector.auth import hash_token
from pipeline.config.safety import (
    KNOWN_DEMO_SECRETS,
    is_demo_secret,
    pseudonym_key_required,
    refuse_demo_secrets,
    refuse_demo_token_digests,
)
from pipeline.config.settings import Settings, SettingsError
from tests.conftest import REPO
from tests.support.secret_scan import literal_secrets

# Lines main shipped before issue #16 (the compose file, the k8s Secret, docs/deploy.md).
MAIN_LINES = """
curl -H "Authorization: Bearer uptake-demo-token-change-me" \\
  UPTAKE_CLICKHOUSE_URL: "http://uptake:change-me@clickhouse.clickhouse.svc:8123/uptake"
  UPTAKE_PSEUDONYM_KEY: "change-me-to-a-long-random-secret"
    UPTAKE_PSEUDONYM_KEY: ${UPTAKE_PSEUDONYM_KEY:-demo-only-pseudonym-key-change-me}
      CLICKHOUSE_ANALYST_PASSWORD: ${CLICKHOUSE_ANALYST_PASSWORD:-analyst}
      CLICKHOUSE_PASSWORD: ${CLICKHOUSE_PASSWORD:-uptake}
      GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:-admin}
      UPTAKE_GRAFANA_CLICKHOUSE_PASSWORD: ${UPTAKE_GRAFANA_CLICKHOUSE_PASSWORD:-grafana-readonly}
"""


def published_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "docs", "deploy", "config", "README.md", "sdk/README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / n for n in listed if not n.endswith(".py") and (REPO / n).is_file()]


def test_every_secret_the_repository_publishes_is_refused() -> None:
    files = published_files()
    assert len(files) > 20  # the scan saw the docs and deploy/
    published = {v for f in files for v in literal_secrets(f.read_text(errors="replace"))}
    assert {v for v in published if not is_demo_secret(v)} == set()


def test_what_main_shipped_is_refused() -> None:
    shipped = literal_secrets(MAIN_LINES)
    assert len(shipped) == 8
    assert all(is_demo_secret(v) and is_demo_secret(v.upper()) for v in shipped)
    assert {v for v in shipped if "change-me" not in v} <= KNOWN_DEMO_SECRETS
    assert is_demo_secret("my-key-CHANGE-ME-later")
    # Negative control: real secrets pass.
    assert not is_demo_secret(secrets.token_hex(32))
    assert not is_demo_secret("correct-horse-battery-staple-42")


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("UPTAKE_PSEUDONYM_KEY", "demo-only-pseudonym-key-change-me", "UPTAKE_PSEUDONYM_KEY"),
        ("UPTAKE_PSEUDONYM_KEY", "change-me-to-a-long-random-secret", "UPTAKE_PSEUDONYM_KEY"),
        (
            "UPTAKE_CLICKHOUSE_URL",
            "http://uptake:change-me@clickhouse.clickhouse.svc:8123/uptake",
            "the password in UPTAKE_CLICKHOUSE_URL",
        ),
        (
            "UPTAKE_CLICKHOUSE_URL",
            "http://uptake:uptake@clickhouse:8123/uptake",
            "the password in UPTAKE_CLICKHOUSE_URL",
        ),
        ("UPTAKE_BACKSTAGE_TOKEN", "change-me", "UPTAKE_BACKSTAGE_TOKEN"),
    ],
)
def test_a_demo_secret_is_refused_naming_the_setting(variable: str, value: str, named: str) -> None:
    settings = Settings.from_env({variable: value})
    with pytest.raises(SettingsError) as refused:
        refuse_demo_secrets(settings)
    message = str(refused.value)
    assert message.startswith(named) and "placeholder or a demo value" in message
    assert value not in message  # the secret itself is never echoed


def test_the_sasl_password_is_checked_too() -> None:
    settings = Settings.from_env(
        {
            "UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "UPTAKE_KAFKA_SASL_USERNAME": "uptake",
            "UPTAKE_KAFKA_SASL_PASSWORD": "change-me",
        }
    )
    with pytest.raises(SettingsError, match=r"^UPTAKE_KAFKA_SASL_PASSWORD is a placeholder"):
        refuse_demo_secrets(settings)


def test_real_secrets_and_the_embedded_default_start(tmp_path: Path) -> None:
    refuse_demo_secrets(Settings.from_env({"UPTAKE_HOME": str(tmp_path)}))  # make demo
    refuse_demo_secrets(
        Settings.from_env(
            {
                "UPTAKE_PSEUDONYM_KEY": secrets.token_hex(32),
                "UPTAKE_CLICKHOUSE_URL": f"https://uptake:{secrets.token_hex(16)}@ch:8443/uptake",
            }
        )
    )


def test_a_server_warehouse_or_the_kafka_writer_needs_an_explicit_key(tmp_path: Path) -> None:
    home = str(tmp_path)
    server = {"UPTAKE_HOME": home, "UPTAKE_CLICKHOUSE_URL": "https://u:p4ss-w0rd-x@ch:8443/db"}
    assert "ClickHouse server" in pseudonym_key_required(Settings.from_env(server))
    kafka = {"UPTAKE_HOME": home, "UPTAKE_WRITER": "kafka"}
    assert "UPTAKE_WRITER=kafka" in pseudonym_key_required(Settings.from_env(kafka))
    keyed = {**server, "UPTAKE_PSEUDONYM_KEY": secrets.token_hex(32)}
    assert pseudonym_key_required(Settings.from_env(keyed)) == ""
    # Negative control: the embedded default keeps its key file.
    assert pseudonym_key_required(Settings.from_env({"UPTAKE_HOME": home})) == ""


def test_a_tokens_file_with_a_published_token_is_refused() -> None:
    main_digest = "22d1dd0c95b61125de2d7a6fd4adb25b34b49f35304e1392b9ff3e0a866ca2ab"  # main's
    assert main_digest == hash_token("uptake-demo-token-change-me")
    with pytest.raises(SettingsError, match="source 'demo' is a demo token"):
        refuse_demo_token_digests([("ok", hash_token("x" * 40)), ("demo", main_digest)], "f")
    refuse_demo_token_digests([("ok", hash_token(secrets.token_urlsafe(32)))], "f")


def _uptake(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`uptake ARGS` with only `env` (no broker answers at 127.0.0.1:1)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_the_collector_refuses_to_start_with_the_demo_token(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"demo": hash_token("uptake-demo-token-change-me")}))
    done = _uptake(
        "collector",
        "--tokens",
        str(tokens),
        "--port",
        "0",
        UPTAKE_HOME=str(tmp_path),
        UPTAKE_COLLECTOR_METRICS_PORT="0",
    )
    assert done.returncode != 0
    assert "the token of source 'demo' is a demo token" in done.stderr
    assert "hash-token --generate --source demo" in done.stderr


def test_the_worker_refuses_a_placeholder_key_before_anything_else(tmp_path: Path) -> None:
    env = {
        "UPTAKE_HOME": str(tmp_path),
        "UPTAKE_PSEUDONYM_KEY": "demo-only-pseudonym-key-change-me",
    }
    done = _uptake("worker", **env)
    assert done.returncode != 0
    assert "UPTAKE_PSEUDONYM_KEY is a placeholder or a demo value" in done.stderr
    assert "openssl rand -hex 32" in done.stderr
