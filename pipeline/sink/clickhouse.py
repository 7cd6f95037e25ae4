"""The ClickHouse sink: one column-oriented insert per table per batch, each row written once.

`write(batch)` blocks until every table acknowledged its insert. A failed insert is retried with
backoff (the identical block, same deduplication token) until it succeeds or `stop()` was called;
then it raises `SinkStopped` and the caller must exit without committing offsets. Rows at or
below a partition's offset watermark, and event ids written recently (`RecentIds`), are skipped;
rejections go to the dead-letter topic right before their insert. Not thread-safe: one thread
calls `write`; `stop()` may be called from any. Why: docs/guarantees.md, "How" (points 2-4).
Rows of `events` carry the body's fields as typed columns too (TYPED_COLUMNS, migration 0016),
taken from the decoded structs, so the materialized views parse no JSON on the sink's inserts.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from pipeline.catalog.teams import UNOWNED
from pipeline.contract.decode import DecodedBatch, Rejection
from pipeline.contract.events import (
    EVENT_CLASSES,
    ApiCall,
    Deploy,
    Envelope,
    Feedback,
    Incident,
    ModelTraining,
)
from pipeline.observability import metrics
from pipeline.sink.dead_letters import DeadLetterPublisher
from pipeline.sink.dedup import DEFAULT_CAPACITY, RecentIds
from pipeline.warehouse.connection import Warehouse

log = logging.getLogger(__name__)
T = TypeVar("T")

_TAG: dict[type[Envelope], str] = {cls: tag for tag, cls in EVENT_CLASSES.items()}


class SinkStopped(RuntimeError):
    """The sink was stopped while an insert was still failing; nothing of the batch is safe."""


@dataclass(frozen=True)
class RetryPolicy:
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    factor: float = 2.0


def retry_until_stopped(
    call: Callable[[], T],
    what: str,
    stopping: threading.Event,
    policy: RetryPolicy | None = None,
    *,
    on_failure: Callable[[Exception], None] | None = None,
    stopped: type[SinkStopped] = SinkStopped,
    logger: logging.Logger = log,
) -> T:
    """Call `call` until it returns, backing off exponentially between failures.

    `on_failure` sees every failure first. Once `stopping` is set and the call still fails,
    raises `stopped` ("<what> failed: <error>"): the caller must not acknowledge its batch.
    """
    policy = policy or RetryPolicy()
    delay = policy.first_delay_s
    while True:
        try:
            return call()
        except Exception as exc:
            if on_failure is not None:
                on_failure(exc)
            if stopping.is_set():
                raise stopped(f"{what} failed: {exc}") from exc
            logger.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            if stopping.wait(delay):
                raise stopped(f"{what} failed: {exc}") from exc
            delay = min(delay * policy.factor, policy.max_delay_s)


@dataclass(frozen=True)
class Rows:
    """A table's share of a batch: columns plus each row's source coordinates."""

    columns: list[list[Any]]
    topics: list[str]
    partitions: list[int]
    offsets: list[int]


@dataclass(frozen=True)
class TableWriter:
    """How one table's rows are built from a batch.

    `wire_types` are the types the block is sent as. They may be cheaper to encode than the
    table's own (String for LowCardinality(String), Int64 ticks for DateTime64): ClickHouse
    converts the block on insert, and the Python side skips building dictionaries.
    """

    table: str
    columns: tuple[tuple[str, str], ...]  # (name, wire type)
    build: Callable[[DecodedBatch], Rows]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def wire_types(self) -> list[str]:
        return [wire for _, wire in self.columns]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _ticks(moment: datetime) -> int:
    """Whole milliseconds since the epoch, truncated like ClickHouse's parse of the same text."""
    return (moment - _EPOCH) // _MILLISECOND


# The typed columns of `events` (migration 0016), in the order the sink sends them, with their
# wire types. Each holds the body field of its name for the types that have it, else `_EMPTY`'s
# value: the same values the columns' DEFAULT expressions compute from `data`.
TYPED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("api", "String"),
    ("status_code", "UInt16"),
    ("latency_ms", "Float64"),
    ("outcome_name", "String"),
    ("outcome_decision", "String"),
    ("outcome_value", "Float64"),
    ("status", "String"),
    ("environment", "String"),
    ("deployment_id", "String"),
    ("started_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("commit_times", "Array(DateTime64(3, 'UTC'))"),
    ("run_id", "String"),
    ("model", "String"),
    ("duration_s", "Float64"),
    ("gpu_hours", "Float64"),
    ("registered_model", "String"),
    ("incident_id", "String"),
    ("severity", "String"),
    ("opened_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("resolved_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("caused_by_deployment", "String"),
    ("scale", "String"),
    ("score", "UInt8"),
    ("comment", "String"),
)
_EMPTY: dict[str, Any] = {
    "status_code": 0,
    "latency_ms": 0.0,
    "outcome_value": 0.0,
    "started_at": None,
    "commit_times": (),
    "duration_s": 0.0,
    "gpu_hours": 0.0,
    "opened_at": None,
    "resolved_at": None,
    "score": 0,
}


def _typed_columns(events: Sequence[Envelope]) -> list[list[Any]]:
    """The typed columns of `events`, in TYPED_COLUMNS' order: one pass over the batch, each
    column starting as its empty value and filled where the event's type has the field."""
    n = len(events)
    c = {name: [_EMPTY.get(name, "")] * n for name, _ in TYPED_COLUMNS}
    api, status_code, latency = c["api"], c["status_code"], c["latency_ms"]
    for i, event in enumerate(events):
        d = event.data  # type: ignore[attr-defined]
        kind = type(d)
        if kind is ApiCall:
            api[i] = d.api
            status_code[i] = d.status_code
            latency[i] = d.latency_ms
            if d.outcome is not None:
                c["outcome_name"][i] = d.outcome.name
                c["outcome_decision"][i] = d.outcome.decision or ""
                c["outcome_value"][i] = d.outcome.value
        elif kind is Deploy:
            c["status"][i] = d.status
            c["environment"][i] = d.environment
            c["deployment_id"][i] = d.deployment_id
            c["started_at"][i] = None if d.started_at is None else _ticks(d.started_at)
            c["commit_times"][i] = [_ticks(commit.committed_at) for commit in d.commits]
        elif kind is ModelTraining:
            c["status"][i] = d.status
            c["run_id"][i] = d.run_id
            c["model"][i] = d.model
            c["duration_s"][i] = d.duration_s
            c["gpu_hours"][i] = d.gpu_hours
            c["registered_model"][i] = d.registered_model or ""
        elif kind is Incident:
            c["status"][i] = d.status
            c["incident_id"][i] = d.incident_id
            c["severity"][i] = d.severity
            c["opened_at"][i] = _ticks(d.opened_at)
            c["resolved_at"][i] = None if d.resolved_at is None else _ticks(d.resolved_at)
            c["caused_by_deployment"][i] = d.caused_by_deployment or ""
        elif kind is Feedback:
            c["scale"][i] = d.scale
            c["score"][i] = d.score
            c["comment"][i] = d.comment or ""
    return list(c.values())


def _user_keys(batch: DecodedBatch) -> list[str]:
    """Pseudonymous keys from the enrich step; a raw identifier is never written."""
    if len(batch.user_keys) != len(batch.events):
        if any(e.user for e in batch.events):
            raise ValueError("the batch was not enriched: user keys are missing")
        return [""] * len(batch.events)
    return batch.user_keys


def _event_rows(batch: DecodedBatch) -> Rows:
    events = batch.events
    encode = msgspec.json.encode
    reported = [e.team or "" for e in events]
    # The team the enrich step resolved (pipeline/enrich/teams.py); a batch that was not
    # enriched is resolved against an empty catalog: its own team, else unowned.
    teams = batch.teams
    if len(teams) != len(events):
        teams = [team or UNOWNED for team in reported]
    columns: list[list[Any]] = [
        [e.event_id for e in events],
        [_TAG[type(e)] for e in events],
        [e.schema_version for e in events],
        [_millis(e.occurred_at) for e in events],
        [e.source for e in events],
        teams,
        reported,
        [e.service or "" for e in events],
        _user_keys(batch),
        [e.capability for e in events],
        [encode(e.data) for e in events],  # type: ignore[attr-defined]
        batch.topics,
        batch.partitions,
        batch.offsets,
        *_typed_columns(events),
    ]
    return Rows(columns, batch.topics, batch.partitions, batch.offsets)


EVENTS = TableWriter(
    "events",
    (
        ("event_id", "UUID"),
        ("event_type", "String"),
        ("schema_version", "UInt16"),
        ("occurred_at", "DateTime64(3, 'UTC')"),
        ("source", "String"),
        ("team", "String"),
        ("reported_team", "String"),
        ("service", "String"),
        ("user_key", "String"),
        ("capability", "String"),
        ("data", "String"),
        ("_topic", "String"),
        ("_partition", "UInt32"),
        ("_offset", "UInt64"),
        *TYPED_COLUMNS,
    ),
    _event_rows,
)


def _rejection_rows(batch: DecodedBatch) -> Rows:
    rejected = batch.rejections
    topics = [r.topic for r in rejected]
    partitions = [r.partition for r in rejected]
    offsets = [r.offset for r in rejected]
    columns: list[list[Any]] = [
        [str(r.reason) for r in rejected],
        [r.detail for r in rejected],
        [r.event_type for r in rejected],
        [r.raw for r in rejected],
        topics,
        partitions,
        offsets,
        [r.index for r in rejected],
    ]
    return Rows(columns, topics, partitions, offsets)


REJECTED = TableWriter(
    "rejected_events",
    (
        ("reason", "String"),
        ("detail", "String"),
        ("event_type", "String"),
        ("raw", "String"),
        ("_topic", "String"),
        ("_partition", "UInt32"),
        ("_offset", "UInt64"),
        ("_index", "UInt32"),
    ),
    _rejection_rows,
)

DEFAULT_TABLES = (EVENTS, REJECTED)


class ClickHouseSink:
    """Writes decoded batches to the warehouse tables; see the module docstring for the contract."""

    def __init__(
        self,
        warehouse: Warehouse,
        tables: Sequence[TableWriter] = DEFAULT_TABLES,
        retry: RetryPolicy | None = None,
        dead_letters: DeadLetterPublisher | None = None,
        recent_ids: int = DEFAULT_CAPACITY,
    ) -> None:
        self.warehouse = warehouse
        self.recent_ids = RecentIds(recent_ids)
        self.unique_ids_table = EVENTS.table  # rows of this table are unique by event_id
        self.dead_letters = dead_letters
        self.tables = tuple(tables)
        self.retry = retry or RetryPolicy()
        self._watermarks: dict[str, dict[tuple[str, int], int]] = {}
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Make a failing `write` give up with SinkStopped instead of retrying again."""
        self._stopping.set()

    def forget_watermarks(self) -> None:
        """Drop cached watermarks (after a rebalance another worker may have written)."""
        self._watermarks.clear()
        self.recent_ids.clear()  # re-read with the watermarks: the other worker's ids count too

    def write(self, batch: DecodedBatch) -> dict[str, int]:
        """Write the batch to every table; returns rows written per table."""
        written: dict[str, int] = {}
        for writer in self.tables:
            rows = writer.build(batch)
            if rows.offsets:
                written[writer.table] = self._write_table(writer, rows, batch)
        return written

    def _write_table(self, writer: TableWriter, rows: Rows, batch: DecodedBatch) -> int:
        block = self._new_block(writer, rows, batch)
        if block is None:
            return 0

        def failed(exc: Exception) -> None:
            metrics.INSERT_ERRORS.labels(writer.table).inc()
            # Part of the block may have landed; the next batch re-reads the truth.
            self._watermarks.pop(writer.table, None)

        return retry_until_stopped(
            lambda: self._insert(writer, block),
            f"insert into {writer.table}",
            self._stopping,
            self.retry,
            on_failure=failed,
        )

    def _new_block(self, writer: TableWriter, rows: Rows, batch: DecodedBatch) -> Block | None:
        """The rows of `rows` not stored yet (above the watermarks, ids not seen), or None.

        Built once per batch and table: every retry sends this same block with the same token.
        """
        marks = self._watermarks_of(writer.table)
        keep = _new_rows(rows, marks)
        skipped = len(rows.offsets) - (len(keep) if keep is not None else len(rows.offsets))
        if skipped:
            metrics.REPLAYED_ROWS_SKIPPED.labels(writer.table).inc(skipped)
        columns = rows.columns if keep is None else [[c[i] for i in keep] for c in rows.columns]
        coordinates = rows if keep is None else _subset(rows, keep)
        ids: list[int] = []
        if writer.table == self.unique_ids_table and self.recent_ids.capacity:
            column = columns[writer.column_names.index("event_id")]
            ids = [event_id.int for event_id in column]
            first = self.recent_ids.first_sightings(ids)
            if first is not None:
                metrics.DUPLICATE_EVENTS_SKIPPED.inc(len(ids) - len(first))
                columns = [[c[i] for i in first] for c in columns]
                coordinates = _subset(coordinates, first)
                ids = [ids[i] for i in first]
        if not columns[0]:
            return None
        rejections: list[Rejection] = []
        if writer is REJECTED and self.dead_letters is not None:
            rejections = batch.rejections if keep is None else [batch.rejections[i] for i in keep]
        return Block(columns, ids, coordinates, block_token(writer.table, coordinates), rejections)

    def _insert(self, writer: TableWriter, block: Block) -> int:
        if block.rejections:
            # Rejects reach the DLQ before ClickHouse, so offsets never move before both have them.
            assert self.dead_letters is not None
            self.dead_letters.publish(block.rejections)
        started = time.perf_counter()
        count = self.warehouse.insert_columns(
            writer.table,
            block.columns,
            writer.column_names,
            settings=self._insert_settings(block.token),
            wire_types=writer.wire_types,
        )
        metrics.INSERT_DURATION.labels(writer.table).observe(time.perf_counter() - started)
        metrics.INSERT_ROWS.labels(writer.table).inc(len(block.columns[0]))
        self.recent_ids.remember(block.ids)  # only now: a retried insert must not see its own ids
        if block.ids:
            metrics.DEDUP_HORIZON.set(self.recent_ids.horizon_s())
        # Offsets grow within a partition, so the last row of a partition holds its highest.
        rows = block.coordinates
        newest = dict(
            zip(zip(rows.topics, rows.partitions, strict=True), rows.offsets, strict=True)
        )
        marks = self._watermarks.get(writer.table)
        if marks is not None:
            for key, offset in newest.items():
                if offset > marks.get(key, -1):
                    marks[key] = offset
        return count

    def _insert_settings(self, token: str) -> dict[str, Any]:
        return dedup_settings(token)

    def _watermarks_of(self, table: str) -> dict[tuple[str, int], int]:
        marks = self._watermarks.get(table)
        if marks is None:
            rows = self.warehouse.rows(
                f"SELECT _topic, _partition, max(_offset) FROM {table} GROUP BY _topic, _partition"
            )
            marks = {(str(t), int(p)): int(o) for t, p, o in rows}
            self._watermarks[table] = marks
            if table == self.unique_ids_table and self.recent_ids.capacity:
                self._seed_recent_ids()
        return marks

    def _seed_recent_ids(self) -> None:
        """Remember the newest ids already in the table (written before a restart or by another
        worker before a rebalance), oldest first."""
        newest = self.warehouse.rows(
            f"SELECT event_id FROM {self.unique_ids_table} "
            f"ORDER BY ingested_at DESC LIMIT {int(self.recent_ids.capacity)}"
        )
        self.recent_ids.clear()
        self.recent_ids.remember(row[0].int for row in reversed(newest))


@dataclass(frozen=True)
class Block:
    """One table's insert for one batch, fixed before the first attempt: the rows not stored yet,
    their event ids (for `RecentIds`), their source coordinates, the deduplication token and the
    rejections to dead-letter first."""

    columns: list[list[Any]]
    ids: list[int]
    coordinates: Rows
    token: str
    rejections: list[Rejection]


def block_token(table: str, rows: Rows) -> str:
    """A deterministic `insert_deduplication_token`: the table and the source coordinates of
    every row in order (a row's coordinates are unique in its table, several events of one
    message share an offset and keep their order)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(table.encode())
    for topic, partition, offset in zip(rows.topics, rows.partitions, rows.offsets, strict=True):
        digest.update(f"|{topic}:{partition}:{offset}".encode())
    return f"{table}-{len(rows.offsets)}-{digest.hexdigest()}"


def dedup_settings(token: str) -> dict[str, Any]:
    """Insert settings that make a retried identical block fold everywhere it goes: in the table
    and in the target of every materialized view it feeds (migration 0014 gives those tables a
    deduplication window; on chdb 26.9 a view still runs when the table's block was a duplicate,
    so a retry fills what a failed view missed)."""
    return {
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }


def _subset(rows: Rows, keep: list[int]) -> Rows:
    return Rows(
        [],
        [rows.topics[i] for i in keep],
        [rows.partitions[i] for i in keep],
        [rows.offsets[i] for i in keep],
    )


def _new_rows(rows: Rows, marks: dict[tuple[str, int], int]) -> list[int] | None:
    """Indices of rows above their partition's watermark; None when that is every row."""
    if not marks:
        return None
    # Offsets grow within a partition: the first row of each partition holds its lowest.
    keys = list(zip(rows.topics, rows.partitions, strict=True))
    lowest = dict(zip(reversed(keys), reversed(rows.offsets), strict=True))
    if all(low > marks.get(key, -1) for key, low in lowest.items()):
        return None
    return [
        i
        for i, (topic, partition, offset) in enumerate(
            zip(rows.topics, rows.partitions, rows.offsets, strict=True)
        )
        if offset > marks.get((topic, partition), -1)
    ]
