"""Migrations against the real engine: ordered, recorded, idempotent, and enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.warehouse.connection import connect
from pipeline.warehouse.migrations import (
    MIGRATIONS_DIR,
    MigrationError,
    applied,
    available,
    migrate,
    require_current,
)

pytestmark = pytest.mark.integration


def test_migrate_applies_everything_once(inprocess_warehouse_url: str) -> None:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        with pytest.raises(MigrationError, match="uptake migrate"):
            require_current(wh)
        ran = migrate(wh, progress=lambda line: None)
        assert [m.version for m in ran] == [m.version for m in available()]
        assert migrate(wh, progress=lambda line: None) == []
        assert require_current(wh) == available()[-1].version
        assert set(applied(wh)) == {m.version for m in available()}
        assert wh.table_exists("events") and wh.table_exists("rejected_events")


def test_a_warehouse_migrated_past_the_code_is_refused(
    inprocess_warehouse_url: str, tmp_path: Path
) -> None:
    future = tmp_path / "migrations"
    future.mkdir()
    for migration in available():
        (future / migration.path.name).write_text(migration.sql)
    (future / "9999_from_the_future.sql").write_text("SELECT 1;\n")
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, directory=future, progress=lambda line: None)
        with pytest.raises(MigrationError, match="newer than this Uptake knows"):
            require_current(wh, directory=MIGRATIONS_DIR)
        with pytest.raises(MigrationError, match="upgrade Uptake"):
            migrate(wh, directory=MIGRATIONS_DIR, progress=lambda line: None)


def test_badly_named_migration_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_snake_case"):
        available(tmp_path)


def test_statements_are_split_on_semicolons_at_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "0001_x.sql"
    path.write_text("-- a comment; not a statement\nSELECT 1;\nSELECT ';' AS s;\n\nSELECT 3")
    (migration,) = available(tmp_path)
    assert migration.statements() == ["SELECT 1", "SELECT ';' AS s", "SELECT 3"]


def test_a_folder_without_migrations_is_an_error(
    inprocess_warehouse_url: str, tmp_path: Path
) -> None:
    with pytest.raises(MigrationError, match="no warehouse migrations"):
        available(tmp_path)
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        with pytest.raises(MigrationError, match="no warehouse migrations"):
            migrate(wh, directory=tmp_path, progress=lambda line: None)
        assert not wh.table_exists("events")
