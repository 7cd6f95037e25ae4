"""The annotation queries of the committed dashboards, expanded as Grafana expands them and run
on the real engine against a warehouse filled by hand (tests/support/views/direct.py, no
Kafka), return exactly the markers the case below calls for.

- capability_catalog: `gw` (declared; use = api_call of API `orders`). `deploy-pipeline` is
  only seen in events (undeclared): no launch marker.
- a calls orders on 11-02 (gw's first use by any team: its launch), b on 11-05;
  a calls `internal` on 10-30 (not use of gw: the launch stays 11-02).
- deployments: a to production on 12-01 (rolled back) and to staging on 11-20 (no marker);
  b to production on 11-10.
- milestones (the worker writes them; inserted here): a first_use 11-02, activated 11-06, a
  retracted churn 11-20 (hidden); b first_use 11-05.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from pipeline.dashboards.grafana_sql import TimeRange, Variable, expand
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.dashboards import DASHBOARDS
from tests.support.views.direct import insert_events

NOVEMBER = TimeRange(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))


def _event(team: str, at: datetime, event_type: str, capability: str, data: dict[str, Any]):
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "team": team,
        "service": f"{team}-api",
        "capability": capability,
        "data": data,
    }


def _call(team: str, day: date, api: str) -> dict[str, Any]:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    data = {"api": api, "operation": "GET /x", "status_code": 200, "latency_ms": 1}
    return _event(team, at, "api_call", "gw", data)


def _deploy(team: str, at: datetime, environment: str, status: str) -> dict[str, Any]:
    commit = (at - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    data = {
        "deployment_id": f"{team}-{at:%m%d}",
        "service": f"{team}-api",
        "environment": environment,
        "status": status,
        "commits": [{"sha": "a" * 40, "committed_at": commit}],
    }
    return _event(team, at, "deploy", "deploy-pipeline", data)


EVENTS = [
    _call("a", date(2026, 10, 30), "internal"),
    _call("a", date(2026, 11, 2), "orders"),
    _call("b", date(2026, 11, 5), "orders"),
    _deploy("a", datetime(2026, 12, 1, 9, tzinfo=UTC), "production", "rolled_back"),
    _deploy("a", datetime(2026, 11, 20, 9, tzinfo=UTC), "staging", "succeeded"),
    _deploy("b", datetime(2026, 11, 10, 9, tzinfo=UTC), "production", "succeeded"),
]
MILESTONES = [  # team, capability, milestone, occurred_at, episode, retracted
    ("a", "gw", "first_use", date(2026, 11, 2), 1, 0),
    ("a", "gw", "activated", date(2026, 11, 6), 1, 0),
    ("a", "gw", "churned", date(2026, 11, 20), 1, 1),
    ("b", "gw", "first_use", date(2026, 11, 5), 1, 0),
]


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    # The process's one embedded folder (chdb opens one per process), a fresh database.
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, EVENTS)
        wh.insert_columns(
            "capability_catalog",
            [["gw"], [["api_call"]], [["orders"]], [["a", "b"]], [1]],
            ["name", "event_types", "apis", "target_teams", "declared"],
        )
        wh.insert_columns(
            "adoption_milestones",
            [list(column) for column in zip(*MILESTONES, strict=True)],
            ["team", "capability", "milestone", "occurred_at", "episode", "retracted"],
        )
        yield wh


def _annotations(filename: str) -> dict[str, str]:
    dashboard = json.loads((DASHBOARDS / filename).read_text())
    return {a["name"]: a["target"]["rawSql"] for a in dashboard["annotations"]["list"]}


def _markers(
    wh: Warehouse, sql: str, team: str = "a", time_range: TimeRange = NOVEMBER
) -> list[tuple[str, str, list[str]]]:
    expanded = expand(
        sql,
        time_range=time_range,
        interval=timedelta(days=1),
        variables={"team": Variable("team", team)},
    )
    names, rows = wh.query(expanded)
    assert names == ["time", "text", "tags"] or not rows  # no columns without rows
    return [(_iso(time), text, list(tags)) for time, text, tags in rows]


def _iso(value: Any) -> str:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def test_capability_launches_are_first_uses_of_declared_capabilities(
    warehouse: Warehouse,
) -> None:
    for filename in ("adoption-overview.json", "platform-impact.json", "team-drilldown.json"):
        sql = _annotations(filename)["Capability launches"]
        assert _markers(warehouse, sql) == [("2026-11-02 12:00", "gw launched", ["launch", "gw"])]
    # Outside the time range: no marker.
    later = TimeRange(datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    assert _markers(warehouse, sql, time_range=later) == []


def test_team_milestones_are_the_chosen_teams_current_ones(warehouse: Warehouse) -> None:
    sql = _annotations("team-drilldown.json")["Team milestones"]
    assert _markers(warehouse, sql, team="a") == [
        ("2026-11-02 00:00", "gw: first_use", ["milestone", "first_use", "gw"]),
        ("2026-11-06 00:00", "gw: activated", ["milestone", "activated", "gw"]),
    ]
    assert _markers(warehouse, sql, team="b") == [
        ("2026-11-05 00:00", "gw: first_use", ["milestone", "first_use", "gw"]),
    ]
    assert _markers(warehouse, sql, team="nobody") == []


def test_deploy_markers_are_production_deployments(warehouse: Warehouse) -> None:
    team_sql = _annotations("team-drilldown.json")["Production deploys"]
    assert _markers(warehouse, team_sql, team="a") == [
        (
            "2026-12-01 09:00",
            "a-api deployed to production: rolled_back",
            ["deploy", "rolled_back", "a"],
        ),
    ]
    every_sql = _annotations("platform-impact.json")["Production deploys"]
    assert [m[1] for m in _markers(warehouse, every_sql)] == [
        "b-api deployed to production: succeeded",
        "a-api deployed to production: rolled_back",
    ]
