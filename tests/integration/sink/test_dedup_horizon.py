"""Hole 3 of issue #16: re-sends and the recent-id window. The bound is documented, not removed
(docs/guarantees.md, "Re-sends and the id window"): a re-send the window still holds is written
once; an older one counts twice in the rollups, and `uptake_sink_dedup_horizon_seconds` shows
beforehand how old a re-send may be."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.devtools.bench import api_call_messages
from pipeline.observability import metrics
from pipeline.sink.clickhouse import ClickHouseSink
from pipeline.sink.dedup import RecentIds
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.integration.sink.test_clickhouse import batch_of, rollup_events
from tests.unit.ingest.test_health import Clock


def test_the_horizon_is_the_age_of_the_oldest_id_remembered() -> None:
    clock = Clock()
    ids = RecentIds(4, clock=clock)
    ids.remember([1, 2])  # at 1000
    clock.now += 10
    ids.remember([3, 4])  # at 1010: full
    clock.now += 5
    assert ids.horizon_s() == 15, "full, oldest remembered at 1000"
    ids.remember([5])  # at 1015: 1 forgotten, 2 still from 1000
    assert ids.horizon_s() == 15
    clock.now += 5
    ids.remember([6])  # at 1020: 2 forgotten too, the oldest now from 1010
    assert ids.horizon_s() == 10
    assert 1 not in ids and 2 not in ids and 3 in ids


def test_a_window_never_full_covers_everything_since_it_started() -> None:
    clock = Clock()
    ids = RecentIds(100, clock=clock)
    ids.remember([1])
    clock.now += 60
    assert ids.horizon_s() == 60


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        yield wh


@pytest.mark.integration
def test_resends_inside_the_window_count_once_older_ones_twice(warehouse: Warehouse) -> None:
    clock = Clock()
    sink = ClickHouseSink(warehouse)
    sink.recent_ids = RecentIds(200, clock=clock)
    messages = api_call_messages(300, per_message=10, teams=3)
    sink.write(batch_of(messages[:10], first_offset=0))  # ids 1..100 at t=1000
    clock.now += 30
    sink.write(batch_of(messages[10:20], first_offset=10))  # ids 101..200 at t=1030
    clock.now += 30
    sink.write(batch_of(messages[20:30], first_offset=20))  # ids 201..300: 1..100 forgotten
    assert metrics.DEDUP_HORIZON._value.get() == 30, "the gauge: re-sends up to 30 s back"

    # The same events sent again as new Kafka records (new offsets).
    sink.write(batch_of(messages[10:20], first_offset=30))  # 30 s old: inside the window
    assert rollup_events(warehouse) == 300, "a re-send inside the window counts once"
    sink.write(batch_of(messages[:10], first_offset=40))  # 60 s old: outside
    assert warehouse.rows("SELECT count() FROM events FINAL")[0][0] == 300, "events folds it"
    assert rollup_events(warehouse) == 400, "the documented bound: an older re-send counts twice"
