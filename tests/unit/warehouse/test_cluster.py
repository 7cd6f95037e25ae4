"""Cluster mode (UPTAKE_CLICKHOUSE_CLUSTER): the DDL generated for every migration file.

No cluster is needed: the generated statements are checked for their shape here and parsed by
the real ClickHouse parser (`EXPLAIN AST` on the embedded engine). `uptake migrate` against a
ClickHouse server container: tests/integration/warehouse/test_cluster.py.
"""

from __future__ import annotations

import re

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.warehouse.cluster import (
    LOCAL_SUFFIX,
    ClusterDDL,
    ClusterDDLError,
    client_settings,
)
from pipeline.warehouse.connection import WarehouseError, opened
from pipeline.warehouse.migrations import LEDGER_DDL, available, migrate

CLUSTER = "uptake_cluster"


def all_statements() -> list[str]:
    return [LEDGER_DDL] + [s for m in available() for s in m.statements()]


@pytest.fixture(scope="module")
def generated() -> list[tuple[str, list[str]]]:
    """(original statement, the statements cluster mode runs instead), for every migration."""
    ddl = ClusterDDL(CLUSTER, "uptake")
    ddl.learn(all_statements())
    return [(s, ddl.transform(s)) for s in all_statements()]


def created_tables() -> list[str]:
    return [
        m[1] for s in all_statements() if (m := re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", s))
    ]


def test_every_statement_of_every_migration_runs_on_the_cluster(
    generated: list[tuple[str, list[str]]],
) -> None:
    assert len(generated) == len(all_statements())
    for _original, statements in generated:
        assert statements
        for statement in statements:
            assert f"ON CLUSTER `{CLUSTER}`" in statement, statement[:200]


def test_every_table_is_replicated_behind_a_distributed_table(
    generated: list[tuple[str, list[str]]],
) -> None:
    tables = created_tables()
    assert {"events", "rejected_events", "schema_migrations"} <= set(tables)
    by_text = "\n".join(s for _, out in generated for s in out)
    for table in tables:
        local = table + LOCAL_SUFFIX
        local_create = re.search(
            rf"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER .*?ENGINE = (Replicated\w*MergeTree)"
            rf"\('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}'",
            by_text,
            re.S,
        )
        assert local_create, f"{table}: no Replicated local table"
        assert re.search(
            rf"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER `{CLUSTER}` AS {local} "
            rf"ENGINE = Distributed\('{CLUSTER}', 'uptake', {local}, ",
            by_text,
        ), f"{table}: no Distributed table"


def test_engines_keep_their_family_and_arguments(generated: list[tuple[str, list[str]]]) -> None:
    engines = {}
    for original, statements in generated:
        single = re.search(r"ENGINE = (\w+)(\([^)]*\))?", original)
        if single and original.lstrip().startswith("CREATE TABLE"):
            local = statements[0]
            replicated = re.search(
                r"ENGINE = (Replicated\w+)\('[^']*', '\{replica\}'(.*?)\)", local
            )
            assert replicated, local[:300]
            assert replicated[1] == "Replicated" + single[1]
            assert replicated[2].strip(", ") == (single[2] or "()")[1:-1].strip()
            engines[single[1]] = replicated[1]
    assert engines["ReplacingMergeTree"] == "ReplicatedReplacingMergeTree"
    assert engines["AggregatingMergeTree"] == "ReplicatedAggregatingMergeTree"
    assert engines["MergeTree"] == "ReplicatedMergeTree"


def test_no_block_deduplication_like_a_single_server(
    generated: list[tuple[str, list[str]]],
) -> None:
    for _, statements in generated:
        for statement in statements:
            if re.search(r"ENGINE = Replicated", statement):
                assert statement.count("replicated_deduplication_window = 0") == 1, statement


def test_the_sinks_tables_shard_by_kafka_partition_and_others_by_their_key(
    generated: list[tuple[str, list[str]]],
) -> None:
    keys = {}
    for _, statements in generated:
        for statement in statements:
            m = re.search(
                r"CREATE TABLE IF NOT EXISTS (\w+) .*Distributed\(.*?, \w+, (.+)\)$", statement
            )
            if m:
                keys[m[1]] = m[2]
    assert keys["events"] == "_partition"
    assert keys["rejected_events"] == "_partition"
    assert keys["team_catalog"] == "cityHash64(kind, name, valid_from)"
    assert keys["usage_hour"] == "cityHash64(event_type, capability, team, bucket)"  # AS other


def test_materialized_views_read_and_write_the_local_tables(
    generated: list[tuple[str, list[str]]],
) -> None:
    tables = set(created_tables())
    views = 0
    for original, statements in generated:
        if not original.lstrip().startswith("CREATE MATERIALIZED VIEW"):
            continue
        views += 1
        (statement,) = statements
        target = re.search(r" TO (\w+) ", statement)
        assert target and target[1].endswith(LOCAL_SUFFIX), statement[:200]
        sources = re.findall(r"\bFROM\s+(\w+)", statement)
        for source in sources:
            assert source not in tables, f"{source} read through Distributed in an MV"
        assert any(s.endswith(LOCAL_SUFFIX) for s in sources)
    assert views >= 4


def test_plain_views_read_the_distributed_tables(generated: list[tuple[str, list[str]]]) -> None:
    for original, statements in generated:
        if re.match(r"\s*CREATE VIEW", original):
            (statement,) = statements
            assert LOCAL_SUFFIX + " " not in statement and not re.search(r"\w_local\b", statement)


def test_alter_column_goes_to_both_tables_and_ttl_only_to_the_local_one() -> None:
    ddl = ClusterDDL(CLUSTER, "uptake")
    ddl.learn(all_statements())
    both = ddl.transform("ALTER TABLE events ADD COLUMN IF NOT EXISTS x UInt8 AFTER team")
    assert [s.split(" ON ")[0] for s in both] == ["ALTER TABLE events_local", "ALTER TABLE events"]
    mixed = ddl.transform(
        "ALTER TABLE events MODIFY TTL toDateTime(occurred_at) + INTERVAL 1 DAY, "
        "ADD COLUMN y String SETTINGS materialize_ttl_after_modify = 0"
    )
    assert mixed[0].startswith("ALTER TABLE events_local") and "MODIFY TTL" in mixed[0]
    assert mixed[0].endswith("SETTINGS materialize_ttl_after_modify = 0")
    assert mixed[1] == f"ALTER TABLE events ON CLUSTER `{CLUSTER}` ADD COLUMN y String"


def test_unknown_statements_are_refused_not_run_on_one_node() -> None:
    ddl = ClusterDDL(CLUSTER, "uptake")
    ddl.learn(all_statements())
    for statement in (
        "INSERT INTO events SELECT * FROM events",
        "OPTIMIZE TABLE events FINAL",
        "CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a",
        "ALTER TABLE nowhere ADD COLUMN a UInt8",
        "CREATE TABLE t (a UInt8) ENGINE = Memory",
    ):
        with pytest.raises(ClusterDDLError):
            ddl.transform(statement)


def test_client_settings_make_distributed_writes_synchronous() -> None:
    assert client_settings() == {
        "insert_distributed_sync": "1",
        "insert_quorum": "auto",
        "select_sequential_consistency": "1",
    }


def test_the_clickhouse_parser_accepts_every_generated_statement(
    generated: list[tuple[str, list[str]]], inprocess_warehouse_url: str
) -> None:
    with opened(inprocess_warehouse_url, create_database=True) as warehouse:
        for _, statements in generated:
            for statement in statements:
                warehouse.command("EXPLAIN AST " + statement)
        with pytest.raises(DatabaseError):  # the check can fail
            warehouse.command(
                "EXPLAIN AST CREATE TABLE t_local ON CLUSTER c (a UInt8) ENGINE = "
                "ReplicatedMergeTree('/p', '{replica}') ORDER BY"
            )


def test_migrate_with_a_cluster_needs_a_server(inprocess_warehouse_url: str) -> None:
    if not inprocess_warehouse_url.startswith("chdb://"):
        pytest.skip("the embedded engine is not in use in this session")
    with (
        opened(inprocess_warehouse_url, create_database=True) as warehouse,
        pytest.raises(WarehouseError, match="needs a ClickHouse server"),
    ):
        migrate(warehouse, progress=lambda line: None, cluster=CLUSTER)
