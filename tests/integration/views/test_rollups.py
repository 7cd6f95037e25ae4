"""usage_minute/hour/day equal the ground truth per team x capability x event type x bucket."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.devtools.simulate.org import GroundTruth
from tests.integration.views.conftest import Loaded, Warehouse
from tests.support.views.expected import ROLLUP_SQL, rollup_diff

pytestmark = pytest.mark.integration

MINUTE_TTL = timedelta(days=30)  # 0003: minute rows expire 30 days after their bucket


@pytest.mark.parametrize("grain", ["hour", "day"])
def test_rollup_equals_truth(warehouse: Warehouse, truth: GroundTruth, grain: str) -> None:
    rows = warehouse.rows(ROLLUP_SQL.format(table=f"usage_{grain}", where=""))
    assert rows, "the rollup is empty"
    problems = rollup_diff(rows, truth.rollup(grain))
    assert problems == [], f"{len(problems)} differences, first: {problems[:10]}"


def test_minute_rollup_equals_truth_within_its_ttl(loaded: Loaded) -> None:
    """Buckets younger than the TTL must all be there; older ones may already have expired
    (a merge drops them at any time), but those still present must be right too."""
    truth = loaded.truth
    keep_from = loaded.loaded_at - MINUTE_TTL + timedelta(hours=1)
    rows = loaded.warehouse.rows(ROLLUP_SQL.format(table="usage_minute", where=""))
    problems = rollup_diff(rows, truth.rollup("minute"), since=keep_from)
    recent = [p for p in problems if not p.startswith("unexpected")]
    assert recent == [], f"{len(recent)} differences, first: {recent[:10]}"
    # Rows older than keep_from: those present equal the truth, none is invented.
    minutes = truth.rollup("minute")
    old = [r for r in rows if r["bucket"] < keep_from.timestamp()]
    old_truth = {
        key: value
        for key, value in minutes.items()
        if round(key[3].timestamp()) in {int(r["bucket"]) for r in old}
    }
    assert [p for p in rollup_diff(old, old_truth) if not p.startswith("missing")] == []
    assert len(rows) >= sum(1 for key in minutes if key[3] >= keep_from)


def test_the_checker_catches_a_batch_inserted_twice(loaded: Loaded) -> None:
    """Negative control: a scratch copy of the warehouse built from the same events passes the
    checker; the same copy with one batch inserted again fails it."""
    warehouse = loaded.warehouse
    source = warehouse.rows("SELECT currentDatabase() AS db")[0]["db"]
    scratch = "views_scratch"
    warehouse.command(f"INSERT INTO events SELECT * FROM {source}.events", scratch, migrate=True)
    copy = warehouse.rows(ROLLUP_SQL.format(table="usage_hour", where=""), scratch)
    assert rollup_diff(copy, loaded.truth.rollup("hour")) == []

    batch = warehouse.rows(
        f"SELECT _partition AS p, min(_offset) AS o FROM {source}.events "
        "GROUP BY _partition ORDER BY _partition LIMIT 1"
    )[0]
    warehouse.command(
        f"INSERT INTO events SELECT * FROM {source}.events "
        f"WHERE _partition = {int(batch['p'])} AND _offset = {int(batch['o'])}",
        scratch,
    )
    doubled = warehouse.rows(ROLLUP_SQL.format(table="usage_hour", where=""), scratch)
    problems = rollup_diff(doubled, loaded.truth.rollup("hour"))
    assert problems, "the checker did not notice a batch counted twice"
    assert any("events" in p for p in problems)
