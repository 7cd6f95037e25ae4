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

# What main shipped before issue #16 (deploy/, docs/deploy.md, docs/dashboards.md).
SHIPPED_ON_MAIN = (
    "uptake-demo-token-change-me",
    "demo-only-pseudonym-key-change-me",
    "change-me-to-a-long-random-secret",
    "change-me",
    "uptake",
    "analyst",
    "admin",
    "grafana-readonly",
)


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


def test_what_main_shipped_is_in_the_one_list() -> None:
    assert set(SHIPPED_ON_MAIN) <= KNOWN_DEMO_SECRETS
    assert all(is_demo_secret(v.upper()) for v in SHIPPED_ON_MAIN)  # case does not help
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


def test_the_collector_refuses_to_start_with_the_demo_token(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"demo": hash_token("uptake-demo-token-change-me")}))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "collector", "--tokens", str(tokens), "--port", "0"],
        env={
            "PATH": "/usr/bin:/bin",
            "UPTAKE_HOME": str(tmp_path),
            "UPTAKE_COLLECTOR_METRICS_PORT": "0",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode != 0
    assert "the token of source 'demo' is a demo token" in done.stderr
    assert "hash-token --generate --source demo" in done.stderr


def test_the_worker_refuses_a_placeholder_key_before_anything_else(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        env={
            "PATH": "/usr/bin:/bin",
            "UPTAKE_HOME": str(tmp_path),
            "UPTAKE_PSEUDONYM_KEY": "demo-only-pseudonym-key-change-me",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode != 0
    assert "UPTAKE_PSEUDONYM_KEY is a placeholder or a demo value" in done.stderr
    assert "openssl rand -hex 32" in done.stderr
