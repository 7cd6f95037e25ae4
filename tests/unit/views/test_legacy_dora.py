"""dora_weekly, dora_changes and the naive impact views (0004) on the standard DORA
definitions since 0011: a case computed by hand, without Kafka.

Team catalog: group `product` with leaf teams a, late, z and n from 2026-10-01. Capability
`gw` (api_call) is meant for a, late and z; n is no target of it. Times UTC; the data run from
Monday 2026-10-05 to the week of 2026-11-09.
- a: A1 succeeded Mon 10-05 10:00; A2 failed Tue 10-06 (an attempt, no deployment); A3
  succeeded Mon 10-12 10:00, named by incident I1 (opened 11:00, resolved 12:00): a change
  failure; first use of gw Mon 10-19 12:00; calls gw again Mon 11-02; no deploy after adopting.
- late: its first data is L1 succeeded Mon 11-02 10:00 (a commit 2 h before); first use of gw
  Mon 11-09 12:00; L2 succeeded Tue 11-10 10:00 (a commit made at the deploy: lead time 0).
- z: a target that never uses gw; Z1 succeeded Wed 10-07.
- n: no target; N1 succeeded Wed 10-07, N2 succeeded Wed 10-14; never uses gw.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.views.direct import insert_events


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _at(month: int, day: int, hour: float) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC) + timedelta(hours=hour)


def _envelope(
    team: str, kind: str, at: datetime, capability: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": kind,
        "occurred_at": _iso(at),
        "team": team,
        "service": f"{team}-api",
        "capability": capability,
        "data": data,
    }


def _deploy(
    team: str, name: str, at: datetime, status: str, commits_h: tuple[float, ...] = ()
) -> dict[str, Any]:
    return _envelope(
        team,
        "deploy",
        at,
        "deploy-pipeline",
        {
            "deployment_id": name,
            "service": f"{team}-api",
            "environment": "production",
            "status": status,
            "commits": [
                {"sha": "a" * 40, "committed_at": _iso(at - timedelta(hours=h))} for h in commits_h
            ],
        },
    )


def _call(team: str, at: datetime) -> dict[str, Any]:
    data = {"api": "orders", "operation": "GET /x", "status_code": 200, "latency_ms": 1}
    return _envelope(team, "api_call", at, "gw", data)


def _incident(
    team: str, name: str, opened: datetime, resolved: datetime, caused_by: str
) -> list[dict[str, Any]]:
    body = {
        "incident_id": name,
        "service": f"{team}-api",
        "severity": "sev2",
        "opened_at": _iso(opened),
        "caused_by_deployment": caused_by,
    }
    return [
        _envelope(team, "incident", opened, "incident-response", {**body, "status": "opened"}),
        _envelope(
            team,
            "incident",
            resolved,
            "incident-response",
            {**body, "status": "resolved", "resolved_at": _iso(resolved)},
        ),
    ]


EVENTS = [
    _deploy("a", "A1", _at(10, 5, 10), "succeeded", (1,)),
    _deploy("a", "A2", _at(10, 6, 10), "failed", (1,)),
    _deploy("a", "A3", _at(10, 12, 10), "succeeded", (1,)),
    *_incident("a", "I1", _at(10, 12, 11), _at(10, 12, 12), caused_by="A3"),
    _call("a", _at(10, 19, 12)),
    _call("a", _at(11, 2, 12)),
    _deploy("late", "L1", _at(11, 2, 10), "succeeded", (2,)),
    _call("late", _at(11, 9, 12)),
    _deploy("late", "L2", _at(11, 10, 10), "succeeded", (0,)),
    _deploy("z", "Z1", _at(10, 7, 10), "succeeded"),
    _deploy("n", "N1", _at(10, 7, 10), "succeeded"),
    _deploy("n", "N2", _at(10, 14, 10), "succeeded"),
]


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, EVENTS)
        start = datetime(2026, 10, 1, tzinfo=UTC)
        teams = [("team", "product", "product", "", start)] + [
            ("team", t, t, "product", start) for t in ("a", "late", "z", "n")
        ]
        wh.insert_columns(
            "team_catalog",
            [list(column) for column in zip(*teams, strict=True)],
            ["kind", "name", "team", "parent", "valid_from"],
        )
        wh.insert_columns(
            "capability_catalog",
            [["gw"], [["api_call"]], [[]], [["a", "late", "z"]], [1]],
            ["name", "event_types", "apis", "target_teams", "declared"],
        )
        yield wh


def _rows(wh: Warehouse, sql: str) -> list[dict[str, Any]]:
    names, rows = wh.query(sql)
    return [dict(zip(names, row, strict=True)) for row in rows]


def _one(wh: Warehouse, sql: str) -> dict[str, Any]:
    rows = _rows(wh, sql)
    assert len(rows) == 1, rows
    return rows[0]


def test_a_failed_deploy_is_no_deployment_in_dora_weekly(warehouse: Warehouse) -> None:
    row = _one(warehouse, "SELECT * FROM dora_weekly WHERE team = 'a' AND week = '2026-10-05'")
    assert (row["deployments"], row["deploy_days"], row["failed_deployments"]) == (1, 1, 0)
    assert row["change_failure_rate"] == 0
    assert row["commits"] == 1  # the failed attempt's commit is not shipped


def test_an_incident_linked_deploy_is_a_change_failure_in_dora_weekly(
    warehouse: Warehouse,
) -> None:
    row = _one(warehouse, "SELECT * FROM dora_weekly WHERE team = 'a' AND week = '2026-10-12'")
    assert (row["deployments"], row["failed_deployments"]) == (1, 1)
    assert row["change_failure_rate"] == 1.0
    assert row["incidents_restored"] == 1 and row["time_to_restore_median_s"] == 3600


def test_dora_weekly_is_dora_metrics_by_week(warehouse: Warehouse) -> None:
    weekly = _rows(
        warehouse,
        "SELECT team, week, deployments, failed_deployments, change_failure_rate, "
        "lead_time_median_s FROM dora_weekly ORDER BY team, week",
    )
    metrics = _rows(
        warehouse,
        "SELECT team, period_start AS week, deployments, change_failures AS failed_deployments, "
        "change_failure_rate, lead_time_median_s FROM dora_metrics WHERE period = 'week' "
        "ORDER BY team, week",
    )
    assert weekly == metrics


def test_dora_changes_holds_deployments_and_change_failures(warehouse: Warehouse) -> None:
    rows = _rows(
        warehouse,
        "SELECT toString(toDate(at)) AS day, failed FROM dora_changes "
        "WHERE team = 'a' AND kind = 'deploy' ORDER BY at",
    )
    assert [(r["day"], bool(r["failed"])) for r in rows] == [
        ("2026-10-05", False),
        ("2026-10-12", True),
    ]


def test_a_late_team_gets_its_own_weeks_before(warehouse: Warehouse) -> None:
    row = _one(
        warehouse,
        "SELECT * FROM impact_before_after WHERE team = 'late' AND capability = 'gw'",
    )
    # From Monday 11-02 (its first week with data) to 11-09 12:00; to the end of 11-15.
    assert row["weeks_before"] == pytest.approx(7.5 / 7)
    assert row["weeks_after"] == pytest.approx(6.5 / 7)
    assert row["deploys_per_week_before"] == pytest.approx(7 / 7.5)


def test_a_team_without_deploys_after_adopting_stays_in_impact_summary(
    warehouse: Warehouse,
) -> None:
    s = _one(warehouse, "SELECT * FROM impact_summary WHERE capability = 'gw'")
    assert s["teams"] == 2  # a (no deploy after adopting) and late
    assert (s["deployments_before"], s["deployments_after"]) == (3, 1)
    # a: 14.5 days before, 20.5 after; late: 7.5 before, 6.5 after.
    assert s["weeks_before"] == pytest.approx(22 / 7)
    assert s["weeks_after"] == pytest.approx(27 / 7)
    assert s["deployment_frequency_ratio"] == pytest.approx((1 / 27) / (3 / 22))
    # Pooled: A3 of a's two deployments before failed, late's were fine.
    assert s["change_failure_rate_before"] == pytest.approx(1 / 3)


def test_impact_summary_reports_the_zero_ratios_its_geometric_mean_leaves_out(
    warehouse: Warehouse,
) -> None:
    s = _one(warehouse, "SELECT * FROM impact_summary WHERE capability = 'gw'")
    # late: lead time 2 h before, 0 after: ratio 0; a has no commit after adopting: no ratio.
    assert (s["lead_time_ratios"], s["lead_time_zero_ratios"]) == (1, 1)
    assert s["lead_time_ratio_geomean"] is None


def test_a_non_target_team_is_no_non_adopter(warehouse: Warehouse) -> None:
    rows = _rows(
        warehouse,
        "SELECT toString(week) AS week, cohort, teams, deployments FROM impact_adopters_weekly "
        "WHERE capability = 'gw' ORDER BY week, cohort",
    )
    got = {(r["week"], r["cohort"]): (r["teams"], r["deployments"]) for r in rows}
    assert got["2026-10-05", "non_adopters"] == (2, 2)  # a and z; n is no target of gw
    assert got["2026-10-12", "non_adopters"] == (1, 1)  # a only
    assert ("2026-10-19", "adopting") not in got  # a had no deployment that week
    assert got["2026-11-09", "adopting"] == (1, 1)  # late
    assert got["2026-11-02", "non_adopters"] == (1, 1)  # late, before adopting
