"""Where lifecycle results go: ClickHouse tables, the milestone topic, the state's changelog.

Contract of the step: every method blocks until the write was acknowledged (ClickHouse insert
returned, Kafka acks=all) and raises otherwise; each write is idempotent, so the caller retries
it whole (retry.until_done) and a crash may repeat it:
- `adoption_milestones` is a ReplacingMergeTree keyed by (team, capability, milestone,
  occurred_at) with `detected_at` as version and `retracted` as its deleted flag: a repeated
  row folds, a retraction hides the milestone in `FINAL`;
- `adoption_lifecycle` is keyed by (team, capability), the newest row wins;
- the milestone topic is keyed by the same identity (compacted): consumers keep the last
  record per key;
- the changelog records are the table's values keyed by its keys (compacted).
Not thread-safe: one thread (the lifecycle's writer thread) uses an instance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from kafka import KafkaProducer

from pipeline.lifecycle.engine import Emission, MilestoneRow
from pipeline.lifecycle.rules import EPOCH, as_date
from pipeline.warehouse.connection import Warehouse

MILESTONES_TABLE = "adoption_milestones"
LIFECYCLE_TABLE = "adoption_lifecycle"

MILESTONE_COLUMNS = (
    "team",
    "capability",
    "milestone",
    "occurred_at",
    "episode",
    "retracted",
    "detected_at",
)
LIFECYCLE_COLUMNS = (
    "team",
    "capability",
    "state",
    "state_since",
    "first_use",
    "activated_at",
    "churned_at",
    "last_active",
    "episode",
    "active_days",
    "updated_at",
)

_encode = msgspec.json.Encoder().encode


def milestone_key(row: MilestoneRow) -> bytes:
    """The Kafka key of a milestone: its identity, so compaction keeps its latest record."""
    change = row.change
    return _encode((row.team, row.capability, change.kind, as_date(change.day).isoformat()))


def milestone_value(row: MilestoneRow, detected_at: datetime) -> bytes:
    change = row.change
    return _encode(
        {
            "team": row.team,
            "capability": row.capability,
            "milestone": change.kind,
            "occurred_at": as_date(change.day).isoformat(),
            "episode": change.episode,
            "retracted": change.retracted,
            "detected_at": detected_at.isoformat(timespec="milliseconds"),
        }
    )


class KafkaWrites:
    """Sends keyed records and waits for every acknowledgement."""

    def __init__(self, producer_factory: Callable[[], KafkaProducer], timeout_s: float = 30.0):
        self._producer_factory = producer_factory
        self._producer: KafkaProducer | None = None
        self.timeout_s = timeout_s

    def send(self, topic: str, records: Sequence[tuple[int | None, bytes, bytes]]) -> int:
        """Send (partition or None, key, value) records; raise unless all were acknowledged."""
        if not records:
            return 0
        producer = self._connect()
        futures: list[Any] = [
            producer.send(topic, key=key, value=value, partition=partition)
            for partition, key, value in records
        ]
        producer.flush(timeout=self.timeout_s)
        failed = [f for f in futures if not f.is_done or f.failed()]
        if failed:
            first = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            raise ConnectionError(
                f"{len(failed)} of {len(futures)} records to {topic} were not acknowledged: {first}"
            )
        return len(futures)

    def partitions_for(self, topic: str) -> list[int]:
        """The topic's partitions, in order."""
        return sorted(self._connect().partitions_for(topic) or ())

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout_s)


class LifecycleOutputs:
    """Writes an Emission to the warehouse and the milestone topic (blocking)."""

    def __init__(
        self,
        connect: Callable[[], Warehouse],
        kafka: KafkaWrites,
        milestones_topic: str,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._connect = connect
        self._warehouse: Warehouse | None = None
        self.kafka = kafka
        self.milestones_topic = milestones_topic
        self._now = now or (lambda: datetime.now(UTC))

    def write(self, emission: Emission) -> None:
        """Milestones and lifecycle rows into ClickHouse, then milestones to Kafka."""
        if self._warehouse is None:
            self._warehouse = self._connect()
        warehouse = self._warehouse
        now = self._now()
        if emission.milestones:
            rows = emission.milestones
            warehouse.insert_columns(
                MILESTONES_TABLE,
                [
                    [r.team for r in rows],
                    [r.capability for r in rows],
                    [r.change.kind for r in rows],
                    [as_date(r.change.day) for r in rows],
                    [r.change.episode for r in rows],
                    [int(r.change.retracted) for r in rows],
                    [now] * len(rows),
                ],
                MILESTONE_COLUMNS,
            )
        if emission.lifecycles:
            states = emission.lifecycles
            warehouse.insert_columns(
                LIFECYCLE_TABLE,
                [
                    [s.team for s in states],
                    [s.capability for s in states],
                    [s.summary.state for s in states],
                    [as_date(s.summary.state_since) for s in states],
                    [as_date(s.summary.first_use) for s in states],
                    [_date_or_epoch(s.summary.activated_at) for s in states],
                    [_date_or_epoch(s.summary.churned_at) for s in states],
                    [as_date(s.summary.last_active) for s in states],
                    [s.summary.episode for s in states],
                    [s.summary.active_days for s in states],
                    [now] * len(states),
                ],
                LIFECYCLE_COLUMNS,
            )
        self.kafka.send(
            self.milestones_topic,
            [(None, milestone_key(r), milestone_value(r, now)) for r in emission.milestones],
        )

    def close(self) -> None:
        if self._warehouse is not None:
            self._warehouse.close()
            self._warehouse = None


def _date_or_epoch(day: int | None) -> Any:
    return EPOCH if day is None else as_date(day)
