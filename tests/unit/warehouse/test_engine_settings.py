"""The embedded engine's memory bounds reach the engine, and a bad one is refused precisely.

chdb runs one engine per process, so each case opens its engine in a child process and prints
what the engine reports (system.server_settings, system.settings).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config.settings import Settings, SettingsError

_CHILD = """
import json, sys
from pipeline.warehouse.connection import WarehouseError, connect, engine_settings
first, second = json.loads(sys.argv[2]), json.loads(sys.argv[3])
try:
    warehouse = connect(sys.argv[1], create_database=True, engine_options=first)
    if second is not None:  # a later connection asking for other values
        connect(sys.argv[1], engine_options=second)
    names = [*first, "mark_cache_size", "max_server_memory_usage"]
    print(json.dumps({"in_effect": engine_settings(warehouse.client, names)}))
except WarehouseError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def _engine(folder: Path, options: dict[str, int], second: dict[str, int] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, f"chdb://{folder}", json.dumps(options), json.dumps(second)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_shipped_bounds_reach_the_engine(tmp_path: Path) -> None:
    options = Settings.from_env({}).warehouse.engine_options()
    assert options["max_server_memory_usage"] == 320 * 2**20
    found = _engine(tmp_path / "wh", options)
    assert found == {"in_effect": options}


def test_other_values_reach_the_engine_too(tmp_path: Path) -> None:
    env = {
        "UPTAKE_CHDB_MAX_MEMORY_MB": "200",
        "UPTAKE_CHDB_MAX_QUERY_MEMORY_MB": "100",
        "UPTAKE_CHDB_CACHE_MB": "0",
    }
    options = Settings.from_env(env).warehouse.engine_options()
    found = _engine(tmp_path / "wh", options)["in_effect"]
    assert found["max_server_memory_usage"] == 200 * 2**20
    assert found["max_memory_usage"] == 100 * 2**20
    assert found["mark_cache_size"] == found["primary_index_cache_size"] == 0


def test_without_bounds_the_engine_keeps_its_own_defaults(tmp_path: Path) -> None:
    # Negative control: the read-back sees the difference the options make.
    found = _engine(tmp_path / "wh", {})["in_effect"]
    assert found["mark_cache_size"] == 5 * 2**30  # ClickHouse's default
    assert found["max_server_memory_usage"] > 320 * 2**20  # a share of the machine's RAM


def test_an_engine_started_with_other_values_is_refused(tmp_path: Path) -> None:
    options = Settings.from_env({}).warehouse.engine_options()
    found = _engine(tmp_path / "wh", options, {**options, "mark_cache_size": 2**20})
    assert "runs with {'mark_cache_size': 33554432}" in found["error"]
    assert "requested {'mark_cache_size': 1048576}" in found["error"]


def test_a_value_the_engine_cannot_parse_is_refused_with_its_name(tmp_path: Path) -> None:
    found = _engine(tmp_path / "wh", {"mark_cache_size": "lots"})  # type: ignore[dict-item]
    assert "cannot open the embedded warehouse" in found["error"]
    assert "'mark_cache_size': 'lots'" in found["error"]
    assert "while parsing setting 'mark_cache_size'" in found["error"]


def test_a_setting_the_engine_does_not_know_is_refused(tmp_path: Path) -> None:
    # chdb itself ignores an unknown name; the read-back catches it.
    found = _engine(tmp_path / "wh", {"mark_cash_size": 1})
    assert found == {"error": "the embedded engine has no setting mark_cash_size"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UPTAKE_CHDB_MAX_MEMORY_MB": "32"}, "UPTAKE_CHDB_MAX_MEMORY_MB must be at least 64 MB"),
        ({"UPTAKE_CHDB_MAX_MEMORY_MB": "lots"}, "UPTAKE_CHDB_MAX_MEMORY_MB='lots' is not a valid"),
        (
            {"UPTAKE_CHDB_MAX_QUERY_MEMORY_MB": "400"},
            "UPTAKE_CHDB_MAX_QUERY_MEMORY_MB must be at least 16 MB and at most "
            "UPTAKE_CHDB_MAX_MEMORY_MB (320), not 400",
        ),
        ({"UPTAKE_CHDB_CACHE_MB": "-1"}, "UPTAKE_CHDB_CACHE_MB must be 0 (no cache) or more MB"),
        ({"UPTAKE_FETCH_MAX_BYTES": "1000"}, "UPTAKE_FETCH_MAX_BYTES must be at least 65536"),
        ({"UPTAKE_STREAM_BUFFER_MESSAGES": "-1"}, "UPTAKE_STREAM_BUFFER_MESSAGES must be at least"),
    ],
)
def test_a_bad_bound_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert message in str(raised.value)


def test_the_stream_buffer_holds_at_least_one_batch() -> None:
    assert Settings.from_env({}).ingest.stream_buffer() == 20_000
    env = {"UPTAKE_BATCH_MAX_MESSAGES": "300", "UPTAKE_STREAM_BUFFER_MESSAGES": "100"}
    assert Settings.from_env(env).ingest.stream_buffer() == 300
