"""The faust worker app: an agent runs each batch of the events and backfill topics through the
ingest chain (pipeline/ingest/chain.py) and acks the batch's offsets — letting faust commit them —
only after the chain did. The batches come in bulk from faust's consumer (pipeline/kafka/bulk.py),
bounded in messages, bytes and time. Also here: the rebalance wait for an insert in flight, and
the idle watch.

Why nothing may escape the loop body: docs/guarantees.md ("How").
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from pipeline.config.settings import Settings
from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.enrich.key_fingerprint import pseudonymizer_for
from pipeline.ingest.catalogs import WorkerCatalogs
from pipeline.ingest.chain import Decode, DedupeOffsets, IngestChain, Pseudonymise, ResolveTeams
from pipeline.ingest.steps import (
    BatchSink,
    Progress,
    write_or_die,
)
from pipeline.kafka.bulk import BulkConsumer, BulkIntake, RecordBatcher
from pipeline.kafka.client import faust_app
from pipeline.lifecycle.activity import catalog_counts, catalog_use
from pipeline.lifecycle.agent import attach as attach_lifecycle
from pipeline.lifecycle.outputs import LifecycleOutputs
from pipeline.observability.consumer_lag import ConsumerLagSampler

log = logging.getLogger("uptake.worker")


REVOKE_WAIT_S = 30.0  # how long a revoke waits for the batch being written (< rebalance timeout)
LAG_SAMPLE_INTERVAL_S = 5.0  # uptake_consumer_lag_messages: one ListOffsets request per sample


def build_app(
    settings: Settings,
    sink: BatchSink,
    *,
    progress: Progress | None = None,
    exit_when_idle_s: float | None = None,
    on_batch: Callable[[DecodedBatch, float, float], None] | None = None,
    wrap_lifecycle_outputs: Callable[[LifecycleOutputs], LifecycleOutputs] = lambda o: o,
    catalogs: WorkerCatalogs | None = None,
    wrap_step: Callable[[str, Any], Any] = lambda name, step: step,
) -> faust.App:
    """The faust app: decode → enrich → sink for every batch of the events and backfill topics.

    A batch closes at UPTAKE_BATCH_MAX_MESSAGES messages or UPTAKE_BATCH_MAX_BYTES bytes,
    whichever comes first, or UPTAKE_FLUSH_INTERVAL_S after its first message.

    Without `catalogs` every event counts for the team it reports (else 'unowned').
    `wrap_step(name, step)` may wrap the chain's steps before the write (the fault seam).
    """
    ingest_settings = settings.ingest
    batcher = RecordBatcher(
        ingest_settings.batch_max_messages,
        ingest_settings.batch_max_bytes,
        ingest_settings.flush_interval_s,
    )
    app = faust_app(
        settings.kafka,
        undecodable_exit_delay_s=ingest_settings.undecodable_exit_delay_s,
        bulk=BulkIntake(
            frozenset({settings.kafka.events_topic, settings.kafka.backfill_topic}), batcher
        ),
        web_enabled=False,
        store="memory://",
        datadir=str(settings.home / "faust"),  # faust's own folder, never the working directory
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # Bounded fetch-ahead per partition (memory: docs/benchmarks.md, "The bounds").
        consumer_max_fetch_size=settings.ingest.fetch_max_bytes,
        broker_max_poll_records=settings.ingest.batch_max_messages,
        stream_buffer_maxsize=settings.ingest.stream_buffer(),
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        topic_partitions=settings.kafka.topic_partitions,
        topic_replication_factor=1,
        # On stop, faust would wait for in-flight events to be acked; a batch whose insert keeps
        # failing never is. Cancel instead: _write_or_die settles the batch safely.
        stream_wait_empty=False,
        # A worker that died without leaving the group holds its partitions until its session
        # expires: keep that short so a restarted worker resumes within seconds.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
    )
    topic = app.topic(
        settings.kafka.events_topic,
        settings.kafka.backfill_topic,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
    )
    decoder = BatchDecoder(settings.ingest.limits())
    decoders = {settings.kafka.backfill_topic: BatchDecoder(settings.ingest.limits(backfill=True))}
    pseudonyms = pseudonymizer_for(settings)
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uptake-sink")
    if catalogs is not None:
        catalogs.start(writer.submit)  # catalog rows are written on the sink's thread
    progress = progress or Progress()
    progress.last_batch = time.monotonic()
    # Adoption lifecycle (pipeline/lifecycle): its own agent, fed each written batch's activity.
    # Activity is use as the capability catalog defines it, when the worker has the catalog.
    uses = catalog_use(lambda: catalogs.capabilities) if catalogs is not None else None
    counts = catalog_counts(lambda: catalogs.capabilities) if catalogs is not None else None
    lifecycle = (
        attach_lifecycle(
            app,
            settings,
            progress=progress,
            uses=uses,
            wrap_outputs=wrap_lifecycle_outputs,
            counts=counts,
        )
        if settings.lifecycle.enabled
        else None
    )

    async def write(batch: DecodedBatch) -> dict[str, int]:
        return await write_or_die(writer.submit(sink.write, batch), sink)

    async def publish_activity(batch: DecodedBatch) -> dict[str, int]:
        assert lifecycle is not None
        await write_or_die(writer.submit(lifecycle.publish, batch), sink)
        return {}

    chain = IngestChain(
        DedupeOffsets(),
        wrap_step("decode", Decode(decoder, decoders)),
        wrap_step("pseudonymise", Pseudonymise(pseudonyms)),
        wrap_step("resolve_teams", ResolveTeams(catalogs)) if catalogs is not None else None,
        write,
        publish_activity if lifecycle is not None else None,
        progress,
        dead_lettered=sink.dead_letters is not None,
        backfill_topic=settings.kafka.backfill_topic,
    )

    @app.agent(topic, name="uptake.ingest")
    async def ingest(stream: Any) -> None:
        # The agent subscribes the group to the topics; their records reach `batcher` in bulk,
        # never this stream (pipeline/kafka/bulk.py).
        consumer = app.consumer
        assert isinstance(consumer, BulkConsumer)
        while True:
            records = await batcher.take()
            if not records:
                continue
            started = time.time()
            progress.in_flight = True  # no await since the take: a revoke waits for this batch
            batch = await chain(
                [
                    # CloudEvents binary mode reads the ce_* headers.
                    SourceMessage(r.topic, r.partition, r.offset, r.value, r.headers)
                    for r in records
                ]
            )
            consumer.ack_records(records)  # faust commits them: only after the write
            progress.in_flight = False
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

    lag = ConsumerLagSampler(lambda: app.consumer, settings.kafka.events_topic)

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
