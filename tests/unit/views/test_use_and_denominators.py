"""One definition of use (catalog event_types and apis) and one denominator (target teams as
they were on each day): adoption_rates_daily against a case computed by hand, without Kafka.

Team catalog: group `product` with leaf teams a and b from 2026-11-01, and c from 2026-11-10.
Capability `gw`: api_call of the API `orders` only, meant for a, b and c.
- a calls orders on 11-02 (its only use);
- b calls `internal` on 11-03 (not use of gw), then orders on 12-05;
- c calls orders on 11-12;
- `unowned` calls orders on 11-04 (not a target team).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

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


EVENTS = [
    _call("a", date(2026, 11, 2), "orders"),
    _call("b", date(2026, 11, 3), "internal"),
    _call("unowned", date(2026, 11, 4), "orders"),
    _call("c", date(2026, 11, 12), "orders"),
    _call("b", date(2026, 12, 5), "orders"),
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
        yield wh


def _day(wh: Warehouse, day: date) -> dict[str, Any]:
    names, rows = wh.query(
        "SELECT * FROM adoption_rates_daily WHERE capability = 'gw' AND day = {d:Date}",
        {"d": day},
    )
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def test_use_follows_the_catalogs_event_types_and_apis(warehouse: Warehouse) -> None:
    _, rows = warehouse.query(
        "SELECT team, min(day) FROM capability_use_days WHERE capability = 'gw' GROUP BY team "
        "ORDER BY team"
    )
    assert [(t, str(d)) for t, d in rows] == [
        ("a", "2026-11-02"),
        ("b", "2026-12-05"),  # its call of `internal` on 11-03 is not use of gw
        ("c", "2026-11-12"),
        ("unowned", "2026-11-04"),
    ]


@pytest.mark.parametrize(
    ("day", "targets", "adopted", "active"),
    [
        (date(2026, 11, 5), 2, 1, 1),  # c does not exist yet: not in the denominator
        (date(2026, 11, 12), 3, 2, 2),
        (date(2026, 11, 30), 3, 2, 1),  # a's last use was 29 days ago: adopted, not active
        (date(2026, 12, 5), 3, 3, 2),
    ],
)
def test_rates_divide_by_the_target_teams_of_each_day(
    warehouse: Warehouse, day: date, targets: int, adopted: int, active: int
) -> None:
    row = _day(warehouse, day)
    assert row["target_teams"] == targets
    assert row["adopted_target_teams"] == adopted
    assert row["active_target_teams_28d"] == active
    assert row["adoption_rate"] == pytest.approx(adopted / targets)
    assert row["active_rate_28d"] == pytest.approx(active / targets)
