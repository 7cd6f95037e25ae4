"""A team or capability name cannot break or change a dashboard's queries (issue #16, hole 6).

Every ClickHouse panel query of every committed dashboard is expanded with each of its name
variables set to a crafted name (quotes, backslashes, a comment, a newline), exactly as Grafana
substitutes it (`pipeline.dashboards.grafana_sql`), and run on the embedded engine of a migrated,
empty warehouse: each must run. The filters themselves are run on one-row tables to show that
the name stays a literal: it matches its own row and no other. The negative control runs the
same check on Grafana's `:singlequote` format the dashboards used before, which a backslash
breaks out of.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.dashboards import grafana_sql
from pipeline.dashboards.board import CLICKHOUSE_UID
from pipeline.dashboards.names import name_in, name_is
from tests.conftest import Pipeline
from tests.support.dashboards import FilledWarehouse, dashboard_files, panels_of

pytestmark = pytest.mark.integration

HOSTILE = (
    "\\' OR 1=1 --",  # leaves a :singlequote literal: the name ends up as code
    "ends with a backslash\\",
    'it\'s "quoted"',
    "line\nbreak; DROP TABLE events",
    "50% off_%41 Zürich 🚀",
)
RANGE = grafana_sql.TimeRange.last(timedelta(days=30), datetime(2026, 1, 1, tzinfo=UTC))
INTERVAL = timedelta(days=1)


@pytest.fixture(scope="module")
def empty_warehouse(tmp_path_factory: pytest.TempPathFactory) -> FilledWarehouse:
    """A migrated warehouse with no rows (only the SQL is on trial here)."""
    home = tmp_path_factory.mktemp("hostile-names")
    env = {
        "PATH": "/usr/bin:/bin",
        "UPTAKE_HOME": str(home),
        "UPTAKE_CLICKHOUSE_URL": f"chdb://{home / 'warehouse'}",
    }
    Pipeline(env, home).run("migrate", timeout=600)
    warehouse = FilledWarehouse(env["UPTAKE_CLICKHOUSE_URL"], env, RANGE.start, RANGE.end, ())
    return warehouse


def name_variables(dashboard: dict[str, Any], name: str) -> dict[str, grafana_sql.Variable]:
    """Each ClickHouse variable of `dashboard` set to `name` (multi-value ones: only `name`)."""
    found = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("datasource", {}).get("uid") != CLICKHOUSE_UID:
            continue
        value: str | tuple[str, ...] = (name,) if variable.get("multi") else name
        found[variable["name"]] = grafana_sql.Variable(variable["name"], value, (name,))
    return found


def test_every_panel_query_runs_with_a_crafted_name(empty_warehouse: FilledWarehouse) -> None:
    statements: dict[str, str] = {}
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        for number, name in enumerate(HOSTILE):
            variables = name_variables(dashboard, name)
            for panel in panels_of(dashboard):
                for target in panel.get("targets", []):
                    if target["datasource"]["uid"] != CLICKHOUSE_UID:
                        continue
                    sql = target["rawSql"]
                    if not any(f"${v}" in sql or f"${{{v}" in sql for v in variables):
                        continue
                    key = f"{path.name}/{panel['title']}/{target['refId']}/{number}"
                    statements[key] = grafana_sql.expand(
                        sql, time_range=RANGE, interval=INTERVAL, variables=variables
                    )
    assert len(statements) > 50, "the dashboards filter by team and capability"
    results = empty_warehouse.query_many(statements)
    broken = {key: result for key, result in results.items() if isinstance(result, str)}
    assert not broken, json.dumps(broken, indent=1)[:4000]


def filter_matches(warehouse: FilledWarehouse, condition: str, multi: bool) -> dict[str, Any]:
    """For each hostile name: how many of two rows (the name, and 'other') `condition` keeps."""
    statements = {}
    for name in HOSTILE:
        value: str | tuple[str, ...] = (name,) if multi else name
        variables = {"team": grafana_sql.Variable("team", value, (name,))}
        rows = f"SELECT arrayJoin([{_literal(name)}, 'other']) AS team"
        sql = f"SELECT count() AS n FROM ({rows}) WHERE {condition}"
        statements[name] = grafana_sql.expand(
            sql, time_range=RANGE, interval=INTERVAL, variables=variables
        )
    results = warehouse.query_many(statements)
    return {
        name: result if isinstance(result, str) else int(result.rows[0][0])
        for name, result in results.items()
    }


def _literal(name: str) -> str:
    """`name` as a ClickHouse string literal, escaped completely (for the test's own rows)."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


@pytest.mark.parametrize("multi", [False, True])
def test_a_crafted_name_stays_a_literal(empty_warehouse: FilledWarehouse, multi: bool) -> None:
    condition = name_in("team", "team") if multi else name_is("team", "team")
    assert filter_matches(empty_warehouse, condition, multi) == dict.fromkeys(HOSTILE, 1)


def test_negative_control_singlequote_lets_a_backslash_out(
    empty_warehouse: FilledWarehouse,
) -> None:
    """The format the dashboards used before: the first name matches both rows (`OR 1=1`),
    the second does not even parse."""
    matches = filter_matches(empty_warehouse, "team = ${team:singlequote}", multi=False)
    assert matches["\\' OR 1=1 --"] == 2
    assert isinstance(matches["ends with a backslash\\"], str)


def test_the_report_binds_a_name_filter_as_one_parameter() -> None:
    bound = grafana_sql.to_clickhouse_parameters(
        f"SELECT 1 WHERE {name_is('team', 'team')}",
        time_range=RANGE,
        interval=INTERVAL,
        variables={"team": grafana_sql.Variable("team", HOSTILE[0])},
    )
    assert bound.sql == "SELECT 1 WHERE team = {team:String}"
    assert bound.parameters["team"] == HOSTILE[0]


def test_dashboards_never_use_a_format_a_backslash_breaks() -> None:
    for path in dashboard_files():
        text = Path(path).read_text()
        assert ":singlequote}" not in text and ":sqlstring}" not in text, path.name
