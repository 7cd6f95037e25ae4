"""The bulk intake's batcher: a batch closes at whichever bound comes first (messages, bytes or
time), keeps every record exactly once and in order, and holds back the fetch when full
(pipeline/kafka/bulk.py; the whole path with a real broker: tests/integration/ingest/test_bulk.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

import pytest

from pipeline.kafka.bulk import RecordBatcher, record_bytes


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def records(count: int, size: int, first: int = 0, partition: int = 0) -> list[Rec]:
    return [Rec("t", partition, first + i, None, b"x" * size) for i in range(count)]


def drain(batcher: RecordBatcher) -> list[list[Rec]]:
    batches = []
    while batcher.messages:
        batches.append(batcher.pop())
    return batches


def test_a_batch_closes_at_the_message_bound_when_messages_are_small() -> None:
    batcher = RecordBatcher(max_messages=100, max_bytes=1_000_000, within_s=1.0)
    batcher.put(records(250, 10))
    assert [len(b) for b in drain(batcher)] == [100, 100, 50]


def test_a_batch_closes_at_the_byte_bound_when_messages_are_large() -> None:
    batcher = RecordBatcher(max_messages=100, max_bytes=1_000, within_s=1.0)
    batcher.put(records(25, 100))
    batches = drain(batcher)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert all(sum(record_bytes(r) for r in b) <= 1_000 for b in batches)
    # Negative control: counted by messages only, these 25 records would be one 2,500-byte batch.
    assert sum(record_bytes(r) for r in records(25, 100)) > 1_000


def test_a_record_larger_than_the_byte_bound_is_a_batch_of_its_own() -> None:
    batcher = RecordBatcher(max_messages=100, max_bytes=1_000, within_s=1.0)
    batcher.put(records(1, 10) + records(1, 5_000, first=1) + records(1, 10, first=2))
    assert [[r.offset for r in b] for b in drain(batcher)] == [[0], [1], [2]]


def test_keys_count_towards_the_byte_bound() -> None:
    batcher = RecordBatcher(max_messages=100, max_bytes=100, within_s=1.0)
    batcher.put([Rec("t", 0, i, b"k" * 40, b"v" * 10) for i in range(4)])
    assert [len(b) for b in drain(batcher)] == [2, 2]


def test_every_record_is_taken_once_in_order_across_chunks_and_partitions() -> None:
    batcher = RecordBatcher(max_messages=7, max_bytes=450, within_s=1.0)
    put = []
    for n in range(20):
        chunk = records(n % 5 + 1, 10 * (n % 4 + 1), first=100 * n, partition=n % 3)
        put.extend(chunk)
        batcher.put(chunk)
    taken = [r for b in drain(batcher) for r in b]
    assert taken == put
    assert batcher.messages == 0 and batcher.bytes == 0


def test_take_waits_for_the_interval_when_the_batch_is_not_full() -> None:
    async def scenario() -> tuple[int, float]:
        batcher = RecordBatcher(max_messages=100, max_bytes=10_000, within_s=0.3)
        batcher.put(records(5, 10))
        started = time.monotonic()
        batch = await batcher.take()
        return len(batch), time.monotonic() - started

    count, waited = asyncio.run(scenario())
    assert count == 5
    assert 0.25 <= waited < 2.0


def test_take_returns_at_once_when_a_bound_is_reached() -> None:
    async def scenario() -> float:
        batcher = RecordBatcher(max_messages=100, max_bytes=500, within_s=30.0)
        task = asyncio.ensure_future(batcher.take())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        batcher.put(records(6, 100))  # 600 bytes: over the byte bound
        batch = await task
        assert [r.offset for r in batch] == [0, 1, 2, 3, 4]
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0


def test_a_full_batcher_holds_back_until_a_batch_is_taken() -> None:
    async def scenario() -> None:
        batcher = RecordBatcher(max_messages=10, max_bytes=10_000, within_s=1.0, backlog=2)
        batcher.put(records(20, 10))
        assert batcher.full()
        waiter = asyncio.ensure_future(batcher.wait_for_room())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        batcher.pop()
        await asyncio.wait_for(waiter, 1.0)

    asyncio.run(scenario())


def test_clear_drops_what_no_batch_took() -> None:
    batcher = RecordBatcher(max_messages=10, max_bytes=10_000, within_s=1.0)
    batcher.put(records(15, 10))
    batcher.clear()
    assert (batcher.messages, batcher.bytes, batcher.pop()) == (0, 0, [])


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecordBatcher(max_messages=0, max_bytes=1, within_s=1.0)
    with pytest.raises(ValueError):
        RecordBatcher(max_messages=1, max_bytes=0, within_s=1.0)


def test_a_paused_batcher_hands_out_nothing_until_resumed() -> None:
    """A rebalance pauses the batcher: what waited is dropped, what arrives meanwhile too (faust
    seeks back to the committed offsets), and `take` blocks until the new assignment resumes it."""

    async def scenario() -> None:
        batcher = RecordBatcher(max_messages=10, max_bytes=10_000, within_s=0.01)
        batcher.put(records(5, 10))
        batcher.pause()
        batcher.put(records(5, 10, first=5))  # fetched before the rebalance showed: dropped
        taker = asyncio.ensure_future(batcher.take())
        await asyncio.sleep(0.1)
        assert not taker.done() and batcher.messages == 0
        batcher.resume()
        batcher.put(records(3, 10, first=0))  # read again from the committed offset
        assert [r.offset for r in await asyncio.wait_for(taker, 1.0)] == [0, 1, 2]

    asyncio.run(scenario())


def test_a_revoke_pauses_the_batcher_before_the_worker_waits_for_its_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust's revoke runs the worker's handler, which waits for the batch in flight; a batch
    taken during that wait would be written for partitions another worker now reads. So the
    batcher is paused before anything awaits (control: pausing after faust's revoke, as the
    first version did, leaves it handing out batches during the wait)."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from pipeline.kafka.bulk import BulkConsumer, BulkIntake

    seen: list[bool] = []
    batcher = RecordBatcher(max_messages=10, max_bytes=10_000, within_s=0.01)

    async def faust_revoke(self: object, revoked: set[object]) -> None:
        seen.append(batcher.paused)  # what the worker's handler would find while it waits

    async def faust_assign(self: object, assigned: set[object], generation_id: int = 0) -> None:
        seen.append(batcher.paused)

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", faust_revoke)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", faust_assign)

    class App:
        bulk_intake = BulkIntake(frozenset({"t"}), batcher)

    consumer = object.__new__(BulkConsumer)
    consumer.app = App()  # type: ignore[assignment]
    batcher.put(records(5, 10))
    asyncio.run(consumer.on_partitions_revoked(set()))
    assert seen == [True] and batcher.messages == 0
    asyncio.run(consumer.on_partitions_assigned(set()))
    assert seen == [True, True] and not batcher.paused

    class Late(BulkConsumer):  # the negative control: the order before this test
        async def on_partitions_revoked(self, revoked: set[object]) -> None:  # type: ignore[override]
            await faust_aiokafka.Consumer.on_partitions_revoked(self, revoked)  # type: ignore[arg-type]
            batcher.pause()

    late = object.__new__(Late)
    late.app = App()  # type: ignore[assignment]
    batcher.resume()
    asyncio.run(late.on_partitions_revoked(set()))
    assert seen[-1] is False
