"""The feedback views of 0015 against a case computed by hand, on the real engine, without Kafka.

Capability `fs` (declared: api_call, any API) and the undeclared `legacy`.
November: u1..u4 call fs (4 active users); u1 calls legacy.
- csat on fs: u1 5, u2 4, u3 2, u6 3 (not an active user), one answer without a user 1
  -> 5 responses, 4 respondents, satisfied 2, neutral 1, dissatisfied 2, CSAT 2/5, mean 3.0,
  active respondents 3 -> response rate 3/4;
- nps on fs: u1 10, u2 9, u4 7, u4 again 0 -> 4 responses, 3 respondents, promoters 2,
  passives 1, detractors 1, NPS 100 x (2 - 1) / 4 = 25, response rate 3/4;
- u7 of team t7 rates legacy, u6 of team t6 rates fs: neither team used them, so neither is use;
  u1 rates legacy (csat 4) on the day t1 used it: a rating, not an event of use.
December: u5 calls fs and rates it csat 1 -> CSAT 0, response rate 1/1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from pipeline.cli.run import FEEDBACK_SQL
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.integration.views.test_analysts_doc import FEEDBACK_BLOCKS
from tests.support.views.direct import insert_events

pytestmark = pytest.mark.integration


def _call(user: str, day: date, capability: str = "fs", team: str = "t1") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "api_call",
        "occurred_at": f"{day.isoformat()}T10:00:00.000Z",
        "team": team,
        "service": f"{team}-api",
        "user": user,
        "capability": capability,
        "data": {"api": "features", "operation": "GET /x", "status_code": 200, "latency_ms": 1},
    }


def _rating(
    user: str | None, day: date, scale: str, score: int, capability: str = "fs", team: str = "t1"
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "feedback",
        "occurred_at": f"{day.isoformat()}T15:00:00.000Z",
        "team": team,
        "service": "",
        "user": user,
        "capability": capability,
        "data": {"scale": scale, "score": score, "comment": f"{user} says {score}"},
    }


NOV, DEC = date(2026, 11, 3), date(2026, 12, 8)
EVENTS = [
    *(_call(u, NOV) for u in ("u1", "u2", "u3", "u4")),
    _call("u1", NOV, "legacy"),
    _call("u5", DEC),
    _rating("u1", NOV, "csat", 5),
    _rating("u2", NOV, "csat", 4),
    _rating("u3", NOV, "csat", 2),
    _rating("u6", NOV, "csat", 3, team="t6"),
    _rating(None, NOV, "csat", 1),
    _rating("u1", NOV, "nps", 10),
    _rating("u2", NOV, "nps", 9),
    _rating("u4", NOV, "nps", 7),
    _rating("u4", NOV, "nps", 0),
    _rating("u7", NOV, "nps", 10, "legacy", team="t7"),
    _rating("u1", NOV, "csat", 4, "legacy"),
    _rating("u5", DEC, "csat", 1),
]


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, EVENTS)
        wh.insert_columns(  # u7 is a member of t7 (users are known by their key)
            "team_catalog",
            [["user"], ["u7"], ["t7"], [""], [datetime(2026, 10, 1, tzinfo=UTC)]],
            ["kind", "name", "team", "parent", "valid_from"],
        )
        wh.insert_columns(
            "capability_catalog",
            [["fs"], [["api_call"]], [[]], [[]], [1]],
            ["name", "event_types", "apis", "target_teams", "declared"],
        )
        yield wh


def rows(wh: Warehouse, sql: str) -> list[dict[str, Any]]:
    names, found = wh.query(sql)
    return [dict(zip(names, row, strict=True)) for row in found]


def test_csat_nps_and_response_rate_equal_the_hand_computed_case(warehouse: Warehouse) -> None:
    got = {
        (r["capability"], r["month"], r["scale"]): r
        for r in rows(warehouse, "SELECT * FROM feedback_monthly")
    }
    assert set(got) == {
        ("fs", date(2026, 11, 1), "csat"),
        ("fs", date(2026, 11, 1), "nps"),
        ("fs", date(2026, 12, 1), "csat"),
        ("legacy", date(2026, 11, 1), "nps"),
        ("legacy", date(2026, 11, 1), "csat"),
    }
    csat = got["fs", date(2026, 11, 1), "csat"]
    assert (csat["responses"], csat["respondents"]) == (5, 4)
    assert (csat["favourable"], csat["neutral"], csat["unfavourable"]) == (2, 1, 2)
    assert (csat["csat"], csat["nps"], csat["mean_score"]) == (pytest.approx(0.4), None, 3.0)
    assert (csat["active_users"], csat["active_respondents"]) == (4, 3)
    assert csat["response_rate"] == pytest.approx(0.75)

    nps = got["fs", date(2026, 11, 1), "nps"]
    assert (nps["responses"], nps["respondents"]) == (4, 3)
    assert (nps["favourable"], nps["neutral"], nps["unfavourable"]) == (2, 1, 1)
    assert (nps["nps"], nps["csat"], nps["mean_score"]) == (pytest.approx(25.0), None, 6.5)
    assert nps["response_rate"] == pytest.approx(0.75)

    december = got["fs", date(2026, 12, 1), "csat"]
    assert (december["csat"], december["active_users"], december["response_rate"]) == (0.0, 1, 1.0)

    legacy = got["legacy", date(2026, 11, 1), "nps"]
    assert (legacy["nps"], legacy["active_users"], legacy["active_respondents"]) == (100.0, 1, 0)
    assert legacy["response_rate"] == 0.0
    rated = got["legacy", date(2026, 11, 1), "csat"]
    assert (rated["csat"], rated["active_respondents"], rated["response_rate"]) == (1.0, 1, 1.0)


def test_feedback_is_never_use(warehouse: Warehouse) -> None:
    used = {
        (r["team"], r["capability"]) for r in rows(warehouse, "SELECT * FROM capability_use_days")
    }
    assert used == {("t1", "fs"), ("t1", "legacy")}
    active = {
        (r["capability"], r["month"]): sorted(r["users"])
        for r in rows(warehouse, "SELECT * FROM capability_active_users_monthly")
    }
    assert active == {
        ("fs", date(2026, 11, 1)): ["u1", "u2", "u3", "u4"],
        ("fs", date(2026, 12, 1)): ["u5"],
        ("legacy", date(2026, 11, 1)): ["u1"],
    }
    counted = rows(
        warehouse,
        "SELECT event_type, sum(events) AS n FROM usage_day_counted "
        "WHERE team = 't1' GROUP BY event_type",
    )
    assert counted == [{"event_type": "api_call", "n": 6}], "ratings are not events of use"
    developers = rows(
        warehouse,
        "SELECT active_members_28d AS n FROM developer_adoption_weekly "
        "WHERE team = 't7' AND capability = 'legacy' AND week = '2026-11-02'",
    )
    assert developers == [{"n": 0}], "u7 only rated legacy: not an active member"
    # Negative control: 0008's rule alone takes u7's rating of the undeclared capability for use.
    old_rule = rows(
        warehouse,
        "SELECT DISTINCT u.team AS team FROM usage_api_day AS u LEFT JOIN "
        "(SELECT name, event_types FROM capability_catalog FINAL) AS c ON c.name = u.capability "
        "WHERE u.capability = 'legacy' "
        "AND (empty(c.event_types) OR has(c.event_types, u.event_type))",
    )
    assert {r["team"] for r in old_rule} == {"t1", "t7"}


def test_comments_reach_analysts_with_the_respondent(warehouse: Warehouse) -> None:
    found = rows(
        warehouse,
        "SELECT user_key, scale, score, comment FROM feedback_responses "
        "WHERE capability = 'fs' ORDER BY month, scale, score",
    )
    assert len(found) == 10
    assert {"user_key": "u4", "scale": "nps", "score": 0, "comment": "u4 says 0"} in found
    assert {"user_key": "", "scale": "csat", "score": 1, "comment": "None says 1"} in found


def test_the_documented_feedback_queries_answer(warehouse: Warehouse) -> None:
    assert len(FEEDBACK_BLOCKS) == 2
    monthly, comments = (rows(warehouse, sql) for sql in FEEDBACK_BLOCKS)
    assert len(monthly) == 5
    assert monthly[0]["csat_pct"] == 40 and monthly[0]["response_rate_pct"] == 75
    assert comments[0]["comment"] == "u5 says 1", "the newest first"
    assert {r["comment"] for r in comments} == {
        "u5 says 1",
        "u3 says 2",
        "None says 1",
        "u4 says 0",
    }


def test_the_demo_prints_the_declared_capabilities_feedback(warehouse: Warehouse) -> None:
    found = [(r["in_month"], r["scale"], r["score"], r["response_rate_pct"])
             for r in rows(warehouse, FEEDBACK_SQL)]  # fmt: skip
    assert found == [("2026-11", "csat", 40, 75), ("2026-11", "nps", 25, 75),
                     ("2026-12", "csat", 0, 100)]  # fmt: skip
