"""The lifecycle tables and views on the real engine: replayed rows fold, retractions hide,
"active in the last 7 / 28 days" counts in event time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.lifecycle.engine import Change, Emission, LifecycleRow, MilestoneRow
from pipeline.lifecycle.outputs import LifecycleOutputs
from pipeline.lifecycle.rules import Summary, day_of_date
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate

pytestmark = pytest.mark.integration

D = day_of_date(date(2024, 5, 1))


class NoKafka:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send(self, topic: str, records: list[tuple[int | None, bytes, bytes]]) -> int:
        self.sent.append((topic, len(records)))
        return len(records)

    def close(self) -> None:
        pass


def summary(first: int, last: int, state: str = "first_use") -> Summary:
    return Summary(state, first, first, None, None, last, 1, last - first + 1)


def test_rows_fold_retractions_hide_and_views_count_in_event_time(
    inprocess_warehouse_url: str,
) -> None:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        clock = [datetime(2030, 1, 1, tzinfo=UTC)]

        def tick() -> datetime:
            clock[0] += timedelta(seconds=1)
            return clock[0]

        kafka = NoKafka()
        outputs = LifecycleOutputs(lambda: wh, kafka, "t.milestones", now=tick)  # type: ignore[arg-type]
        first = Emission(
            [
                MilestoneRow("payments", "api", Change("first_use", D, 1)),
                MilestoneRow("payments", "api", Change("churned", D + 28, 1)),
            ],
            [LifecycleRow("payments", "api", summary(D, D))],
        )
        outputs.write(first)
        outputs.write(first)  # a replay after a crash writes the same rows again
        outputs.write(
            Emission(
                [
                    MilestoneRow("payments", "api", Change("churned", D + 28, 1, retracted=True)),
                    MilestoneRow("payments", "api", Change("churned", D + 40, 1)),
                ],
                [LifecycleRow("payments", "api", summary(D, D + 12))],
            )
        )
        assert kafka.sent == [("t.milestones", 2)] * 3
        rows = wh.rows(
            "SELECT milestone, occurred_at FROM adoption_milestones_current ORDER BY occurred_at"
        )
        assert rows == [("first_use", date(2024, 5, 1)), ("churned", date(2024, 6, 10))]
        assert wh.rows("SELECT count() FROM adoption_milestones FINAL")[0][0] == 2
        assert wh.rows("SELECT last_active FROM adoption_lifecycle FINAL") == [(date(2024, 5, 13),)]
        _events(
            wh, [("payments", "api", D), ("payments", "api", D + 12), ("search", "api", D + 30)]
        )
        current = wh.rows(
            "SELECT team, active_days_7, active_days_28, active_28d, as_of "
            "FROM adoption_lifecycle_current"
        )
        # as_of is the newest day with activity (search, May 31): payments' May 13 is 18 days back
        assert current == [("payments", 0, 1, 1, date(2024, 5, 31))]
        funnel = wh.rows("SELECT capability, teams_used, teams_active_28d FROM adoption_funnel")
        assert funnel == [("api", 1, 1)]


def _events(wh: Warehouse, rows: list[tuple[str, str, int]]) -> None:
    """Insert minimal events, twice (the use views count days, so a replay folds)."""
    for _ in range(2):
        for team, capability, day in rows:
            wh.command(
                "INSERT INTO events (event_id, event_type, schema_version, occurred_at, source, "
                "team, capability, data, _topic, _partition, _offset) VALUES "
                f"(generateUUIDv4(), 'api_call', 1, toDateTime64('1970-01-01', 3, 'UTC') + "
                f"toIntervalDay({day}) + toIntervalHour(13), 'test', '{team}', '{capability}', "
                "'{}', 't', 0, 0)"
            )
    assert wh.rows("SELECT count() FROM capability_use_days")[0][0] == len(rows)
