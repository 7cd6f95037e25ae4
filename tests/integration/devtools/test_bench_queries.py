"""`uptake bench --queries` times every ClickHouse panel query of every shipped dashboard.

The bench fills a small warehouse (200k events, 20 teams) with ClickHouse's generators through
the shipped migrations and views, runs each panel query, prints one JSON line and drops its
database. The queries it timed are compared with the committed dashboards' ClickHouse targets
(read from the JSON files, not through the code the bench uses), so a panel added later that
the bench does not run fails here. No timing is asserted: the figures are docs/benchmarks.md's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.dashboards.board import CLICKHOUSE_UID
from tests.conftest import Pipeline
from tests.support.dashboards import dashboard_files, panels_of

EVENTS = 200_000


def committed_targets() -> set[tuple[str, int, str]]:
    """(dashboard file, panel id, refId) of every ClickHouse target in dashboards/."""
    found = set()
    for path in dashboard_files():
        for panel in panels_of(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                if target["datasource"]["uid"] == CLICKHOUSE_UID:
                    found.add((path.name, panel["id"], target["refId"]))
    return found


def timed_targets(result: dict[str, Any]) -> set[tuple[str, int, str]]:
    """The same triples from the bench's timed queries (one or more variants each)."""
    return {(q["dashboard"], q["panel_id"], q["ref_id"]) for q in result["queries"].values()}


def missing(result: dict[str, Any]) -> set[tuple[str, int, str]]:
    return committed_targets() - timed_targets(result)


@pytest.mark.integration
def test_bench_queries_times_every_panel_query_and_leaves_nothing_behind(
    pipeline_env: Pipeline,
) -> None:
    done = pipeline_env.run(
        "bench",
        "--queries",
        "--events",
        str(EVENTS),
        "--runs",
        "1",
        "--teams",
        "20",
        timeout=1800,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["events"] == EVENTS
    assert result["tables"]["events"]["rows"] == EVENTS
    # The views filled as the worker's inserts fill them.
    for table in ("usage_day", "usage_api_day", "deployments", "model_trainings", "incidents"):
        assert result["tables"][table]["rows"] > 0, table
    assert len(committed_targets()) >= 50
    assert missing(result) == set()
    assert timed_targets(result) <= committed_targets()
    for key, timing in result["queries"].items():
        assert 0 < timing["p50_ms"] <= timing["p95_ms"], key
    assert result["slowest"]["query"] in result["queries"]
    assert result["panel_queries"] == len(result["queries"])
    assert "p95 ms" in done.stderr  # the table, slowest first

    # Negative control: a panel the bench did not run is caught.
    dropped = next(iter(result["queries"].values()))
    target = (dropped["dashboard"], dropped["panel_id"], dropped["ref_id"])
    partial = {
        **result,
        "queries": {
            k: q
            for k, q in result["queries"].items()
            if (q["dashboard"], q["panel_id"], q["ref_id"]) != target
        },
    }
    assert missing(partial) == {target}

    # The run's database is gone from the bench's own warehouse.
    url = f"chdb://{pipeline_env.home / 'bench'}?database=system"
    databases = (
        Pipeline({**pipeline_env.env, "UPTAKE_CLICKHOUSE_URL": url}, pipeline_env.home)
        .run("query", "--format", "tsv", "SELECT name FROM system.databases ORDER BY name")
        .stdout.split()
    )
    assert not [name for name in databases if name.startswith("bench_")]
