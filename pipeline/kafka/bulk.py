"""Bulk intake: the ingest topics' records reach the worker's loop in lists, not one faust Event
each (issue #15: faust's per-message path cost ~200 us a message; docs/benchmarks.md, "Where the
time goes").

faust keeps the consumer group, the assignment, the fetcher, seeks, offset gaps and commits. For
the topics of a `BulkIntake`, `BulkConsumer._drain_messages` puts each fetched chunk of raw
aiokafka records into a `RecordBatcher` instead of building a Message and an Event per record
and passing each through the conductor, a stream queue and a per-event ack. The worker's loop
takes batches bounded in messages, bytes and time and acks their offsets in bulk
(`BulkConsumer.ack_records`) only after the batch was written; faust commits the consecutive
acked offsets, as it did for per-event acks. Every other topic (the lifecycle's) takes faust's
per-message path unchanged.

Contract of the batcher: `put` never blocks (the fetch loop waits on `wait_for_room` first, so a
full batcher pauses fetching: backpressure); `take` blocks until a batch is due; `clear` drops
what no batch took yet (a rebalance: faust seeks every assigned partition back to its committed
offset, so those records come again, as faust's own buffered events do).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.futures import notify

from pipeline.observability import metrics

Record = Any  # aiokafka's ConsumerRecord: topic, partition, offset, key, value, headers, ...


def record_bytes(record: Record) -> int:
    """What a record weighs in a batch: its value and key bytes."""
    return len(record.value or b"") + len(record.key or b"")


class RecordBatcher:
    """Raw records waiting to be taken as batches of at most `max_messages` records and at most
    `max_bytes` bytes (a single larger record is a batch of its own), or whatever arrived within
    `within_s` of the first waiting record. Holds at most `backlog` batches' worth."""

    def __init__(
        self, max_messages: int, max_bytes: int, within_s: float, *, backlog: int = 2
    ) -> None:
        if max_messages < 1 or max_bytes < 1 or within_s <= 0:
            raise ValueError("batch bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.within_s = within_s
        self.backlog = backlog
        self._chunks: deque[tuple[list[Record], list[int], float]] = deque()  # + arrival
        self.messages = 0
        self.bytes = 0
        self._arrived: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self.paused = False  # a rebalance is under way: `take` hands out nothing

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        # Made on first use, inside the running loop.
        if self._arrived is None or self._room is None:
            self._arrived, self._room = asyncio.Event(), asyncio.Event()
        return self._arrived, self._room

    def full(self) -> bool:
        return (
            self.messages >= self.backlog * self.max_messages
            or self.bytes >= self.backlog * self.max_bytes
        )

    async def wait_for_room(self) -> None:
        _, room = self._events()
        while self.full():
            room.clear()
            await room.wait()

    def put(self, records: Sequence[Record]) -> None:
        """Append records (in offset order per partition). Never blocks. Paused, records are
        dropped: the rebalance seeks back to the committed offsets, so they come again."""
        if not records or self.paused:
            return
        sizes = [record_bytes(r) for r in records]
        self._chunks.append((list(records), sizes, time.monotonic()))
        self.messages += len(records)
        self.bytes += sum(sizes)
        self._events()[0].set()

    def due(self) -> bool:
        return self.messages >= self.max_messages or self.bytes >= self.max_bytes

    async def take(self) -> list[Record]:
        """The next batch: blocks until one is due (full, or `within_s` after its first record)."""
        arrived, _ = self._events()
        while True:
            if self.paused or not self._chunks:  # nothing yet, or a rebalance under way
                arrived.clear()
                await arrived.wait()
                continue
            remaining = self._chunks[0][2] + self.within_s - time.monotonic()
            if self.due() or remaining <= 0:
                break
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)
        return self.pop()

    def pop(self) -> list[Record]:
        """The records of one batch, taken now (an empty list when none wait)."""
        batch: list[Record] = []
        size = 0
        while self._chunks:
            records, sizes, arrived = self._chunks[0]
            room = self.max_messages - len(batch)
            cut = 0
            while cut < len(records) and cut < room:
                # The first record always goes, whatever its size.
                if (batch or cut) and size + sizes[cut] > self.max_bytes:
                    break
                size += sizes[cut]
                cut += 1
            if cut == len(records):
                self._chunks.popleft()
                batch.extend(records)
            else:
                batch.extend(records[:cut])
                self._chunks[0] = (records[cut:], sizes[cut:], arrived)
                break
        self.messages -= len(batch)
        self.bytes -= size
        if self._room is not None and not self.full():
            self._room.set()
        return batch

    def clear(self) -> None:
        """Drop every waiting record (they are read again from the committed offsets)."""
        self._chunks.clear()
        self.messages = self.bytes = 0
        if self._room is not None:
            self._room.set()

    def pause(self) -> None:
        """A rebalance begins: drop what waits and hand out nothing until `resume`. Called
        before anything in the revoke awaits, so no batch of a revoked partition is taken
        while the revoke waits for the batch in flight (docs/guarantees.md, scale-out)."""
        self.paused = True
        self.clear()

    def resume(self) -> None:
        """The new assignment is in place: records fetched from now on are handed out."""
        self.paused = False
        if self._arrived is not None:
            self._arrived.set()


@dataclass
class BulkIntake:
    """The topics whose records go to `batcher` in bulk instead of through faust's streams."""

    topics: frozenset[str]
    batcher: RecordBatcher
    chunks: int = field(default=0)  # fetched chunks handed over (tests observe the path)


class BulkConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, with the intake's topics drained in bulk (module docstring).

    Everything else is faust's: the group, rebalances, seeks, gaps and the commit of the
    consecutive acked offsets. Offsets of bulk topics move only through `ack_records`."""

    @property
    def intake(self) -> BulkIntake | None:
        return cast(BulkIntake | None, getattr(self.app, "bulk_intake", None))

    def ack_records(self, records: Iterable[Record]) -> int:
        """Ack the records' offsets (after their batch was written); returns how many were new.

        As `Consumer.ack` for each message: offsets below the committed one, or already acked,
        are ignored."""
        by_tp: dict[TP, list[int]] = {}
        for record in records:
            by_tp.setdefault(TP(record.topic, record.partition), []).append(record.offset)
        added = 0
        with ack_lock:
            for tp, offsets in by_tp.items():
                committed = self._committed_offset[tp]
                index = self._acked_index[tp]
                new = [o for o in offsets if (committed is None or o >= committed)]
                new = [o for o in dict.fromkeys(new) if o not in index]
                index.update(new)
                self._acked[tp].extend(new)
                added += len(new)
            self._n_acked += added
            notify(self._waiting_for_ack)
        return added

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        # Before the first await: the worker's revoke handler waits for the batch in flight,
        # and a batch taken during that wait would be written for partitions already gone.
        if (intake := self.intake) is not None:
            intake.batcher.pause()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # Records fetched in the previous generation wait for no one: faust seeks back.
        if (intake := self.intake) is not None:
            intake.batcher.pause()
        await super().on_partitions_assigned(assigned, generation_id)
        if intake is not None:
            intake.batcher.resume()

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - a loop
        intake = self.intake
        if intake is None:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                if intake.batcher.full():  # backpressure: fetch again once a batch was taken
                    metrics.STREAM_BUFFER_FULL.inc()
                    if self.flow_active:
                        await self.wait_first(
                            intake.batcher.wait_for_room(), self.suspend_flow.wait()
                        )
                    else:  # a rebalance, which clears the batcher: wait for it, do not spin
                        await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
                    continue
                records, active = await self._wait_next_records(1.0)
                generation = self.app.consumer_generation_id  # of the fetch, as faust reads it
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()
                    continue
                await self._deliver(intake, records, active, generation)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(
        self,
        intake: BulkIntake,
        records: Mapping[TP, list[Record]],
        active: set[TP] | None,
        generation: int,
    ) -> None:
        """Hand one fetch to the batcher (bulk topics) or to faust's per-message callback;
        nothing once the group's generation is not the fetch's."""
        commit_every = self._commit_every
        for tp, chunk in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return  # a rebalance began: faust seeks back to the committed offsets
            if not (active is None or tp in active or tp in self._buffered_partitions):
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic not in intake.topics:
                await self._deliver_each(tp, chunk)
                continue
            kept = await self._unread(tp, chunk)
            if kept:
                intake.batcher.put(kept)
                intake.chunks += 1
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()

    async def _unread(self, tp: TP, chunk: list[Record]) -> list[Record]:
        """The records not read yet (faust's read-offset rule), noting offset gaps to commit
        across (compaction, transaction markers) as faust's drain loop does."""
        read = self._read_offset[tp]
        first, last = chunk[0].offset, chunk[-1].offset
        if last - first == len(chunk) - 1 and (read is None or 0 <= first - read <= 1):
            self._read_offset[tp] = last  # contiguous and next: the common case, O(1)
            return chunk
        acks = self.app.topics.acks_enabled_for(tp.topic)
        kept = []
        for record in chunk:
            offset = record.offset
            if read is None or offset >= read:
                if read and offset - read > 1 and acks:
                    await self._add_gap(tp, read + 1, offset)
                kept.append(record)
                read = offset
        self._read_offset[tp] = read
        return kept

    async def _deliver_each(self, tp: TP, chunk: list[Record]) -> None:
        """faust's own path, one message at a time (the lifecycle's topics)."""
        for record in chunk:
            message = self._to_message(tp, record)
            read = self._read_offset[tp]
            if read is None or message.offset >= read:
                gap = message.offset - (read or 0)
                if gap > 1 and read and self.app.topics.acks_enabled_for(message.topic):
                    await self._add_gap(tp, read + 1, message.offset)
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = message.offset
            if not self.flow_active:
                return


class BulkTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with `BulkConsumer`."""

    Consumer = BulkConsumer
