"""The lifecycle agent in the worker's faust app, and the one call that attaches it.

Per batch of activity records: apply (changelog, acked), emit milestones and lifecycle rows to
ClickHouse and Kafka (acked), confirm (changelog, acked), and only then faust acks the records.
Every write is retried inside the loop body; a worker stopped while a write still fails exits
with status 75 before the batch is acked. The flow: docs/lifecycle.md#where-it-runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import faust
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.config.settings import KafkaSettings, LifecycleSettings, Settings
from pipeline.kafka.producer import make_producer
from pipeline.kafka.security import client_kwargs
from pipeline.kafka.topics import (
    KafkaUnavailable,
    make_admin,
    partition_count,
    unreachable_message,
)
from pipeline.kafka.undecodable import EXIT_UNDECODABLE, UndecodableBatchError
from pipeline.lifecycle.activity import ActivityPublisher, UseRule
from pipeline.lifecycle.engine import LifecycleEngine, Record, decode_record
from pipeline.lifecycle.outputs import KafkaWrites, LifecycleOutputs
from pipeline.lifecycle.retry import LifecycleStopped, until_done
from pipeline.lifecycle.rules import KINDS, Rules
from pipeline.lifecycle.state import ChangelogState, read_changelog
from pipeline.observability import metrics
from pipeline.warehouse.connection import connect

log = logging.getLogger("uptake.lifecycle")

EXIT_WRITE_FAILED = 75  # as the ingest agent: nothing of the batch acked, it is replayed

T = TypeVar("T")


@dataclass(frozen=True)
class LifecycleConfig:
    """The lifecycle's rules and topics, derived from the settings."""

    rules: Rules
    watermark_lag_days: int
    activity_topic: str
    milestones_topic: str
    changelog_topic: str
    partitions: int

    @classmethod
    def from_settings(cls, lifecycle: LifecycleSettings, kafka: KafkaSettings) -> LifecycleConfig:
        """From the lifecycle part of the settings, with the topics named after the Kafka part's."""
        return cls(
            rules=Rules(
                lifecycle.activation_days, lifecycle.activation_window_days, lifecycle.churn_days
            ),
            watermark_lag_days=lifecycle.allowed_lateness_days,
            activity_topic=f"{kafka.events_topic}.activity",
            milestones_topic=f"{kafka.events_topic}.milestones",
            changelog_topic=f"{kafka.consumer_group}-lifecycle-changelog",
            partitions=kafka.topic_partitions,
        )


def ensure_lifecycle_topics(
    bootstrap: str, config: LifecycleConfig, security: Mapping[str, Any] | None = None
) -> None:
    """Create the activity, the (compacted) milestone and the (compacted) changelog topics.

    The changelog gets as many partitions as the activity topic has: a key's state lives in the
    partition its activity comes from.
    """
    admin = None
    try:
        admin = make_admin(bootstrap, security=security)
        compact = {"cleanup.policy": "compact"}
        wanted = {config.activity_topic: {}, config.milestones_topic: compact}
        existing = set(admin.list_topics())
        _create(admin, wanted, config.partitions, existing)
        if config.changelog_topic not in existing:
            partitions = (
                partition_count(bootstrap, config.activity_topic, security=security)
                or config.partitions
            )
            _create(admin, {config.changelog_topic: compact}, partitions, existing)
    except KafkaError as exc:
        raise KafkaUnavailable(f"{unreachable_message(bootstrap)} ({exc})") from exc
    finally:
        if admin is not None:
            admin.close()


def _create(
    admin: KafkaAdminClient, topics: dict[str, dict[str, str]], partitions: int, existing: set[str]
) -> None:
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=-1, topic_configs=configs)
        for name, configs in topics.items()
        if name not in existing
    ]
    if missing:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(missing, timeout_ms=30_000)


class Assignment(Protocol):
    """What the runner needs to know about the consumer group (faust's app in the worker)."""

    def generation(self) -> int:
        """A number that changes whenever a rebalance starts."""
        ...

    def settled(self) -> bool:
        """No rebalance in progress."""
        ...

    def owned(self) -> set[int]:
        """The partitions of the activity topic this worker owns now."""
        ...


class FaustAssignment:
    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    def generation(self) -> int:
        return int(self.app.rebalancing_count)

    def settled(self) -> bool:
        return not self.app.rebalancing

    def owned(self) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic}


class LifecycleRunner:
    """Processes one `take_events()` batch of activity records; never lets an error escape."""

    def __init__(
        self,
        engine: LifecycleEngine,
        store: ChangelogState,
        changelog_topic: str,
        read: Callable[[list[int]], dict[bytes, tuple[int, bytes]]],
        outputs: LifecycleOutputs,
        kafka: KafkaWrites,
        stopping: threading.Event,
        assignment: Assignment,
        *,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.changelog_topic = changelog_topic
        self.read = read
        self.outputs = outputs
        self.kafka = kafka
        self.stopping = stopping
        self.assignment = assignment
        self.on_batch = on_batch
        self.batches = 0
        self.records = 0
        self.milestones = 0
        self.last_report = 0.0
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uptake-lifecycle")
        for kind in KINDS:  # every series from the start, at 0, so rate() works at once
            for action in ("publish", "retract"):
                metrics.LIFECYCLE_MILESTONES.labels(kind, action)

    def forget_partitions(self) -> None:
        """The assignment changes: read each partition's state again before its next batch
        (another worker may have written it meanwhile)."""
        self.store.forget()

    async def process(self, events: Sequence[Any]) -> None:
        """Run one batch to completion before faust may ack it (even when cancelled)."""
        task = asyncio.ensure_future(self._process(events))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Shutting down mid-batch: the stream acks the batch as the body unwinds, so finish
            # it first; if it cannot finish, leave without acking.
            self.stopping.set()
            try:
                await task
            except BaseException as exc:
                _die(exc)
            raise
        except UndecodableBatchError as exc:  # the changelog holds a batch kafka-python cannot read
            log.error("%s", exc.batch.explain())
            logging.shutdown()
            os._exit(EXIT_UNDECODABLE)
        except Exception as exc:
            log.exception("lifecycle batch failed")
            _die(exc)
        if self.on_batch is not None:
            self.on_batch()

    async def _process(self, events: Sequence[Any]) -> None:
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for event in events:
            try:
                by_partition[event.message.partition].append(decode_record(event.value))
            except Exception as exc:  # only Uptake writes this topic: a bug, not input
                log.error("skipping an undecodable activity record: %s", exc)
        while True:
            # A rebalance (a broker restart, a worker joining) can happen under a batch in flight
            # (the app does not wait for streams to drain) and drops the state read so far. The
            # records are idempotent and the outbox lives in the state, so the batch is simply
            # applied again, to the state read again from the changelog.
            await self._until_settled()
            generation = self.assignment.generation()
            owned = self.assignment.owned()
            mine = {p: records for p, records in by_partition.items() if p in owned}
            await self._apply(mine)
            if self.assignment.generation() == generation and self.assignment.settled():
                metrics.LIFECYCLE_ACTIVITY_RECORDS.inc(sum(len(r) for r in mine.values()))
                return
            log.warning("a rebalance during a lifecycle batch: applying it again")
            self.store.forget()

    async def _until_settled(self) -> None:
        started = time.monotonic()
        warned = False
        while not self.assignment.settled():
            if self.stopping.is_set():
                raise LifecycleStopped("stopping while the consumer group rebalances")
            if not warned and time.monotonic() - started > 5:
                log.warning("a lifecycle batch waits for the consumer group's rebalance to end")
                warned = True
            await asyncio.sleep(0.1)

    async def _apply(self, by_partition: dict[int, list[Record]]) -> None:
        keys: list[bytes] = []
        unread = sorted(set(by_partition) - self.store.loaded)
        if unread:
            found = await self._in_writer(
                lambda: until_done(
                    lambda: self.read(unread), "reading the lifecycle changelog", self.stopping
                )
            )
            self.store.load(unread, found)
            for partition in unread:
                keys += self.engine.pending(partition)  # left by a crash: emit them again
        for partition, records in sorted(by_partition.items()):
            keys += self.engine.apply(partition, records)
        if not keys:
            return
        await self._flush_changelog()
        self.batches += 1
        emission = self.engine.emission(keys)
        if emission:
            await self._in_writer(
                lambda: until_done(
                    lambda: self.outputs.write(emission), "writing milestones", self.stopping
                )
            )
        self.engine.confirm(keys)
        await self._flush_changelog()
        self.records += sum(len(records) for records in by_partition.values())
        self.milestones += len(emission.milestones)
        for row in emission.milestones:
            action = "retract" if row.change.retracted else "publish"
            metrics.LIFECYCLE_MILESTONES.labels(row.change.kind, action).inc()
        now = time.monotonic()
        if now - self.last_report >= 5.0:
            self.last_report = now
            log.info(
                "lifecycle: %s activity records, %s milestone rows written (retractions "
                "included) in %s batches",
                f"{self.records:,}",
                f"{self.milestones:,}",
                f"{self.batches:,}",
            )

    async def _flush_changelog(self) -> None:
        records = self.store.take_queued()
        if records:
            topic = self.changelog_topic
            await self._in_writer(
                lambda: until_done(
                    lambda: self.kafka.send(topic, records),
                    "writing the lifecycle changelog",
                    self.stopping,
                )
            )

    async def _in_writer(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writer, call)

    def close(self) -> None:
        self.writer.shutdown(wait=True)
        self.outputs.close()
        self.kafka.close()


class WorkerProgress(Protocol):
    """The worker's progress record (pipeline/ingest/app.py): its idle watch reads last_batch."""

    last_batch: float


def attach(
    app: faust.App,
    settings: Settings,
    *,
    progress: WorkerProgress | None = None,
    uses: UseRule | None = None,
    wrap_outputs: Callable[[LifecycleOutputs], LifecycleOutputs] = lambda outputs: outputs,
) -> ActivityPublisher:
    """Add the lifecycle agent to the worker's app; returns the ingest's activity publisher.

    The ingest agent calls `publisher.publish(batch)` after the batch is written and before it
    is acked. A lifecycle batch counts as progress, so an idle-exiting worker waits for the
    lifecycle to catch up with the last ingest batch.
    """

    def progressed() -> None:
        if progress is not None and progress.last_batch != math.inf:  # inf: already stopping
            progress.last_batch = time.monotonic()

    config = LifecycleConfig.from_settings(settings.lifecycle, settings.kafka)
    security = client_kwargs(settings.kafka)  # UPTAKE_KAFKA_* (SASL/TLS) for every client below
    ensure_lifecycle_topics(settings.kafka.bootstrap, config, security)
    stopping = threading.Event()
    store = ChangelogState()
    compression = settings.kafka.compression
    kafka = KafkaWrites(
        lambda: make_producer(settings.kafka.bootstrap, compression=compression, **security)
    )
    outputs = wrap_outputs(
        LifecycleOutputs(lambda: connect(settings.warehouse.url), kafka, config.milestones_topic)
    )
    runner = LifecycleRunner(
        LifecycleEngine(config.rules, config.watermark_lag_days, store),
        store,
        config.changelog_topic,
        lambda partitions: read_changelog(
            settings.kafka.bootstrap, config.changelog_topic, partitions, security=security
        ),
        outputs,
        kafka,
        stopping,
        FaustAssignment(app, config.activity_topic),
        on_batch=progressed,
    )
    topic = app.topic(
        config.activity_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic, name="uptake.lifecycle")
    async def lifecycle(stream: Any) -> None:
        async for events in stream.take_events(
            settings.ingest.batch_max_messages, within=settings.ingest.flush_interval_s
        ):
            await runner.process(events)

    async def revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        runner.forget_partitions()

    async def stopping_soon(app: faust.App, **kwargs: Any) -> None:
        stopping.set()

    # faust's signal typing wants a `signal` keyword parameter that it passes in **kwargs.
    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(stopping_soon)  # type: ignore[arg-type]
    publisher = ActivityPublisher(
        lambda: make_producer(
            settings.kafka.bootstrap, compression=settings.kafka.compression, **security
        ),
        config.activity_topic,
        stopping,
        uses=uses,
    )
    log.debug("lifecycle attached: %s -> %s", config.activity_topic, config.milestones_topic)
    return publisher


def _die(exc: BaseException) -> None:
    log.error("stopping without acking the current lifecycle batch (it will be replayed): %s", exc)
    logging.shutdown()
    os._exit(EXIT_WRITE_FAILED)
