"""Every ```sql block of docs/analysts.md runs against the loaded warehouse and returns rows."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO
from tests.integration.views.conftest import Warehouse

pytestmark = pytest.mark.integration

DOC = REPO / "docs" / "analysts.md"
SQL_BLOCK = r"```sql\n(.*?)```"
_FEEDBACK = re.search(r"^## Developer feedback\n.*?(?=^## )", DOC.read_text(), re.DOTALL | re.M)
assert _FEEDBACK is not None, "docs/analysts.md has no section Developer feedback"
FEEDBACK_BLOCKS = re.findall(SQL_BLOCK, _FEEDBACK[0], flags=re.DOTALL)
"""Run by tests/integration/views/test_feedback.py: the simulated weeks carry no feedback."""
# Every other query; the backfill statements write and answer nothing: test_history_backfill.py
# runs them.
BLOCKS = [
    block
    for block in re.findall(SQL_BLOCK, DOC.read_text().replace(_FEEDBACK[0], ""), flags=re.DOTALL)
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
        "0015_developer_feedback.sql",
    ):
        sql = (REPO / "schemas" / "clickhouse" / migration).read_text()
        names |= set(re.findall(r"CREATE (?:TABLE|VIEW) IF NOT EXISTS (\w+)", sql))
    assert {n for n in names if f"`{n}`" not in text} == set()
