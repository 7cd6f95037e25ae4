"""Cluster mode (UPTAKE_CLICKHOUSE_CLUSTER) against a ClickHouse server: `uptake migrate` runs
plain, and on a server's one-node test cluster (skipped without a server or Keeper).
"""

from __future__ import annotations

import uuid

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.warehouse.connection import WarehouseError, opened
from pipeline.warehouse.migrations import applied, available, migrate


@pytest.mark.integration
def test_migrate_on_a_server(clickhouse_server_url: str | None) -> None:
    """`uptake migrate` against a real ClickHouse server: plain, then an unknown cluster."""
    if clickhouse_server_url is None:
        pytest.skip(
            "no ClickHouse server: no Docker engine answers and UPTAKE_CLICKHOUSE_URL "
            "names none (the embedded engine runs the same migrations elsewhere)"
        )
    url = f"{clickhouse_server_url}/t_{uuid.uuid4().hex[:12]}"
    with opened(url, create_database=True) as warehouse:
        ran = migrate(warehouse, progress=lambda line: None)
        assert [m.version for m in ran] == [m.version for m in available()]
        assert set(applied(warehouse)) == {m.version for m in available()}
        assert migrate(warehouse, progress=lambda line: None) == []
        with pytest.raises(WarehouseError, match="no cluster"):
            migrate(warehouse, progress=lambda line: None, cluster="no_such_cluster")
        # a server's default configuration has a one-node test cluster
        clusters = {r[0] for r in warehouse.rows("SELECT DISTINCT cluster FROM system.clusters")}
    if "default" in clusters:
        cluster_url = f"{clickhouse_server_url}/c_{uuid.uuid4().hex[:12]}"
        with opened(cluster_url, create_database=True) as warehouse:
            try:
                migrate(warehouse, progress=lambda line: None, cluster="default")
            except DatabaseError as exc:  # no ZooKeeper/Keeper: Replicated tables cannot exist
                if "ZooKeeper" not in str(exc) and "Keeper" not in str(exc):
                    raise
                pytest.skip(f"the server has no Keeper for Replicated tables: {exc}")
            assert set(applied(warehouse)) == {m.version for m in available()}
