"""deploy/grafana: the read-only user SQL parses in ClickHouse (the embedded engine's parser)."""

from __future__ import annotations

import pytest

from pipeline.warehouse.connection import connect
from tests.conftest import REPO

GRAFANA = REPO / "deploy" / "grafana"


def statements() -> list[str]:
    text = (GRAFANA / "clickhouse" / "grafana-readonly.sql").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@pytest.mark.integration
def test_the_read_only_user_sql_parses_in_clickhouse(inprocess_warehouse_url: str) -> None:
    found = statements()
    assert [s.split()[0] for s in found] == ["CREATE", "CREATE", "GRANT", "CREATE", "GRANT", "SET"]
    with connect(inprocess_warehouse_url, create_database=True) as warehouse:
        for statement in found:
            # EXPLAIN AST runs ClickHouse's parser without executing (no access storage needed).
            assert warehouse.rows(f"EXPLAIN AST {statement}"), statement
    text = " ".join(found)
    assert "readonly = 1" in text and "CHANGEABLE_IN_READONLY" in text
    assert "GRANT SELECT ON uptake.*" in text
