"""Refuse placeholder and demo secrets at start (docs/deploy.md#security).

Every secret value that appears in this repository's documentation, examples, Compose files or
Kubernetes manifests is public: a process that starts with one is as open as one without a
secret. `KNOWN_DEMO_SECRETS` lists them, in one place (`tests/unit/config/test_safety.py` scans the
repository and fails when a new one appears that is not listed); `refuse_demo_secrets` raises
`SettingsError` naming the setting and what to do. Components call it where they start (worker,
writer, collector, migrate), not in `Settings.validate`, so `uptake settings` still shows a
configuration that would be refused.

The embedded demo needs none of these: with no `UPTAKE_PSEUDONYM_KEY` the key is random, created
once in `<home>/pseudonym.key`, and the embedded warehouse has no password.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from pipeline.config.settings import Settings, SettingsError

PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "your-secret")
"""A secret containing one of these (case-insensitive) is a placeholder someone forgot."""

KNOWN_DEMO_SECRETS = frozenset(
    {
        # collector bearer token printed in docs/deploy.md and the compose file until 2026-12
        "uptake-demo-token-change-me",
        # pseudonym keys of the old deploy/docker-compose.yml and deploy/k8s/base/secret.yaml
        "demo-only-pseudonym-key-change-me",
        "change-me-to-a-long-random-secret",
        # passwords: the k8s Secret, the compose defaults, docs/dashboards.md
        "change-me",
        "uptake",
        "analyst",
        "admin",
        "grafana-readonly",
        "password",
    }
)
"""Secret values published in this repository: never accepted as a real secret."""

KNOWN_DEMO_TOKEN_DIGESTS = frozenset(
    hashlib.sha256(value.encode()).hexdigest() for value in KNOWN_DEMO_SECRETS
)
"""sha256 of each demo value: a collector tokens file holding one accepts a public token."""


def is_demo_secret(value: str) -> bool:
    """True for a placeholder or a value published in this repository (case-insensitive)."""
    folded = value.strip().lower()
    return folded in KNOWN_DEMO_SECRETS or any(m in folded for m in PLACEHOLDER_MARKERS)


def _url_password(url: str) -> str:
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:  # Settings.validate reports a malformed URL
        return ""


def refuse_demo_secrets(settings: Settings) -> None:
    """Raise `SettingsError` when a secret setting holds a placeholder or a published value."""
    checks = (
        (
            "UPTAKE_PSEUDONYM_KEY",
            settings.catalog.pseudonym_key.reveal(),
            "generate one with `openssl rand -hex 32`, the same for every worker, and keep it "
            "(a new key splits every user in two)",
        ),
        (
            "the password in UPTAKE_CLICKHOUSE_URL",
            _url_password(settings.warehouse.clickhouse_url.reveal()),
            "set the ClickHouse user's own password (docs/deploy.md#security)",
        ),
        (
            "UPTAKE_KAFKA_SASL_PASSWORD",
            settings.kafka.sasl_password.reveal(),
            "set the SASL user's real password",
        ),
        (
            "UPTAKE_BACKSTAGE_TOKEN",
            settings.catalog.backstage_token.reveal(),
            "set a Backstage external-access token of your own",
        ),
    )
    for name, value, advice in checks:
        if value and is_demo_secret(value):
            raise SettingsError(
                f"{name} is a placeholder or a demo value published in Uptake's repository; "
                f"{advice}"
            )


def refuse_demo_token_digests(digests: Iterable[tuple[str, str]], origin: str) -> None:
    """Raise `SettingsError` when a (source, sha256 hex) pair is the digest of a demo token."""
    for source, digest in digests:
        if digest.lower() in KNOWN_DEMO_TOKEN_DIGESTS:
            raise SettingsError(
                f"{origin}: the token of source {source!r} is a demo token published in Uptake's "
                "repository; make a new one with `uptake collector hash-token --generate "
                f"--source {source}` and replace its digest"
            )


def pseudonym_key_required(settings: Settings) -> str:
    """Why this configuration needs an explicit UPTAKE_PSEUDONYM_KEY ("" when it does not).

    A key file in `<home>` is private to one host: with a ClickHouse server (several workers,
    pods whose home is an emptyDir) or `UPTAKE_WRITER=kafka` (several processes, one home each)
    every process would create its own key and silently split every user."""
    if settings.catalog.pseudonym_key:
        return ""
    if urlsplit(settings.warehouse.url).scheme in ("http", "https"):
        return "the warehouse is a ClickHouse server (UPTAKE_CLICKHOUSE_URL)"
    if settings.warehouse.writer == "kafka":
        return "UPTAKE_WRITER=kafka runs several processes"
    return ""
