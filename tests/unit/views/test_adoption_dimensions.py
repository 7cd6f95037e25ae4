"""Adoption by platform type, by group of the hierarchy and per developer (migration 0009),
against a case computed by hand, without Kafka.

Team catalog: root group `eng` > group `product` > leaf teams a and b; `eng` > leaf team d.
Members: a has alice and ann, b has bob, d has dan. Capabilities: `gw` (platform
developer-infrastructure, api_call of `orders`, for a, b, d) and `fs` (data-ml, api_call of any
API, for a and d). Uses: alice calls gw on 11-02 and fs on 11-03; bob calls gw on 11-20; dan
calls gw with the API `internal` on 11-04 (not use).
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

START = datetime(2026, 11, 1, tzinfo=UTC)


def _call(team: str, user: str, capability: str, day: date, api: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "api_call",
        "occurred_at": f"{day.isoformat()}T12:00:00.000Z",
        "team": team,
        "service": f"{team}-api",
        "user": user,
        "capability": capability,
        "data": {"api": api, "operation": "GET /x", "status_code": 200, "latency_ms": 1},
    }


EVENTS = [
    _call("a", "alice", "gw", date(2026, 11, 2), "orders"),
    _call("a", "alice", "fs", date(2026, 11, 3), "features"),
    _call("d", "dan", "gw", date(2026, 11, 4), "internal"),
    _call("b", "bob", "gw", date(2026, 11, 20), "orders"),
]


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, EVENTS)
        rows = [
            ("team", "eng", "eng", ""),
            ("team", "product", "product", "eng"),
            ("team", "a", "a", "product"),
            ("team", "b", "b", "product"),
            ("team", "d", "d", "eng"),
            ("user", "alice", "a", ""),
            ("user", "ann", "a", ""),
            ("user", "bob", "b", ""),
            ("user", "dan", "d", ""),
        ]
        columns = [list(c) for c in zip(*rows, strict=True)] + [[START] * len(rows)]
        wh.insert_columns("team_catalog", columns, ["kind", "name", "team", "parent", "valid_from"])
        catalog = [
            ("gw", "developer-infrastructure", ["api_call"], ["orders"], ["a", "b", "d"], 1),
            ("fs", "data-ml", ["api_call"], [], ["a", "d"], 1),
        ]
        wh.insert_columns(
            "capability_catalog",
            [list(c) for c in zip(*catalog, strict=True)],
            ["name", "platform", "event_types", "apis", "target_teams", "declared"],
        )
        yield wh


def _rows(wh: Warehouse, sql: str) -> list[dict[str, Any]]:
    names, rows = wh.query(sql)
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_adoption_by_platform(warehouse: Warehouse) -> None:
    rows = _rows(
        warehouse, "SELECT * FROM adoption_by_platform WHERE day = '2026-11-20' ORDER BY platform"
    )
    assert [(r["platform"], r["target_pairs"], r["adopted_pairs"]) for r in rows] == [
        ("data-ml", 2, 1),  # fs: a adopted, d not
        ("developer-infrastructure", 3, 2),  # gw: a and b; d's call of `internal` is no use
    ]


def test_adoption_by_group_counts_teams_at_any_depth(warehouse: Warehouse) -> None:
    rows = _rows(
        warehouse,
        "SELECT group_name, target_teams, adopted_target_teams FROM adoption_by_group "
        "WHERE capability = 'gw' AND day = '2026-11-20' ORDER BY group_name",
    )
    assert [(r["group_name"], r["target_teams"], r["adopted_target_teams"]) for r in rows] == [
        ("eng", 3, 2),  # a, b and d are under eng
        ("product", 2, 2),
    ]


def test_developer_adoption_is_the_share_of_members_active_in_28_days(warehouse: Warehouse) -> None:
    rows = _rows(
        warehouse,
        "SELECT team, members, active_members_28d, active_member_share "
        "FROM developer_adoption_weekly WHERE capability = 'gw' AND week = '2026-11-16' "
        "ORDER BY team",
    )
    assert [(r["team"], r["members"], r["active_members_28d"]) for r in rows] == [
        ("a", 2, 1),  # alice of alice and ann
        ("b", 1, 1),
        ("d", 1, 0),
    ]
    assert rows[0]["active_member_share"] == 0.5
