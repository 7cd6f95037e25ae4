"""One pseudonym key per warehouse (issue #16, hole 5: pipeline/enrich/key_fingerprint.py).

Without a stored fingerprint, a worker on another host (or a pod with a new home) makes its own
random key and splits every user in two, silently. The real chdb engine, migrated as shipped.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config.settings import Settings, SettingsError
from pipeline.enrich.key_fingerprint import (
    TABLE,
    KeyMismatch,
    pseudonymizer_for,
    require_key_fingerprint,
)
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.conftest import Pipeline


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        yield wh


def _key() -> Pseudonymizer:
    return Pseudonymizer(secrets.token_bytes(32))


def test_the_first_key_is_recorded_and_the_same_key_starts_again(warehouse: Warehouse) -> None:
    key = _key()
    require_key_fingerprint(warehouse, key)
    require_key_fingerprint(warehouse, Pseudonymizer(key._key))  # a restart: same key
    rows = warehouse.rows(f"SELECT fingerprint FROM {TABLE}")
    assert rows == [(key.fingerprint(),)]  # recorded once


def test_another_key_is_refused_with_a_precise_error(warehouse: Warehouse) -> None:
    first, other = _key(), _key()
    require_key_fingerprint(warehouse, first)
    with pytest.raises(KeyMismatch) as refused:
        require_key_fingerprint(warehouse, other)
    message = str(refused.value)
    assert "UPTAKE_PSEUDONYM_KEY" in message and "count every user twice" in message
    assert first.fingerprint()[:12] in message and other.fingerprint()[:12] in message
    assert warehouse.rows(f"SELECT count() FROM {TABLE}") == [(1,)]  # refused: nothing recorded
    # Negative control: the refused key is a good key; a warehouse that recorded it takes it.
    warehouse.command(f"TRUNCATE TABLE {TABLE}")
    require_key_fingerprint(warehouse, other)


def test_the_fingerprint_tells_keys_apart_and_never_shows_one() -> None:
    key = secrets.token_bytes(32)
    fingerprint = Pseudonymizer(key).fingerprint()
    assert fingerprint == Pseudonymizer(key).fingerprint()
    assert fingerprint != Pseudonymizer(secrets.token_bytes(32)).fingerprint()
    assert key.hex() not in fingerprint and len(fingerprint) == 64
    # nor a user key: the label is no user id a worker would hash
    assert Pseudonymizer(key).key_of("uptake pseudonym key fingerprint v1") not in fingerprint


def test_concurrent_first_starts_keep_the_earliest_key(warehouse: Warehouse) -> None:
    """Two processes that found no fingerprint both insert; the earliest row wins."""
    first, second = _key(), _key()
    warehouse.insert_columns(
        TABLE, [[first.fingerprint()], ["host-a"]], ["fingerprint", "recorded_by"]
    )
    warehouse.insert_columns(
        TABLE, [[second.fingerprint()], ["host-b"]], ["fingerprint", "recorded_by"]
    )
    require_key_fingerprint(warehouse, first)
    with pytest.raises(KeyMismatch, match="recorded by host-a"):
        require_key_fingerprint(warehouse, second)


def test_pseudonymizer_for_requires_a_key_with_a_server_and_refuses_a_placeholder(
    tmp_path: Path,
) -> None:
    server = {"UPTAKE_HOME": str(tmp_path), "UPTAKE_CLICKHOUSE_URL": "https://u:s3cr3t-x@ch/db"}
    with pytest.raises(SettingsError, match=r"^UPTAKE_PSEUDONYM_KEY is not set and the warehouse"):
        pseudonymizer_for(Settings.from_env(server))
    assert not (tmp_path / "pseudonym.key").exists()  # no per-host key was made
    placeholder = {**server, "UPTAKE_PSEUDONYM_KEY": "change-me-to-a-long-random-secret"}
    with pytest.raises(SettingsError, match="placeholder"):
        pseudonymizer_for(Settings.from_env(placeholder))
    key = secrets.token_hex(32)
    keyed = pseudonymizer_for(Settings.from_env({**server, "UPTAKE_PSEUDONYM_KEY": key}))
    assert keyed.fingerprint() == Pseudonymizer(key.encode()).fingerprint()
    # Negative control: the embedded default still makes its key file (make demo, the tests).
    embedded = pseudonymizer_for(Settings.from_env({"UPTAKE_HOME": str(tmp_path)}))
    assert (tmp_path / "pseudonym.key").exists()
    assert (
        embedded.fingerprint()
        == pseudonymizer_for(Settings.from_env({"UPTAKE_HOME": str(tmp_path)})).fingerprint()
    )


@pytest.mark.integration
def test_a_worker_on_another_host_refuses_to_split_the_users(
    pipeline_env: Pipeline, tmp_path: Path
) -> None:
    """Today's hole: no key set, two hosts (two homes), one warehouse, two keys."""
    if "UPTAKE_PSEUDONYM_KEY" in pipeline_env.env:
        pytest.skip("a ClickHouse server warehouse needs an explicit key: no per-host key file")
    pipeline_env.run("migrate")
    pipeline_env.run("worker", "--exit-when-idle", "1", timeout=180)  # host A records its key
    pipeline_env.run("worker", "--exit-when-idle", "1", timeout=180)  # negative control: A again
    other_host = dict(pipeline_env.env, UPTAKE_HOME=str(tmp_path / "host-b"))
    refused = Pipeline(other_host, pipeline_env.home).run(
        "worker", "--exit-when-idle", "1", timeout=180, check=False
    )
    assert refused.returncode != 0
    assert "the pseudonym key differs from the one this warehouse's user keys" in refused.stderr
    assert (tmp_path / "host-b" / "pseudonym.key").exists()  # it did make its own key
    rows = pipeline_env.rows(f"SELECT count() AS n FROM {TABLE}")
    assert rows == [{"n": 1}]
