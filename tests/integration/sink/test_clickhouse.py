"""The ClickHouse sink against the real engine: replays write nothing twice, failures retry."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.devtools.faults import FaultyWarehouse, ForgetfulSink
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.sink.clickhouse import ClickHouseSink, RetryPolicy, SinkStopped
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.messages import api_call_messages

pytestmark = pytest.mark.integration

FAST_RETRY = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05)
PSEUDONYMS = Pseudonymizer(b"k" * 32)


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        yield wh


def batch_of(messages: list[bytes], partition: int = 0, first_offset: int = 0) -> DecodedBatch:
    decoded = BatchDecoder().decode(
        [SourceMessage("events", partition, first_offset + i, m) for i, m in enumerate(messages)]
    )
    assert not decoded.rejections
    decoded.user_keys = PSEUDONYMS.keys([e.user for e in decoded.events])
    return decoded


def count(warehouse: Warehouse) -> int:
    return int(warehouse.rows("SELECT count() FROM events")[0][0])


def rollup_events(warehouse: Warehouse) -> int:
    return int(warehouse.rows("SELECT sum(events) FROM usage_minute")[0][0])


def test_a_replayed_batch_writes_nothing_twice(warehouse: Warehouse) -> None:
    messages = api_call_messages(1_000, per_message=10, teams=3)
    first = batch_of(messages[:60])
    ClickHouseSink(warehouse).write(first)
    assert count(warehouse) == 600

    # A new worker (fresh sink, no memory) replays from an older offset: offsets 40..99.
    replay = batch_of(messages[40:], first_offset=40)
    written = ClickHouseSink(warehouse).write(replay)
    assert written == {"events": 400}, "only offsets above the stored watermark are new"
    assert count(warehouse) == 1_000
    assert warehouse.rows("SELECT uniqExact(event_id) FROM events")[0][0] == 1_000


def test_watermarks_are_per_partition(warehouse: Warehouse) -> None:
    messages = api_call_messages(200, per_message=10, teams=3)
    sink = ClickHouseSink(warehouse)
    sink.write(batch_of(messages[:10], partition=0, first_offset=100))
    # Partition 1 at lower offsets than partition 0's watermark must still be written.
    sink.write(batch_of(messages[10:], partition=1, first_offset=0))
    assert count(warehouse) == 200


def test_negative_control_without_watermarks_a_replay_double_counts(
    warehouse: Warehouse,
) -> None:
    """Shows the replay test above can fail: with watermarks disabled the counts double."""
    messages = api_call_messages(100, per_message=10, teams=3)
    batch = batch_of(messages)
    blind = ForgetfulSink(warehouse)  # no watermarks, no id window, no dedup tokens
    blind.write(batch)
    blind.write(batch)
    assert count(warehouse) == 200


def test_a_failed_insert_is_retried_until_it_lands(warehouse: Warehouse) -> None:
    failures = iter([ConnectionError("down"), ConnectionError("still down")])

    def fault(table: str) -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    sink = ClickHouseSink(FaultyWarehouse(warehouse, [fault], []), retry=FAST_RETRY)
    sink.write(batch_of(api_call_messages(50, per_message=10, teams=2)))
    assert count(warehouse) == 50


def test_an_insert_that_landed_but_reported_failure_is_not_written_again(
    warehouse: Warehouse,
) -> None:
    """The acknowledgement is lost after the insert landed: the retry sends the identical block
    with the same deduplication token and ClickHouse folds it, in `events` and in the rollups."""
    sink = ClickHouseSink(warehouse, retry=FAST_RETRY)
    real_insert = warehouse.insert_columns
    calls = []

    def land_then_fail(*args: object, **kwargs: object) -> int:
        calls.append(1)
        written = real_insert(*args, **kwargs)  # type: ignore[arg-type]
        if len(calls) == 1:
            raise TimeoutError("the acknowledgement was lost")
        return written

    warehouse.insert_columns = land_then_fail  # type: ignore[method-assign]
    sink.write(batch_of(api_call_messages(50, per_message=10, teams=2)))
    assert len(calls) == 2, "the retry sent the block again"
    assert count(warehouse) == 50
    assert rollup_events(warehouse) == 50, "the retried block did not reach the rollups twice"


def test_stop_makes_a_failing_write_give_up(warehouse: Warehouse) -> None:
    def always(table: str) -> None:
        raise ConnectionError("warehouse down")

    sink = ClickHouseSink(
        FaultyWarehouse(warehouse, [always], []),
        retry=RetryPolicy(first_delay_s=0.05, max_delay_s=0.05),
    )
    threading.Timer(0.3, sink.stop).start()
    with pytest.raises(SinkStopped):
        sink.write(batch_of(api_call_messages(10, per_message=10, teams=1)))
    assert count(warehouse) == 0


def test_rejections_land_with_reason_and_original_bytes(warehouse: Warehouse) -> None:
    batch = BatchDecoder().decode(
        [SourceMessage("events", 2, 7, b"not json"), SourceMessage("events", 2, 8, b"[]")]
    )
    ClickHouseSink(warehouse).write(batch)
    rows = warehouse.rows(
        "SELECT reason, raw, _partition, _offset FROM rejected_events ORDER BY _offset"
    )
    assert rows == [("not_json", "not json", 2, 7), ("empty_batch", "[]", 2, 8)]


def test_an_unenriched_batch_with_users_is_refused(warehouse: Warehouse) -> None:
    """Raw user identifiers never reach ClickHouse, even through a wiring mistake."""
    decoded = BatchDecoder().decode(
        [SourceMessage("events", 0, 0, m) for m in api_call_messages(10, 10, 1)]
    )
    sink = ClickHouseSink(warehouse, retry=FAST_RETRY)
    threading.Timer(0.2, sink.stop).start()
    with pytest.raises((ValueError, SinkStopped)):
        sink.write(decoded)
    assert count(warehouse) == 0


def test_user_keys_are_stored_instead_of_user_ids(warehouse: Warehouse) -> None:
    ClickHouseSink(warehouse).write(batch_of(api_call_messages(30, per_message=10, teams=2)))
    keys = [row[0] for row in warehouse.rows("SELECT DISTINCT user_key FROM events")]
    assert keys and all(len(k) == 32 and "user" not in k for k in keys)
    assert sorted(keys) == sorted(set(PSEUDONYMS.keys([f"user-{i}" for i in range(30)])))


def test_a_batch_that_holds_offsets_twice_keeps_each_once() -> None:
    from pipeline.ingest.steps import unique_offsets

    def m(partition: int, offset: int) -> SourceMessage:
        return SourceMessage("events", partition, offset, b"{}")

    batch = [m(0, 5), m(0, 6), m(1, 2), m(0, 5), m(0, 6), m(0, 7), m(1, 2)]
    assert unique_offsets(batch) == [m(0, 5), m(0, 6), m(1, 2), m(0, 7)]


def test_an_event_sent_twice_as_new_records_is_written_once(warehouse: Warehouse) -> None:
    messages = api_call_messages(400, per_message=10, teams=3)
    sink = ClickHouseSink(warehouse)
    sink.write(batch_of(messages[:20]))
    # The emitter re-sends messages 10..19 (new offsets 20..29) together with new ones, and one
    # message appears twice inside the same batch.
    again = messages[10:20] + messages[20:30] + [messages[25]]
    written = sink.write(batch_of(again, first_offset=20))
    assert written == {"events": 100}
    # A restarted worker (fresh sink) reads the newest ids back from the warehouse.
    written = ClickHouseSink(warehouse).write(batch_of(messages[25:], first_offset=41))
    assert written == {"events": 100}, "messages 25..29 were stored before the restart"
    assert count(warehouse) == 400
    assert warehouse.rows("SELECT uniqExact(event_id) FROM events")[0][0] == 400


def test_without_the_id_window_a_resent_event_is_inserted_twice(warehouse: Warehouse) -> None:
    messages = api_call_messages(100, per_message=10, teams=3)
    sink = ClickHouseSink(warehouse, recent_ids=0)
    sink.write(batch_of(messages))
    sink.write(batch_of(messages[:5], first_offset=10))
    assert count(warehouse) == 150, "the negative control: the id window is what folds it"


def test_the_id_window_forgets_the_oldest_ids() -> None:
    from pipeline.sink.dedup import RecentIds

    recent = RecentIds(capacity=3)
    recent.remember([1, 2, 3, 4])
    assert 1 not in recent and 4 in recent and len(recent) == 3
    assert recent.first_sightings([4, 5, 5, 1]) == [1, 3]
    assert recent.first_sightings([6, 7]) is None
    assert RecentIds(0).first_sightings([1, 1]) is None
