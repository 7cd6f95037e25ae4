"""Versioned SQL migrations from `schemas/clickhouse/NNNN_name.sql`, applied in order.

Each file holds statements separated by `;` at the end of a line. Statements are written to be
idempotent (`IF NOT EXISTS`), and every applied migration is recorded in `schema_migrations`
with its checksum, so running `uptake migrate` again does nothing. The worker calls
`require_current()` and refuses to start on a warehouse that is behind or ahead of the code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline import resources
from pipeline.warehouse.connection import Warehouse, WarehouseError

MIGRATIONS_DIR = resources.folder("schemas/clickhouse")
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


class MigrationError(WarehouseError):
    """The warehouse schema does not match what this version of Uptake knows."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def statements(self) -> list[str]:
        """The file's statements, comments removed, split on `;` at the end of a line."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        chunks = re.split(r";[ \t]*(?:\n|$)", "\n".join(lines))
        return [chunk.strip() for chunk in chunks if chunk.strip()]


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, in order; MigrationError when it holds none (an installation
    without its migrations must not report a warehouse as up to date)."""
    try:
        paths = resources.require_files(directory, "*.sql", "warehouse migrations")
    except resources.ResourceMissing as exc:
        raise MigrationError(str(exc)) from None
    migrations = []
    for path in paths:
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path} is not named NNNN_snake_case.sql")
        migrations.append(Migration(int(match["version"]), match["name"], path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version in {directory}")
    return migrations


def applied(warehouse: Warehouse) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the migrations recorded in the warehouse."""
    if not warehouse.table_exists("schema_migrations"):
        return {}
    rows = warehouse.rows("SELECT version, name, checksum FROM schema_migrations FINAL")
    return {int(version): (name, checksum) for version, name, checksum in rows}


def migrate(
    warehouse: Warehouse,
    directory: Path = MIGRATIONS_DIR,
    progress: Callable[[str], None] = print,
    cluster: str = "",
) -> list[Migration]:
    """Apply the pending migrations in order; returns those applied (empty when up to date).

    With `cluster` (UPTAKE_CLICKHOUSE_CLUSTER) every statement runs `ON CLUSTER`, rewritten for
    Replicated tables behind Distributed ones (pipeline/warehouse/cluster.py).
    """
    known = available(directory)
    run = _runner(warehouse, known, cluster)
    run(LEDGER_DDL)
    done = applied(warehouse)
    newest_known = max((m.version for m in known), default=0)
    ahead = [v for v in done if v > newest_known]
    if ahead:
        raise MigrationError(
            f"the warehouse has migration {max(ahead)}, newer than this Uptake knows "
            f"({newest_known}): upgrade Uptake instead of migrating"
        )
    for migration in known:
        if migration.version in done and done[migration.version][1] != migration.checksum:
            progress(
                f"warning: migration {migration.version:04d}_{migration.name} changed after it "
                "was applied; write a new migration instead of editing an applied one"
            )
    pending = [m for m in known if m.version not in done]
    for migration in pending:
        progress(f"applying {migration.path.name}")
        for statement in migration.statements():
            run(statement)
        warehouse.client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
    return pending


def _runner(warehouse: Warehouse, known: list[Migration], cluster: str) -> Callable[[str], None]:
    """Runs a migration statement: as written, or rewritten for the cluster."""
    if not cluster:
        return warehouse.command
    from pipeline.warehouse.cluster import ClusterDDL, use_cluster

    ddl = ClusterDDL(cluster, warehouse.database)
    ddl.learn([LEDGER_DDL])
    for migration in known:
        ddl.learn(migration.statements())
    for migration in known:  # a statement the rewrite cannot handle stops us before any DDL
        for statement in migration.statements():
            ddl.transform(statement)
    use_cluster(warehouse, cluster, create_database=True)

    def run(statement: str) -> None:
        for rewritten in ddl.transform(statement):
            warehouse.command(rewritten)

    return run


def require_current(warehouse: Warehouse, directory: Path = MIGRATIONS_DIR) -> int:
    """Return the schema version, or raise MigrationError if the warehouse is behind or ahead."""
    known = available(directory)
    newest_known = max((m.version for m in known), default=0)
    done = applied(warehouse)
    newest_applied = max(done, default=0)
    if newest_applied > newest_known:
        raise MigrationError(
            f"the warehouse is at migration {newest_applied}, newer than this Uptake knows "
            f"({newest_known}): upgrade Uptake before starting the worker"
        )
    missing = [m for m in known if m.version not in done]
    if missing:
        raise MigrationError(
            f"the warehouse is not migrated ({len(missing)} pending, first "
            f"{missing[0].path.name}): run `uptake migrate` before starting the worker"
        )
    return newest_applied
