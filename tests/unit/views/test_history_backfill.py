"""The documented backfill of usage_api_day / usage_user_day (docs/analysts.md, "Backfilling
history older than 0008"), run as written, twice, on a warehouse whose use tables miss the
history written before their migrations: afterwards they hold exactly what the materialized
views would have written for every event, and the second run adds nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.devtools.simulate.org import Organisation, Scenario, generate
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.integration.views.conftest import repo_file
from tests.support.views.direct import insert_events

API_DAY = (
    "SELECT team, capability, event_type, api, day, sum(events) AS n, "
    "toUnixTimestamp64Milli(min(first_seen)) AS f, toUnixTimestamp64Milli(max(last_seen)) AS l "
    "FROM usage_api_day GROUP BY team, capability, event_type, api, day"
)
USER_DAY = "SELECT DISTINCT user_key, capability, event_type, api, day FROM usage_user_day"
# Recent: `events` keeps api_call rows 90 days (its TTL), so an old window would be deleted.
END = datetime.now(UTC) - timedelta(minutes=1)
MID = END.date() - timedelta(days=10)


def backfill_statements() -> list[str]:
    doc = repo_file("docs", "analysts.md").read_text(encoding="utf-8")
    block = re.search(r"```sql\n-- Backfill usage_api_day[^\n]*\n(.*?)```", doc, re.S)
    assert block, "the backfill block is missing from docs/analysts.md"
    return [s.strip() for s in block.group(1).split(";") if s.strip()]


def _state(wh: Warehouse) -> tuple[set[Any], set[Any]]:
    return set(wh.rows(API_DAY)), set(wh.rows(USER_DAY))


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        org = Organisation.synthetic(5, teams=6)
        events = generate(
            org,
            4000,
            5,
            end=END,
            window=timedelta(weeks=3),
            scenario=Scenario(uncounted_api_share=0.05),
        )
        insert_events(wh, events)
        yield wh


def test_the_backfill_restores_the_history_and_is_idempotent(warehouse: Warehouse) -> None:
    wh = warehouse
    want = _state(wh)  # what the materialized views wrote for every event
    assert len(want[0]) > 100 and len(want[1]) > 100
    # Before the upgrade: nothing in usage_user_day, and usage_api_day only from MID on, plus
    # one event of three keys of the day before (the view saw that day in part).
    wh.command("CREATE TABLE keep ENGINE = Memory AS SELECT * FROM usage_api_day")
    wh.command("TRUNCATE TABLE usage_api_day")
    wh.command("TRUNCATE TABLE usage_user_day")
    wh.command("INSERT INTO usage_api_day SELECT * FROM keep WHERE day >= {d:Date}", {"d": MID})
    wh.command(
        "INSERT INTO usage_api_day SELECT team, capability, event_type, api, day, 1, "
        "first_seen, first_seen FROM keep WHERE day = {d:Date} AND events > 1 LIMIT 3",
        {"d": MID - timedelta(days=1)},
    )
    missing = _state(wh)
    # Negative control: the comparison sees the missing history.
    assert missing[0] != want[0] and not missing[1]

    for _ in range(2):
        for statement in backfill_statements():
            wh.command(statement)
        assert _state(wh) == want
    # The second run added no rows: usage_user_day holds each row once.
    assert wh.rows("SELECT count() FROM usage_user_day")[0][0] == len(want[1])
