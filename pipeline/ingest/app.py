"""The faust worker, composed in one place: take a batch → decode → write → ack (commit).

    Kafka ──take_events(N, within)──► BatchDecoder ──► Pseudonymizer ──► TeamResolver
          ──► ClickHouseSink ──► ack

The agent reads the live events topic and the backfill topic (`uptake backfill`); messages of
the backfill topic are judged without the live lateness limit (pipeline/ops/backfill.py), everything
after decoding is the same.

Offsets move only after the write: `Stream.take_events()` acks a batch when the loop body
returns, and faust commits acked offsets. faust-streaming 0.15.3 also acks when the body
*raises* (the ack sits in a `finally`), so nothing may escape the body: a failing insert is
retried inside the sink (backpressure: no new batch is taken meanwhile), and when the worker
must stop while an insert still fails, it ends the process with `os._exit` before the stream
can ack — the batch is then replayed by the next worker and the sink's watermarks keep the
replay from writing anything twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import faust

from pipeline.config.settings import Settings
from pipeline.contract.decode import BatchDecoder, DecodedBatch, Limits, SourceMessage
from pipeline.contract.events import event_type_of
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.ingest.catalogs import WorkerCatalogs
from pipeline.ingest.limits import backfill_limits
from pipeline.kafka.security import faust_options
from pipeline.lifecycle.agent import attach as attach_lifecycle
from pipeline.lifecycle.outputs import LifecycleOutputs
from pipeline.observability import metrics
from pipeline.observability.consumer_lag import ConsumerLagSampler
from pipeline.observability.faust_sensor import UptakeMonitor
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


REVOKE_WAIT_S = 30.0  # how long a revoke waits for the batch being written (< rebalance timeout)
LAG_SAMPLE_INTERVAL_S = 5.0  # uptake_consumer_lag_messages: one ListOffsets request per sample


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
    merged = DecodedBatch()
    for decoder, group in groups.values():
        part = decoder.decode(group)
        merged.events.extend(part.events)
        merged.partitions.extend(part.partitions)
        merged.offsets.extend(part.offsets)
        merged.topics.extend(part.topics)
        merged.rejections.extend(part.rejections)
    return merged


def kafka_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


def build_app(
    settings: Settings,
    sink: BatchSink,
    *,
    progress: Progress | None = None,
    exit_when_idle_s: float | None = None,
    on_batch: Callable[[DecodedBatch, float, float], None] | None = None,
    wrap_lifecycle_outputs: Callable[[LifecycleOutputs], LifecycleOutputs] = lambda o: o,
    catalogs: WorkerCatalogs | None = None,
) -> faust.App:
    """The faust app: decode → enrich → sink for every batch of the events and backfill topics.

    Without `catalogs` every event counts for the team it reports (else 'unowned').
    """
    app = faust.App(
        settings.consumer_group,
        broker=kafka_url(settings.kafka_bootstrap),
        web_enabled=False,
        store="memory://",
        datadir=str(settings.home / "faust"),  # faust's own folder, never the working directory
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # Fetch big chunks: per-message overhead in faust dominates small fetches.
        consumer_max_fetch_size=16 * 1024 * 1024,
        broker_max_poll_records=settings.batch_max_messages,
        stream_buffer_maxsize=max(4096, 2 * settings.batch_max_messages),
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        # On stop, faust would wait for in-flight events to be acked; a batch whose insert keeps
        # failing never is. Cancel instead: _write_or_die settles the batch safely.
        stream_wait_empty=False,
        # A worker that died without leaving the group holds its partitions until its session
        # expires: keep that short so a restarted worker resumes within seconds.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
        producer_compression_type=(
            None if settings.kafka_compression == "none" else settings.kafka_compression
        ),
        # faust's default sensor plus Uptake's metrics for commits, rebalances, full buffers.
        Monitor=UptakeMonitor,
        **faust_options(settings),  # UPTAKE_KAFKA_SECURITY_PROTOCOL & co.
    )
    topic = app.topic(
        settings.events_topic,
        settings.backfill_topic,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
    )
    decoder = BatchDecoder(
        Limits(
            max_message_bytes=settings.max_message_bytes,
            max_future_skew=timedelta(seconds=settings.max_future_skew_s),
            max_lateness=timedelta(seconds=settings.max_lateness_s),
        )
    )
    decoders = {settings.backfill_topic: BatchDecoder(backfill_limits(settings))}
    pseudonyms = Pseudonymizer.from_secret_or_file(
        settings.pseudonym_key.reveal(), settings.pseudonym_key_file
    )
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uptake-sink")
    if catalogs is not None:
        catalogs.start(writer.submit)  # catalog rows are written on the sink's thread
    progress = progress or Progress()
    progress.last_batch = time.monotonic()
    # Adoption lifecycle (pipeline/lifecycle): its own agent, fed each written batch's activity.
    lifecycle = (
        attach_lifecycle(app, settings, progress=progress, wrap_outputs=wrap_lifecycle_outputs)
        if settings.lifecycle_enabled
        else None
    )

    @app.agent(topic, name="uptake.ingest")
    async def ingest(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_max_messages, within=settings.flush_interval_s
        ):
            messages = unique_offsets(
                [
                    SourceMessage(
                        e.message.topic,
                        e.message.partition,
                        e.message.offset,
                        e.value,
                        e.message.headers,  # CloudEvents binary mode: ce_* headers
                    )
                    for e in events
                ]
            )
            started = time.time()
            progress.in_flight = True
            batch = decode_by_topic(messages, decoder, decoders)
            batch.user_keys = pseudonyms.keys([e.user for e in batch.events])
            if catalogs is not None:
                catalogs.enrich(batch)  # resolved teams: needs the user keys above
            written = await _write_or_die(writer.submit(sink.write, batch), sink)
            if lifecycle is not None:  # the batch's activity, published before faust acks it
                await _write_or_die(writer.submit(lifecycle.publish, batch), sink)
            progress.in_flight = False
            record(
                batch,
                progress,
                messages=len(messages),
                written=written,
                dead_lettered=sink.dead_letters is not None,
                backfill_topic=settings.backfill_topic,
            )
            if on_batch is not None:  # benchmarks and tests observe batches here
                on_batch(batch, started, time.time())
            progress.last_batch = time.monotonic()
            if progress.last_batch - progress.last_report >= 5.0:
                progress.last_report = progress.last_batch
                log.info("%s", progress.line())

    @app.timer(0.5)
    async def watch_idle() -> None:
        if exit_when_idle_s is None or progress.in_flight:
            return
        idle = time.monotonic() - progress.last_batch
        if idle < exit_when_idle_s:
            return
        # Idle means caught up, not merely quiet: a restarted worker waits for its group to
        # rebalance (up to the session timeout) before it gets partitions and batches.
        lags = await lag.sample()
        if any(lags.values()) or (not lags and idle < 6 * exit_when_idle_s):
            return
        if idle >= exit_when_idle_s:
            log.info("no new events for %.0fs: stopping", exit_when_idle_s)
            progress.last_batch = float("inf")  # signal once
            os.kill(os.getpid(), signal.SIGTERM)

    lag = ConsumerLagSampler(lambda: app.consumer, settings.events_topic)

    @app.timer(LAG_SAMPLE_INTERVAL_S)
    async def sample_consumer_lag() -> None:
        await lag.sample()

    async def forget(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        # Let a batch being written land before the partitions go: the group waits for every
        # member to rejoin, so the next owner reads the watermarks after this write and skips
        # it (docs/guarantees.md, scale-out). Bounded: a write still failing then is abandoned
        # uncommitted, as at shutdown.
        deadline = time.monotonic() + REVOKE_WAIT_S
        while progress.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # Another worker may write these partitions next: re-read watermarks when they return.
        sink.forget_watermarks()

    async def stopping(app: faust.App, **kwargs: Any) -> None:
        sink.stop()
        if catalogs is not None:
            catalogs.stop()

    # faust's signal typing wants a `signal` keyword parameter that it passes in **kwargs.
    app.on_partitions_revoked.connect(forget)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(stopping)  # type: ignore[arg-type]
    return app


async def _write_or_die(future: Future[dict[str, int]], sink: BatchSink) -> dict[str, int]:
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
            _die(exc)
        raise
    except SinkStopped as exc:
        _die(exc)
    except Exception as exc:  # a bug in decode/sink: still never ack an unwritten batch
        log.exception("unexpected error while writing a batch")
        _die(exc)
    raise AssertionError("unreachable")


def _die(exc: BaseException) -> None:
    log.error("stopping without committing the current batch (it will be replayed): %s", exc)
    logging.shutdown()
    os._exit(EXIT_SINK_FAILED)
