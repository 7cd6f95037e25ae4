"""The helpers of the ingest steps (pipeline/ingest/chain.py): offsets, decoding by topic,
the batch's metrics, and the write that never lets an unwritten batch be acked."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.contract.events import event_type_of
from pipeline.observability import metrics
from pipeline.sink.clickhouse import REJECTED, SinkStopped

log = logging.getLogger("uptake.worker")

EXIT_SINK_FAILED = 75  # EX_TEMPFAIL: the batch was not written and was not committed


class BatchSink(Protocol):
    """Where the agent hands each batch: `ClickHouseSink` (UPTAKE_WRITER=direct) or the
    writer-topic publisher (UPTAKE_WRITER=kafka, pipeline/ingest/remote.py). `write` blocks until
    the batch is safe (or raises `SinkStopped` after `stop()`); offsets are committed after it."""

    dead_letters: Any  # a DeadLetterPublisher when this process dead-letters rejections

    def write(self, batch: DecodedBatch) -> dict[str, int]: ...

    def stop(self) -> None: ...

    def forget_watermarks(self) -> None: ...


@dataclass
class Progress:
    """What the worker did so far; logged every few seconds and at exit."""

    consumed: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    last_batch: float = 0.0
    last_report: float = 0.0
    in_flight: bool = False

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"consumed {self.consumed:,} events ({self.accepted:,} accepted, "
            f"{self.rejected:,} rejected) in {self.batches:,} batches, "
            f"{self.consumed / elapsed:,.0f} events/s"
        )


def record(
    batch: DecodedBatch,
    progress: Progress,
    *,
    messages: int = 0,
    written: Mapping[str, int] | None = None,
    dead_lettered: bool = False,
    backfill_topic: str | None = None,
) -> None:
    """Count a written batch in the metrics and the progress (consumed = accepted + rejected).

    `messages` is how many Kafka messages the batch came from, `written` the rows each table's
    insert wrote (the sink's answer) and `dead_lettered` whether the sink has a dead-letter
    publisher: it publishes exactly the rejections it writes to `rejected_events` (not those a
    replay skips), right before that insert. Events of `backfill_topic` stay out of the
    event-delay histogram: they are old on purpose, not late.
    """
    metrics.MESSAGES_CONSUMED.inc(messages)
    metrics.EVENTS_CONSUMED.inc(batch.consumed)
    if dead_lettered:
        published = written.get(REJECTED.table, 0) if written is not None else len(batch.rejections)
        metrics.DEAD_LETTERS.inc(published)
    for table, rows in (written or {}).items():
        if rows:  # 0: every row was a replay and no insert was sent
            metrics.INSERT_BATCH_ROWS.labels(table).observe(rows)
    by_type: dict[str, int] = {}
    for event in batch.events:
        tag = event_type_of(event)
        by_type[tag] = by_type.get(tag, 0) + 1
    for event_type, count in by_type.items():
        metrics.EVENTS_ACCEPTED.labels(event_type).inc(count)
    by_reason: dict[str, int] = {}
    for rejection in batch.rejections:
        by_reason[rejection.reason] = by_reason.get(rejection.reason, 0) + 1
    for reason, count in by_reason.items():
        metrics.EVENTS_REJECTED.labels(str(reason)).inc(count)
    metrics.BATCH_EVENTS.observe(batch.consumed)
    now = time.time()
    metrics.LAST_BATCH.set(now)
    if batch.events:
        newest = max(batch.events[i].occurred_at for i in range(0, len(batch.events), 97))
        newest = max(newest, batch.events[-1].occurred_at)
        metrics.NEWEST_EVENT.set(max(metrics.NEWEST_EVENT._value.get(), newest.timestamp()))
        step = max(1, len(batch.events) // 100)  # a sample keeps the histogram cheap
        topics = batch.topics if backfill_topic and len(batch.topics) == len(batch.events) else []
        for i in range(0, len(batch.events), step):
            if topics and topics[i] == backfill_topic:
                continue
            metrics.EVENT_DELAY.observe(max(0.0, now - batch.events[i].occurred_at.timestamp()))
    progress.consumed += batch.consumed
    progress.accepted += len(batch.events)
    progress.rejected += len(batch.rejections)
    progress.batches += 1


def unique_offsets(messages: list[SourceMessage]) -> list[SourceMessage]:
    """Drop messages at or below an offset already seen for their partition in this batch.

    After a consumer re-joins its group, one batch can hold records fetched before the
    rebalance and the same offsets fetched again; writing both would count them twice.
    """
    newest: dict[tuple[str, int], int] = {}
    kept = []
    for message in messages:
        key = (message.topic, message.partition)
        if message.offset > newest.get(key, -1):
            newest[key] = message.offset
            kept.append(message)
    return kept


def decode_by_topic(
    messages: list[SourceMessage], live: BatchDecoder, by_topic: Mapping[str, BatchDecoder]
) -> DecodedBatch:
    """Decode each message with its topic's decoder (`live` for topics not in `by_topic`).

    One decoder call when the batch comes from one topic, the common case; otherwise one per
    decoder, concatenated (order within each topic and partition is kept, as the sink needs).
    """
    groups: dict[int, tuple[BatchDecoder, list[SourceMessage]]] = {}
    for message in messages:
        decoder = by_topic.get(message.topic, live)
        groups.setdefault(id(decoder), (decoder, []))[1].append(message)
    if len(groups) <= 1:
        only = next(iter(groups.values()))[0] if groups else live
        return only.decode(messages)
    return concat([decoder.decode(group) for decoder, group in groups.values()])


def concat(parts: list[DecodedBatch]) -> DecodedBatch:
    """The batches one after the other (user keys and teams kept when every part has them)."""
    if len(parts) == 1:
        return parts[0]
    merged = DecodedBatch()
    for part in parts:
        merged.events.extend(part.events)
        merged.partitions.extend(part.partitions)
        merged.offsets.extend(part.offsets)
        merged.topics.extend(part.topics)
        merged.rejections.extend(part.rejections)
        merged.user_keys.extend(part.user_keys)
        merged.teams.extend(part.teams)
    if len(merged.user_keys) != len(merged.events):
        merged.user_keys = []
    if len(merged.teams) != len(merged.events):
        merged.teams = []
    return merged


async def write_or_die(future: Future[dict[str, int]], sink: BatchSink) -> dict[str, int]:
    """Await the sink's write; if it fails or we are cancelled mid-write, never let it ack."""
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        # Shutting down mid-insert: the stream would ack this batch as the body unwinds, so
        # first wait for the insert (a failing one gives up now); if it did not land, leave
        # without committing anything.
        sink.stop()
        try:
            future.result()
        except BaseException as exc:
            die(exc)
        raise
    except SinkStopped as exc:
        die(exc)
    except Exception as exc:  # a bug in decode/sink: still never ack an unwritten batch
        log.exception("unexpected error while writing a batch")
        die(exc)
    raise AssertionError("unreachable")


def die(exc: BaseException) -> None:
    log.error("stopping without committing the current batch (it will be replayed): %s", exc)
    logging.shutdown()
    os._exit(EXIT_SINK_FAILED)
