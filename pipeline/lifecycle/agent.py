"""The lifecycle agent in the worker's faust app, and the one call that attaches it.

    ingest batch ──written──► ActivityPublisher ──► <events_topic>.activity (key team x capability)
                                                            │
                  faust agent `uptake.lifecycle` ◄──────────┘   take_events(N, within)
                    1. engine.apply      → table state + outbox  ──► changelog (acked)
                    2. engine.emission   → adoption_milestones, adoption_lifecycle (ClickHouse)
                                           and <events_topic>.milestones (acked)
                    3. engine.confirm    → outbox emptied        ──► changelog (acked)
                    4. return            → faust acks the records

The state lives in a faust Table (`lifecycle`, memory store) whose changelog topic faust
recovers on start and after a rebalance. The agent writes the table's changelog itself, with
kafka-python and an explicit partition — the activity record's — and waits for the
acknowledgement: faust's own `table[key] = value` finds the partition through the current
stream event, which `take_events()` does not reliably provide, and sends without waiting, so a
crash after the commit could lose state. Every write is retried inside the loop body
(faust-streaming 0.15.3 acks a `take_events()` batch even when the body raises); a worker
stopped while a write still fails exits with status 75 before the batch can be acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import faust
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.lifecycle.activity import ActivityPublisher
from pipeline.lifecycle.engine import LifecycleEngine, Record, decode_record
from pipeline.lifecycle.outputs import KafkaWrites, LifecycleOutputs
from pipeline.lifecycle.retry import LifecycleStopped, until_done
from pipeline.lifecycle.rules import Rules
from pipeline.settings import Settings
from pipeline.simulate.produce import make_producer
from pipeline.topics import KafkaUnavailable, partition_count, unreachable_message
from pipeline.warehouse.connection import connect

log = logging.getLogger("uptake.lifecycle")

EXIT_WRITE_FAILED = 75  # as the ingest agent: nothing of the batch acked, it is replayed
TABLE_NAME = "lifecycle"
KILL_POINTS = {"lifecycle_after_state": "after_state", "lifecycle_after_emit": "after_emit"}

T = TypeVar("T")


@dataclass(frozen=True)
class LifecycleConfig:
    """The lifecycle's rules and topics, derived from the settings."""

    rules: Rules
    watermark_lag_days: int
    activity_topic: str
    milestones_topic: str
    partitions: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LifecycleConfig:
        return cls(
            rules=Rules(
                settings.activation_days, settings.activation_window_days, settings.churn_days
            ),
            watermark_lag_days=settings.lifecycle_allowed_lateness_days,
            activity_topic=f"{settings.events_topic}.activity",
            milestones_topic=f"{settings.events_topic}.milestones",
            partitions=settings.topic_partitions,
        )


def ensure_lifecycle_topics(bootstrap: str, config: LifecycleConfig) -> int:
    """Create the activity and (compacted) milestone topics; returns the activity partitions."""
    admin = None
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="uptake-admin")
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=config.partitions, replication_factor=-1, topic_configs=c)
            for name, c in (
                (config.activity_topic, {}),
                (config.milestones_topic, {"cleanup.policy": "compact"}),
            )
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=30_000)
    except KafkaError as exc:
        raise KafkaUnavailable(f"{unreachable_message(bootstrap)} ({exc})") from exc
    finally:
        if admin is not None:
            admin.close()
    # The table's changelog must have as many partitions as the topic its keys come from.
    return partition_count(bootstrap, config.activity_topic) or config.partitions


class TableStore:
    """The engine's StateStore on a faust table: reads and writes the table's data directly and
    queues each write for the changelog, which `flush_changelog` sends and waits for."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._queued: dict[bytes, int] = {}  # key -> partition, written since the last flush

    def get(self, key: bytes) -> bytes | None:
        value = self.table.data.get(key)
        return bytes(value) if value is not None else None

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.table.data[key] = value
        self._queued[key] = partition

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return list(self.table.data.items())

    def take_queued(self) -> list[tuple[int, bytes, bytes]]:
        """The changelog records to send: the current value of every key written since."""
        queued, self._queued = self._queued, {}
        values = [(partition, key, self.table.data.get(key)) for key, partition in queued.items()]
        return [(partition, key, bytes(value)) for partition, key, value in values if value]


class Assignment(Protocol):
    """What the runner needs to know about the consumer group (faust's app in the worker)."""

    def generation(self) -> int:
        """A number that changes whenever a rebalance starts."""
        ...

    def settled(self) -> bool:
        """No rebalance in progress: the table holds what its changelog recovered."""
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
        store: TableStore,
        changelog_topic: Callable[[], str],
        outputs: LifecycleOutputs,
        kafka: KafkaWrites,
        stopping: threading.Event,
        assignment: Assignment,
        *,
        on_batch: Callable[[], None] | None = None,
        kill_at: str = "",
        kill_after_batches: int = 0,
    ) -> None:
        self.engine = engine
        self.store = store
        self.changelog_topic = changelog_topic
        self.outputs = outputs
        self.kafka = kafka
        self.stopping = stopping
        self.assignment = assignment
        self.on_batch = on_batch
        self.kill_at = kill_at
        self.kill_after_batches = kill_after_batches
        self.batches = 0
        self.records = 0
        self.milestones = 0
        self.last_report = 0.0
        self.checked: set[int] = set()  # partitions whose leftover outboxes were looked for
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uptake-lifecycle")

    def forget_partitions(self) -> None:
        """After a rebalance, look for leftover outboxes again when a partition comes back."""
        self.checked.clear()

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
            # A rebalance (a broker restart, a worker joining) makes faust recover the table from
            # its changelog, possibly under a batch in flight (the app does not wait for streams
            # to drain): the batch's reads and writes may then mix two states. The records are
            # idempotent and the outbox lives in the state, so the batch is simply applied again
            # to the recovered state.
            await self._until_settled()
            generation = self.assignment.generation()
            owned = self.assignment.owned()
            await self._apply({p: records for p, records in by_partition.items() if p in owned})
            if self.assignment.generation() == generation and self.assignment.settled():
                return
            log.warning("a rebalance during a lifecycle batch: applying it again")
            self.checked.clear()

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
        for partition, records in sorted(by_partition.items()):
            if partition not in self.checked:
                keys += self.engine.pending(partition)  # left by a crash: emit them again
                self.checked.add(partition)
            keys += self.engine.apply(partition, records)
        if not keys:
            return
        await self._flush_changelog()
        self.batches += 1
        self._maybe_kill("after_state")
        emission = self.engine.emission(keys)
        if emission:
            await self._in_writer(
                lambda: until_done(
                    lambda: self.outputs.write(emission), "writing milestones", self.stopping
                )
            )
        self._maybe_kill("after_emit")
        self.engine.confirm(keys)
        await self._flush_changelog()
        self.records += sum(len(records) for records in by_partition.values())
        self.milestones += len(emission.milestones)
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
            topic = self.changelog_topic()
            await self._in_writer(
                lambda: until_done(
                    lambda: self.kafka.send(topic, records),
                    "writing the lifecycle changelog",
                    self.stopping,
                )
            )

    async def _in_writer(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writer, call)

    def _maybe_kill(self, point: str) -> None:
        if self.kill_at == point and self.batches > self.kill_after_batches:
            log.warning("chaos: SIGKILL in lifecycle batch %d, %s", self.batches, point)
            for handler in logging.getLogger("uptake").handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self.writer.shutdown(wait=True)
        self.outputs.close()
        self.kafka.close()


class WorkerProgress(Protocol):
    """The worker's progress record (pipeline/worker/app.py): its idle watch reads last_batch."""

    last_batch: float


def attach(
    app: faust.App, settings: Settings, *, progress: WorkerProgress | None = None
) -> ActivityPublisher:
    """Add the lifecycle table and agent to the worker's app; returns the ingest's publisher.

    The ingest agent calls `publisher.publish(batch)` after the batch is written and before it
    is acked. A lifecycle batch counts as progress, so an idle-exiting worker waits for the
    lifecycle to catch up with the last ingest batch.
    """

    def progressed() -> None:
        if progress is not None and progress.last_batch != math.inf:  # inf: already stopping
            progress.last_batch = time.monotonic()

    config = LifecycleConfig.from_settings(settings)
    partitions = ensure_lifecycle_topics(settings.kafka_bootstrap, config)
    stopping = threading.Event()
    table = app.Table(
        TABLE_NAME,
        partitions=partitions,
        key_type=bytes,  # bytes types make faust's changelog serializers "raw"
        value_type=bytes,
        help="adoption lifecycle state per team x capability (pipeline/lifecycle/engine.py)",
    )
    store = TableStore(table)
    kafka = KafkaWrites(lambda: make_producer(settings.kafka_bootstrap))
    outputs = LifecycleOutputs(
        lambda: connect(settings.warehouse_url), kafka, config.milestones_topic
    )
    runner = LifecycleRunner(
        LifecycleEngine(config.rules, config.watermark_lag_days, store),
        store,
        lambda: str(table.changelog_topic.get_topic_name()),
        outputs,
        kafka,
        stopping,
        FaustAssignment(app, config.activity_topic),
        on_batch=progressed,
        kill_at=KILL_POINTS.get(settings.chaos_kill_at, ""),
        kill_after_batches=settings.chaos_kill_after_batches,
    )
    topic = app.topic(
        config.activity_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )

    @app.agent(topic, name="uptake.lifecycle")
    async def lifecycle(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_max_messages, within=settings.flush_interval_s
        ):
            await runner.process(events)

    async def revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        runner.forget_partitions()

    source_topics = {settings.events_topic, settings.backfill_topic, config.activity_topic}

    async def recovered(app: faust.App, **kwargs: Any) -> None:
        await commit_start_offsets(
            app, settings.kafka_bootstrap, settings.consumer_group, source_topics
        )

    async def stopping_soon(app: faust.App, **kwargs: Any) -> None:
        stopping.set()

    # faust's signal typing wants a `signal` keyword parameter that it passes in **kwargs.
    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
    app.on_rebalance_complete.connect(recovered)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(stopping_soon)  # type: ignore[arg-type]
    publisher = ActivityPublisher(
        lambda: make_producer(settings.kafka_bootstrap), config.activity_topic, stopping
    )
    log.debug("lifecycle attached: %s -> %s", config.activity_topic, config.milestones_topic)
    return publisher


async def commit_start_offsets(
    app: faust.App, bootstrap: str, group: str, topics: set[str]
) -> None:
    """Give every assigned source partition a committed offset before faust seeks to them.

    faust-streaming 0.15.3 with a table: while the table recovers from its changelog, aiokafka
    also fetches the (paused) source partitions and faust drops those records; after recovery
    faust seeks each source partition back to its committed offset — but a partition with no
    committed offset yet keeps its advanced position, so the records fetched during recovery
    are skipped until the next restart (seen: a worker restarted after a SIGKILL that never
    consumed two of four partitions). `on_rebalance_complete` runs after the recovery and
    before that seek: committing the earliest offset of such a partition (what
    `consumer_auto_offset_reset="earliest"` starts from anyway) makes the seek rewind it.
    """
    consumer = app.consumer
    assigned = [tp for tp in consumer.assignment() if tp.topic in topics]
    if not assigned:
        return
    try:
        loop = asyncio.get_running_loop()
        committed = await loop.run_in_executor(None, _committed_partitions, bootstrap, group)
        missing = [tp for tp in assigned if (tp.topic, tp.partition) not in committed]
        if not missing:
            return
        earliest = await consumer.earliest_offsets(*missing)
        offsets = {tp: off for tp, off in earliest.items() if off is not None and off >= 0}
        if offsets:
            # faust has no public call to commit given offsets; _commit is the driver's.
            await consumer._commit(offsets)  # type: ignore[attr-defined]
            log.info("committed the start offset of %d partitions before the seek", len(offsets))
    except Exception as exc:  # the workaround must never take the worker down
        log.warning("could not commit start offsets after the rebalance: %s", exc)


def _committed_partitions(bootstrap: str, group: str) -> set[tuple[str, int]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="uptake-admin")
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
        return {(tp.topic, tp.partition) for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        admin.close()


def _die(exc: BaseException) -> None:
    log.error("stopping without acking the current lifecycle batch (it will be replayed): %s", exc)
    logging.shutdown()
    os._exit(EXIT_WRITE_FAILED)
