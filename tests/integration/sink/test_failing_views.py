"""Hole 1 of issue #16 on the real engine: a materialized view that fails after the `events` part
was committed must not cost the rollups any event, nor count one twice.

A test-only view (`pipeline.devtools.faults.FailingView`) throws on a marker row: the insert
raises with the `events` rows (and those of the views that already ran) stored. The batch spans
two month partitions with the marker in the later one, so the failure also falls between parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from pipeline.contract.decode import BatchDecoder, DecodedBatch, Limits, SourceMessage
from pipeline.devtools.bench import api_call_messages
from pipeline.devtools.faults import FailingView
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.sink.clickhouse import (
    ClickHouseSink,
    RetryPolicy,
    Rows,
    TableWriter,
    retry_until_stopped,
)
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate

pytestmark = pytest.mark.integration

MARKER = "chaos-marker"
EVENTS = 400
ROLLUPS = ("usage_hour", "usage_day")  # usage_minute's 30-day TTL may drop last month's rows
FAST_RETRY = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        yield wh


def two_month_batch() -> DecodedBatch:
    """EVENTS api_call events, the first half in the previous month, the second half now, with
    one marker event among the second half (the later month partition)."""
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    earlier = month_start - timedelta(hours=1)
    later = max(month_start + timedelta(hours=1), now - timedelta(minutes=5))
    messages: list[bytes] = []
    for index, raw in enumerate(api_call_messages(EVENTS, per_message=10, teams=3)):
        events: list[dict[str, Any]] = msgspec.json.decode(raw)
        moment = earlier if index < EVENTS // 20 else later
        for event in events:
            event["occurred_at"] = moment.isoformat(timespec="milliseconds")
        if index == EVENTS // 10 - 5:
            events[3]["capability"] = MARKER
        messages.append(msgspec.json.encode(events))
    decoder = BatchDecoder(Limits(max_lateness=timedelta(days=400)))
    batch = decoder.decode(
        [SourceMessage("events", 0, offset, m) for offset, m in enumerate(messages)]
    )
    assert not batch.rejections and len(batch.events) == EVENTS
    batch.user_keys = Pseudonymizer(b"k" * 32).keys([e.user for e in batch.events])
    return batch


def figures(warehouse: Warehouse) -> dict[str, int]:
    """Events stored and events counted by each rollup and by the test-only view's target."""
    out = {"events": int(warehouse.rows("SELECT count() FROM events FINAL")[0][0])}
    for table in ROLLUPS:
        out[table] = int(warehouse.rows(f"SELECT sum(events) FROM {table}")[0][0])
    out["view"] = int(warehouse.rows(f"SELECT count() FROM {FailingView.TARGET}")[0][0])
    return out


def write_with_failing_view(warehouse: Warehouse, sink_class: type[ClickHouseSink]) -> None:
    view = FailingView(MARKER, failures=1)
    view.install(warehouse)
    sink = sink_class(view.warehouse(warehouse), retry=FAST_RETRY)
    sink.write(two_month_batch())
    assert view.failed == 1, "the view failed once and the sink retried"
    partitions = warehouse.rows("SELECT uniqExact(_partition_id) FROM events WHERE _offset >= 0")[
        0
    ][0]
    assert partitions == 2, "the batch spans two month partitions"


def test_a_view_failing_after_the_events_insert_costs_the_rollups_nothing(
    warehouse: Warehouse,
) -> None:
    write_with_failing_view(warehouse, ClickHouseSink)
    assert figures(warehouse) == {"events": EVENTS, "view": EVENTS} | dict.fromkeys(
        ROLLUPS, EVENTS
    ), "every event counted once in every rollup: none lost, none twice"


class WatermarkRetrySink(ClickHouseSink):
    """The negative control, the sink of main before issue #16: a retry rebuilds the block from
    the watermarks it re-reads, which say the failed insert's rows are stored."""

    def _write_table(self, writer: TableWriter, rows: Rows, batch: DecodedBatch) -> int:
        def attempt() -> int:
            block = self._new_block(writer, rows, batch)
            return 0 if block is None else self._insert(writer, block)

        def failed(exc: Exception) -> None:
            self._watermarks.pop(writer.table, None)  # re-read: it finds the stored rows

        return retry_until_stopped(
            attempt, f"insert into {writer.table}", self._stopping, self.retry, on_failure=failed
        )


def test_negative_control_a_retry_that_trusts_the_watermark_loses_rollup_rows(
    warehouse: Warehouse,
) -> None:
    """Shows the test above catches the fault: the retry skips the rows `events` holds, and the
    views that the failed insert did not complete never see them."""
    write_with_failing_view(warehouse, WatermarkRetrySink)
    counted = figures(warehouse)
    assert counted["events"] == EVENTS
    assert all(counted[table] < EVENTS for table in ROLLUPS), counted
