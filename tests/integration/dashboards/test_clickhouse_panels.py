"""Every ClickHouse panel query runs on a simulator-filled warehouse and gives what its panel needs.

For each committed dashboard (the JSON Grafana loads, not the Python that made it):
1. every query variable's SQL is expanded and run; it must list options. A variable takes
   Grafana's default: All where it has one, else its saved value or the first option;
2. every ClickHouse target's SQL is expanded as Grafana and the plugin expand it
   (`pipeline.dashboards.grafana_sql`: `$__conditionalAll`, variables, macros, the interval
   Grafana computes for a 1000 px wide panel) over the dashboard's default time range, and run.
   A query with `$__conditionalAll` also runs with a single value chosen (the other branch);
3. the result must not be empty and must have the shape of its panel: a time series (and a
   heatmap) a time column ascending plus numbers (what the plugin's long-to-wide conversion
   needs), a stat a number, a bar chart its x field and numbers, a matrix table its fields;
   percentages stay within 0-1.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.dashboards.panel_queries import (
    PanelQuery,
    default_variables,
    has_clickhouse_targets,
    panel_queries,
    time_range_of,
)
from pipeline.report.frames import ShapeError, Table, long_to_wide
from tests.support.dashboards import FilledWarehouse, Result, dashboard_files

pytestmark = pytest.mark.integration

# --- shapes ----------------------------------------------------------------------------------

_NUMERIC = re.compile(r"^(Nullable\()?(LowCardinality\()?(U?Int\d+|Float\d+|Decimal.*)")
_TIME = re.compile(r"^(Nullable\()?(Date|Date32|DateTime|DateTime64)\b")


def to_table(result: Result) -> Table:
    """The result with ClickHouse's types restored: times as datetimes, numbers as floats."""

    def convert(value: Any, kind: str) -> Any:
        if value is None:
            return None
        if _TIME.match(kind):
            text = str(value)
            parsed = datetime.fromisoformat(text if " " in text or "T" in text else text + " 00:00")
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
        if _NUMERIC.match(kind):
            return float(value)
        return str(value)

    rows = tuple(
        tuple(convert(v, k) for v, k in zip(row, result.types, strict=True)) for row in result.rows
    )
    return Table(tuple(result.columns), rows)


def numeric_columns(table: Table, result: Result) -> list[str]:
    return [c for c, k in zip(result.columns, result.types, strict=True) if _NUMERIC.match(k)]


def check_shape(panel: dict[str, Any], result: Result) -> None:
    """Raise AssertionError (or ShapeError) when the panel could not draw `result`."""
    table = to_table(result)
    assert table.rows, "no rows"
    kind = panel["type"]
    numbers = numeric_columns(table, result)
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    if kind in ("timeseries", "heatmap"):
        wide = long_to_wide(table)  # raises ShapeError: no time column, unsorted, no numbers
        values = [v for s in wide.series for v in s.values if v is not None]
        assert values, "every value is NULL"
    elif kind == "stat":
        assert numbers, f"a stat needs a numeric column: {result.columns} {result.types}"
        assert any(table.rows[-1][table.columns.index(c)] is not None for c in numbers), (
            "the stat's number is NULL"
        )
    elif kind == "barchart":
        x_field = panel["options"]["xField"]
        assert x_field in table.columns, f"x field {x_field} missing from {table.columns}"
        assert all(isinstance(v, str) for v in table.column(x_field))
        assert [c for c in numbers if c != x_field], "a bar chart needs numeric columns"
    elif kind == "table":
        for transformation in panel.get("transformations", []):
            if transformation["id"] == "groupingToMatrix":
                options = transformation["options"]
                for field in ("rowField", "columnField", "valueField"):
                    assert options[field] in table.columns, f"{options[field]} missing"
                assert options["valueField"] in numbers
    else:
        raise AssertionError(f"no shape rule for a {kind} panel")
    if unit == "percentunit":
        for column in numbers:
            values = [v for v in table.column(column) if v is not None]
            assert all(-1e-9 <= v <= 1 + 1e-9 for v in values), f"{column} outside 0-1: {values}"


# --- the test --------------------------------------------------------------------------------


def run_dashboard(
    path: Path, warehouse: FilledWarehouse, now: datetime
) -> tuple[list[PanelQuery], dict[str, Result | str], list[str]]:
    dashboard = json.loads(path.read_text())
    time_range = time_range_of(dashboard, now)

    def options_of(sql: str) -> list[str] | str:
        result = warehouse.query_many({"v": sql})["v"]
        return result if isinstance(result, str) else [str(row[0]) for row in result.rows]

    variables, problems = default_variables(dashboard, time_range, options_of)
    queries = panel_queries(path.name, dashboard, time_range, variables)
    results = warehouse.query_many({q.key: q.sql for q in queries})
    return queries, results, problems


CLICKHOUSE_DASHBOARDS = [
    p for p in dashboard_files() if has_clickhouse_targets(json.loads(p.read_text()))
]


def test_there_are_clickhouse_dashboards() -> None:
    assert {p.name for p in CLICKHOUSE_DASHBOARDS} >= {
        "adoption-overview.json",
    }


@pytest.mark.parametrize("path", CLICKHOUSE_DASHBOARDS, ids=[p.name for p in CLICKHOUSE_DASHBOARDS])
def test_every_clickhouse_panel_returns_what_its_panel_draws(
    path: Path, filled_warehouse: FilledWarehouse
) -> None:
    queries, results, problems = run_dashboard(path, filled_warehouse, filled_warehouse.end)
    assert queries
    for query in queries:
        result = results[query.key]
        if isinstance(result, str):
            problems.append(f"{query.key}: {result.splitlines()[0]}\n  SQL: {query.sql}")
            continue
        try:
            check_shape(query.panel, result)
        except (AssertionError, ShapeError) as exc:
            problems.append(f"{query.key} ({query.panel['type']}): {exc}\n  SQL: {query.sql}")
    assert not problems, "\n".join(problems)
