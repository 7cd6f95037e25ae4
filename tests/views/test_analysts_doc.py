"""Every ```sql block of docs/analysts.md runs against the loaded warehouse and returns rows."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO
from tests.views.conftest import Warehouse

pytestmark = pytest.mark.integration

DOC = REPO / "docs" / "analysts.md"
# Every query; the backfill statements write and answer nothing: test_history_backfill.py
# runs them.
BLOCKS = [
    block
    for block in re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    if not block.startswith("-- Backfill")
]


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("sql", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_query_runs_and_answers(warehouse: Warehouse, sql: str) -> None:
    rows = warehouse.rows(sql)
    assert rows, f"no rows from:\n{sql}"


def test_every_table_and_view_of_the_analyst_migrations_is_documented() -> None:
    text = DOC.read_text()
    names = set()
    for migration in (
        "0003_rollups_and_facts.sql",
        "0004_views.sql",
        "0006_dora_metrics.sql",
        "0007_impact_estimates.sql",
        "0008_use_and_denominators.sql",
        "0009_adoption_dimensions.sql",
    ):
        sql = (REPO / "schemas" / "clickhouse" / migration).read_text()
        names |= set(re.findall(r"CREATE (?:TABLE|VIEW) IF NOT EXISTS (\w+)", sql))
    assert {n for n in names if f"`{n}`" not in text} == set()
