"""The older adoption views (0004, 0005) follow the one definition of use and the one
denominator since 0010: a case computed by hand, without Kafka.

Team catalog: group `product` with leaf teams a and b from 2026-11-01, and c from 2026-11-10.
Capability `gw`: api_call of the API `orders` only, meant for a, b and c.
- a calls orders on 11-02 (its only use), and `internal` on 12-01 (not use of gw);
- b calls `internal` on 11-03 (not use of gw), then orders on 12-05;
- c calls orders on 11-12;
- `unowned` calls orders on 11-04 (not a target team).
The newest day with data is 12-05 (a Saturday; its week starts on 11-30).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from pipeline.dashboards import adoption, grafana_sql
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.views.direct import insert_events


def _call(team: str, day: date, api: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "api_call",
        "occurred_at": f"{day.isoformat()}T12:00:00.000Z",
        "team": team,
        "service": f"{team}-api",
        "capability": "gw",
        "data": {"api": api, "operation": "GET /x", "status_code": 200, "latency_ms": 1},
    }


def _deploy(team: str, day: date) -> dict[str, Any]:
    name = f"{team}-{day.isoformat()}"
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "deploy",
        "occurred_at": f"{day.isoformat()}T10:00:00.000Z",
        "team": team,
        "service": f"{team}-api",
        "capability": "deploy-pipeline",
        "data": {
            "deployment_id": name,
            "service": f"{team}-api",
            "environment": "production",
            "status": "succeeded",
            "commits": [],
        },
    }


EVENTS = [
    _deploy("a", date(2026, 11, 5)),
    _deploy("c", date(2026, 11, 5)),  # before c is in the team catalog: no target of gw yet
    _deploy("c", date(2026, 11, 11)),
    _call("a", date(2026, 11, 2), "orders"),
    _call("b", date(2026, 11, 3), "internal"),
    _call("unowned", date(2026, 11, 4), "orders"),
    _call("c", date(2026, 11, 12), "orders"),
    _call("a", date(2026, 12, 1), "internal"),
    _call("b", date(2026, 12, 5), "orders"),
]

# The lifecycle the worker writes (it applies the catalog's rule already): first use, last use.
LIFECYCLE = [
    ("a", date(2026, 11, 2), date(2026, 11, 2)),
    ("b", date(2026, 12, 5), date(2026, 12, 5)),
    ("c", date(2026, 11, 12), date(2026, 11, 12)),
    ("unowned", date(2026, 11, 4), date(2026, 11, 4)),
]


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, EVENTS)
        start = datetime(2026, 11, 1, tzinfo=UTC)
        teams = [
            ("team", "product", "product", "", start),
            ("team", "a", "a", "product", start),
            ("team", "b", "b", "product", start),
            ("team", "c", "c", "product", datetime(2026, 11, 10, tzinfo=UTC)),
        ]
        wh.insert_columns(
            "team_catalog",
            [list(column) for column in zip(*teams, strict=True)],
            ["kind", "name", "team", "parent", "valid_from"],
        )
        wh.insert_columns(
            "capability_catalog",
            [["gw"], [["api_call"]], [["orders"]], [["a", "b", "c"]], [1]],
            ["name", "event_types", "apis", "target_teams", "declared"],
        )
        rows = [
            (team, "gw", "first_use", first, first, last, 1, 1, datetime(2026, 12, 6, tzinfo=UTC))
            for team, first, last in LIFECYCLE
        ]
        wh.insert_columns(
            "adoption_lifecycle",
            [list(column) for column in zip(*rows, strict=True)],
            [
                "team",
                "capability",
                "state",
                "state_since",
                "first_use",
                "last_active",
                "episode",
                "active_days",
                "updated_at",
            ],
        )
        yield wh


def _row(wh: Warehouse, sql: str, **params: Any) -> dict[str, Any]:
    names, rows = wh.query(sql, params)
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def _daily(wh: Warehouse, day: date) -> dict[str, Any]:
    return _row(
        wh, "SELECT * FROM adoption_daily WHERE capability = 'gw' AND day = {d:Date}", d=day
    )


def _weekly(wh: Warehouse, week: date) -> dict[str, Any]:
    return _row(
        wh, "SELECT * FROM adoption_weekly WHERE capability = 'gw' AND week = {w:Date}", w=week
    )


def test_a_call_of_another_api_is_not_use_in_adoption_daily(warehouse: Warehouse) -> None:
    # b's call of `internal` on 11-03 and a's on 12-01: no team used gw those days.
    for day in (date(2026, 11, 3), date(2026, 12, 1)):
        row = _daily(warehouse, day)
        assert (row["active_teams"], row["active_target_teams"], row["new_adopters"]) == (0, 0, 0)
        assert row["active_rate"] == 0
    assert _daily(warehouse, date(2026, 12, 5))["new_adopters"] == 1  # b's first use


def test_a_call_of_another_api_is_not_use_in_first_use_and_breadth(warehouse: Warehouse) -> None:
    _, rows = warehouse.query(
        "SELECT team, first_use_day, is_target FROM adoption_first_use WHERE capability = 'gw' "
        "ORDER BY team"
    )
    assert [(t, str(d), int(x)) for t, d, x in rows] == [
        ("a", "2026-11-02", 1),
        ("b", "2026-12-05", 1),
        ("c", "2026-11-12", 1),
        ("unowned", "2026-11-04", 0),
    ]
    _, rows = warehouse.query(
        "SELECT week, events, active_days FROM team_depth_weekly WHERE team = 'a' "
        "AND capability = 'gw' ORDER BY week"
    )
    assert [(str(w), e, d) for w, e, d in rows] == [("2026-11-02", 1, 1)]
    _, rows = warehouse.query("SELECT week FROM team_breadth_weekly WHERE team = 'b' ORDER BY week")
    assert [str(w) for (w,) in rows] == ["2026-11-30"]


@pytest.mark.parametrize(
    ("day", "targets", "adopted", "active"),
    [
        (date(2026, 11, 2), 2, 1, 1),  # c does not exist yet: not in the denominator
        (date(2026, 11, 9), 2, 1, 0),
        (date(2026, 11, 10), 3, 1, 0),  # c exists from 11-10
        (date(2026, 11, 12), 3, 2, 1),
        (date(2026, 12, 5), 3, 3, 1),
    ],
)
def test_adoption_daily_divides_by_the_target_teams_of_each_day(
    warehouse: Warehouse, day: date, targets: int, adopted: int, active: int
) -> None:
    row = _daily(warehouse, day)
    assert row["target_teams"] == targets
    assert row["adopted_target_teams"] == adopted
    assert row["active_target_teams"] == active
    assert row["adoption_rate"] == pytest.approx(adopted / targets)
    assert row["active_rate"] == pytest.approx(active / targets)


@pytest.mark.parametrize(
    ("week", "targets", "active_teams", "active", "adopted_teams", "adopted"),
    [
        # b's call of `internal` does not count; c does not exist on 11-08: two targets
        (date(2026, 11, 2), 2, 2, 1, 2, 1),
        (date(2026, 11, 9), 3, 1, 1, 3, 2),
        (date(2026, 11, 16), 3, 0, 0, 3, 2),  # churn: the active rate falls, adoption does not
        (date(2026, 11, 30), 3, 1, 1, 4, 3),  # a's call of `internal` on 12-01 does not count
    ],
)
def test_adoption_weekly_follows_use_and_the_targets_at_the_end_of_each_week(
    warehouse: Warehouse,
    week: date,
    targets: int,
    active_teams: int,
    active: int,
    adopted_teams: int,
    adopted: int,
) -> None:
    row = _weekly(warehouse, week)
    assert row["target_teams"] == targets
    assert row["active_teams"] == active_teams  # unowned counts here (any team)
    assert row["active_target_teams"] == active
    assert row["adopted_teams"] == adopted_teams
    assert row["adopted_target_teams"] == adopted
    assert row["active_rate"] == pytest.approx(active / targets)
    assert row["adoption_rate"] == pytest.approx(adopted / targets)


def test_active_rate_falls_after_churn_while_adoption_does_not(warehouse: Warehouse) -> None:
    _, rows = warehouse.query(
        "SELECT day, adoption_rate, active_rate FROM adoption_daily "
        "WHERE capability = 'gw' AND day BETWEEN '2026-11-12' AND '2026-12-04' ORDER BY day"
    )
    adoption_rates = [a for _, a, _ in rows]
    assert adoption_rates == sorted(adoption_rates)  # cumulative: never falls
    assert adoption_rates[-1] == pytest.approx(2 / 3)
    assert rows[0][2] == pytest.approx(1 / 3)  # c's use on 11-12
    assert all(active == 0 for _, _, active in rows[1:])  # nobody uses it after


def test_active_in_7_and_28_days_follow_use(warehouse: Warehouse) -> None:
    # as_of 12-05: a's call of `internal` on 12-01 does not make it active
    _, rows = warehouse.query(
        "SELECT team, active_days_7, active_days_28, active_7d, active_28d, as_of "
        "FROM adoption_lifecycle_current WHERE capability = 'gw' ORDER BY team"
    )
    assert [(t, d7, d28, int(a7), int(a28), str(s)) for t, d7, d28, a7, a28, s in rows] == [
        ("a", 0, 0, 0, 0, "2026-12-05"),
        ("b", 1, 1, 1, 1, "2026-12-05"),
        ("c", 0, 1, 0, 1, "2026-12-05"),
        ("unowned", 0, 0, 0, 0, "2026-12-05"),
    ]
    row = _row(warehouse, "SELECT * FROM adoption_funnel WHERE capability = 'gw'")
    assert (row["teams_used"], row["teams_active_28d"], row["teams_active_7d"]) == (4, 2, 1)


def test_retention_follows_use(warehouse: Warehouse) -> None:
    _, rows = warehouse.query(
        "SELECT weeks_since_adoption, cohort_teams, retained_teams FROM adoption_retention "
        "WHERE capability = 'gw' AND cohort_week = '2026-11-02' ORDER BY weeks_since_adoption"
    )
    # a and unowned adopted in the week of 11-02; neither used gw again (a's 12-01 call is not use)
    assert [tuple(r) for r in rows] == [(0, 2, 2), (1, 2, 0), (2, 2, 0), (3, 2, 0), (4, 2, 0)]


def _overview_stat(wh: Warehouse, to: datetime) -> Any:
    board = adoption.build().to_json()
    panel = next(p for p in board["panels"] if p.get("title") == "Teams that have adopted")
    sql = grafana_sql.expand(
        panel["targets"][0]["rawSql"],
        time_range=grafana_sql.TimeRange(to - timedelta(days=30), to),
        interval=timedelta(hours=1),
        variables={
            "capability": grafana_sql.Variable("capability", grafana_sql.ALL, ("gw",), None),
            "teams": grafana_sql.Variable("teams", grafana_sql.ALL, ("a", "b", "c"), None),
            "org_unit": grafana_sql.Variable("org_unit", grafana_sql.ALL, (), None),
        },
    )
    _, rows = wh.query(sql)
    return rows[0][0]


@pytest.mark.parametrize(
    ("to", "share"),
    [
        (datetime(2026, 11, 5, tzinfo=UTC), 1 / 2),  # a of a, b (c does not exist yet)
        (datetime(2026, 11, 20, tzinfo=UTC), 2 / 3),  # a and c of a, b, c; unowned not a target
        (datetime(2026, 12, 6, tzinfo=UTC), 3 / 3),
    ],
)
def test_overview_teams_that_have_adopted_divides_by_target_teams(
    warehouse: Warehouse, to: datetime, share: float
) -> None:
    assert _overview_stat(warehouse, to) == pytest.approx(share)


def test_dora_by_capability_pools_the_target_teams_of_each_day(warehouse: Warehouse) -> None:
    _, rows = warehouse.query(
        "SELECT period_start, cohort, teams, deployments FROM dora_metrics_capability "
        "WHERE capability = 'gw' AND period = 'week' ORDER BY period_start, cohort"
    )
    # week of 11-02: c's deploy on 11-05 is before c existed, so only a's (adopted on 11-02)
    # counts; week of 11-09: c's deploy on 11-11, before its first use on 11-12
    assert [(str(w), c, t, d) for w, c, t, d in rows] == [
        ("2026-11-02", "adopted", 1, 1),
        ("2026-11-09", "not_adopted", 1, 1),
    ]
