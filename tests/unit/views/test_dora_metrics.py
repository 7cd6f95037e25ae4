"""dora_metrics against a small case computed by hand, one assertion per DORA key.

Team alpha, week of Monday 2026-11-02 (times UTC):
- D1 Mon 10:00 succeeded, commits 1 h and 3 h before;
- D2 Tue 10:00 rolled_back, started 09:30, commit 5 h before: change failure, recovered in 30 min;
- D3 Wed 10:00 succeeded, commit 2 h before; incident I1 (opened 11:00, resolved 14:00) names it:
  change failure, recovered 4 h after the deployment; I1 restored in 3 h;
- D4 Thu 10:00 failed: never live, a failed attempt and no deployment (its commit not counted);
- D5 Thu 12:00 succeeded in staging: not production;
- I2 Fri 08:00-08:30, linked to nothing: restored in 30 min;
- D6 Fri 10:00 succeeded, commit 4 h before; incident I3 names it and is still open: a change
  failure not yet recovered.
Team beta: one succeeded production deploy without commits on Tue.
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

WEEK = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _at(day: int, hour: float) -> datetime:
    return WEEK + timedelta(days=day, hours=hour)


def _deploy(
    team: str,
    name: str,
    at: datetime,
    status: str,
    commits_h: tuple[float, ...] = (),
    environment: str = "production",
    started: datetime | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "deployment_id": name,
        "service": f"{team}-api",
        "environment": environment,
        "status": status,
        "commits": [
            {"sha": "a" * 40, "committed_at": _iso(at - timedelta(hours=h))} for h in commits_h
        ],
    }
    if started is not None:
        data["started_at"] = _iso(started)
    return _envelope(team, "deploy", at, data)


def _incident(
    team: str, name: str, opened: datetime, resolved: datetime | None, caused_by: str = ""
) -> list[dict[str, Any]]:
    body = {
        "incident_id": name,
        "service": f"{team}-api",
        "severity": "sev2",
        "opened_at": _iso(opened),
        "caused_by_deployment": caused_by or None,
    }
    opening = {**body, "status": "opened", "resolved_at": None}
    events = [_envelope(team, "incident", opened, opening)]
    if resolved is not None:
        done = {**body, "status": "resolved", "resolved_at": _iso(resolved)}
        events.append(_envelope(team, "incident", resolved, done))
    return events


def _envelope(team: str, kind: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    capability = "deploy-pipeline" if kind == "deploy" else "incident-response"
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": kind,
        "occurred_at": _iso(at),
        "team": team,
        "service": f"{team}-api",
        "capability": capability,
        "data": data,
    }


EVENTS = [
    _deploy("alpha", "D1", _at(0, 10), "succeeded", (1, 3)),
    _deploy("alpha", "D2", _at(1, 10), "rolled_back", (5,), started=_at(1, 9.5)),
    _deploy("alpha", "D3", _at(2, 10), "succeeded", (2,)),
    *_incident("alpha", "I1", _at(2, 11), _at(2, 14), caused_by="D3"),
    _deploy("alpha", "D4", _at(3, 10), "failed", (1,)),
    _deploy("alpha", "D5", _at(3, 12), "succeeded", (9,), environment="staging"),
    *_incident("alpha", "I2", _at(4, 8), _at(4, 8.5)),
    _deploy("alpha", "D6", _at(4, 10), "succeeded", (4,)),
    *_incident("alpha", "I3", _at(4, 11), None, caused_by="D6"),
    _deploy("beta", "B1", _at(1, 12), "succeeded"),
]


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, EVENTS)
        yield wh


def _rows(wh: Warehouse, sql: str) -> list[dict[str, Any]]:
    names, rows = wh.query(sql)
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_dora_metrics_per_key_by_hand(warehouse: Warehouse) -> None:
    rows = _rows(warehouse, "SELECT * FROM dora_metrics WHERE period = 'week' ORDER BY team")
    assert [r["team"] for r in rows] == ["alpha", "beta"]
    alpha, beta = rows
    assert str(alpha["period_start"]) == "2026-11-02" and alpha["days"] == 7
    # Deployment frequency: D1, D2, D3, D6 went live; D4 failed, D5 staging.
    assert alpha["deployments"] == 4
    assert alpha["deployment_frequency_per_week"] == 4.0
    assert alpha["deploy_days"] == 4
    assert alpha["failed_attempts"] == 1
    # Lead time: commits of deployments, 1, 3, 5, 2, 4 hours: median 3 h.
    assert alpha["commits"] == 5
    assert alpha["lead_time_median_s"] == 3 * 3600
    # Change failures: D2 rolled back, D3 and D6 named by incidents.
    assert alpha["change_failures"] == 3
    assert alpha["change_failure_rate"] == 0.75
    # Failed deployment recovery: D2 30 min, D3 4 h, D6 not recovered: median 2 h 15 min.
    assert alpha["recoveries"] == 2
    assert alpha["recovery_time_median_s"] == (1800 + 4 * 3600) / 2
    # Time to restore (opened -> resolved): I1 3 h, I2 30 min; I3 still open.
    assert alpha["incidents_restored"] == 2
    assert alpha["time_to_restore_median_s"] == (1800 + 3 * 3600) / 2
    # Levels per the 2024 report.
    assert alpha["deployment_frequency_level"] == "high"
    assert alpha["lead_time_level"] == "elite"
    assert alpha["change_failure_level"] == "low"
    assert alpha["recovery_time_level"] == "high"
    assert beta["deployments"] == 1 and beta["change_failure_rate"] == 0.0
    assert beta["lead_time_median_s"] is None and beta["lead_time_level"] == ""
    assert beta["change_failure_level"] == "elite"


def test_month_grain_and_org_rollup(warehouse: Warehouse) -> None:
    month = _rows(warehouse, "SELECT * FROM dora_metrics WHERE period = 'month' AND team = 'alpha'")
    assert len(month) == 1 and month[0]["days"] == 30
    assert month[0]["deployment_frequency_per_week"] == pytest.approx(4 * 7 / 30)
    assert month[0]["deployment_frequency_level"] == "medium"
    org = _rows(warehouse, "SELECT * FROM dora_metrics_org WHERE period = 'week'")
    assert len(org) == 1
    assert org[0]["teams"] == 2 and org[0]["deployments"] == 5
    assert org[0]["change_failure_rate"] == 3 / 5


def test_levels_follow_the_report_year(warehouse: Warehouse) -> None:
    sql = (
        "SELECT report_year, level FROM dora_metric_levels "
        "WHERE team = 'alpha' AND period = 'week' AND key = '{}' ORDER BY report_year"
    )
    # 75 % change failures: low in both reports.
    assert _rows(warehouse, sql.format("change_failure_rate")) == [
        {"report_year": 2023, "level": "low"},
        {"report_year": 2024, "level": "low"},
    ]
    beta = _rows(
        warehouse,
        "SELECT report_year, level FROM dora_metric_levels WHERE team = 'beta' "
        "AND period = 'week' AND key = 'change_failure_rate' ORDER BY report_year",
    )
    assert [r["level"] for r in beta] == ["elite", "elite"]
    # dora_metrics' own columns are the 2024 levels.
    both = _rows(
        warehouse,
        "SELECT l.level AS l, m.recovery_time_level AS m FROM dora_metric_levels AS l "
        "INNER JOIN dora_metrics AS m ON m.team = l.team AND m.period = l.period "
        "AND m.period_start = l.period_start "
        "WHERE l.report_year = 2024 AND l.key = 'recovery_time'",
    )
    assert both and all(r["l"] == r["m"] for r in both)


# Team gamma, week of Monday 2026-11-09: rollbacks that an incident also names.
# - G1 Mon 10:00 rolled_back (started 09:00, commit 2 h before); incident J1 names it, opened
#   10:30, resolved 12:00: one change failure (not two). Its recovery time is the incident's:
#   deployed_at -> J1 resolved = 2 h, not the rollback's started_at -> deployed_at (1 h), since
#   the incident says the service was impaired until it was resolved;
# - G2 Tue 10:00 succeeded, commit 4 h before;
# - G3 Wed 10:00 rolled_back (started 09:30); incident J2 names it and is still open: one change
#   failure, not recovered yet (the rollback alone does not end it while the incident is open).
ROLLBACK_WEEK = WEEK + timedelta(days=7)
ROLLBACK_EVENTS = [
    _deploy(
        "gamma",
        "G1",
        ROLLBACK_WEEK + timedelta(hours=10),
        "rolled_back",
        (2,),
        started=ROLLBACK_WEEK + timedelta(hours=9),
    ),
    *_incident(
        "gamma",
        "J1",
        ROLLBACK_WEEK + timedelta(hours=10.5),
        ROLLBACK_WEEK + timedelta(hours=12),
        caused_by="G1",
    ),
    _deploy("gamma", "G2", ROLLBACK_WEEK + timedelta(days=1, hours=10), "succeeded", (4,)),
    _deploy(
        "gamma",
        "G3",
        ROLLBACK_WEEK + timedelta(days=2, hours=10),
        "rolled_back",
        started=ROLLBACK_WEEK + timedelta(days=2, hours=9.5),
    ),
    *_incident("gamma", "J2", ROLLBACK_WEEK + timedelta(days=2, hours=10.25), None, caused_by="G3"),
]


def test_a_rollback_an_incident_names_is_one_change_failure(inprocess_warehouse_url: str) -> None:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, ROLLBACK_EVENTS)
        deployments = _rows(
            wh,
            "SELECT deployment_id, deployed, linked_incidents, change_failure, recovery_time_s "
            "FROM dora_deployments WHERE team = 'gamma' ORDER BY deployment_id",
        )
        assert [tuple(d.values()) for d in deployments] == [
            ("G1", 1, 1, 1, 2 * 3600.0),
            ("G2", 1, 0, 0, None),
            ("G3", 1, 1, 1, None),
        ]
        (gamma,) = _rows(wh, "SELECT * FROM dora_metrics WHERE period = 'week' AND team = 'gamma'")
        assert str(gamma["period_start"]) == "2026-11-09"
        assert gamma["deployments"] == 3  # rolled back deployments went live
        assert gamma["change_failures"] == 2  # G1 once, though rolled back and named by J1
        assert gamma["change_failure_rate"] == pytest.approx(2 / 3)
        assert gamma["recoveries"] == 1
        assert gamma["recovery_time_median_s"] == 2 * 3600  # G1 by J1's resolution
        assert gamma["commits"] == 2 and gamma["lead_time_median_s"] == 3 * 3600
        # Time to restore counts J1 (1 h 30 min); J2 is open.
        assert gamma["incidents_restored"] == 1
        assert gamma["time_to_restore_median_s"] == 5400
