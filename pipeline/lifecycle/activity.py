"""The ingest side of the lifecycle: a written batch's activity, published before its ack.

Contract of the step: `ActivityPublisher.publish(batch)` blocks until Kafka acknowledged
(acks=all) one record per distinct team x capability x UTC day of the batch's accepted events,
keyed by team x capability so one key's records stay in one partition of the activity topic,
followed by a watermark record (the newest day this worker has seen) to every partition. A
failed send is retried with backoff; when the worker stops meanwhile it raises
LifecycleStopped (a SinkStopped) and the caller exits without acking, so the batch is replayed.
Records are at-least-once: the lifecycle applies a repeated record as a no-op. The whole batch
is published, also the events the sink skipped as replays: their activity may not have been
published before the crash that replays them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any

from kafka import KafkaProducer

from pipeline.catalog.teams import UNOWNED
from pipeline.contract.decode import DecodedBatch
from pipeline.lifecycle.engine import Activity, Watermark, encode_record, key_of
from pipeline.lifecycle.retry import until_done
from pipeline.lifecycle.rules import EPOCH, NO_DAY, day_of
from pipeline.worker.sink import RetryPolicy

WATERMARK_KEY = b"~watermark"
_EPOCH_ORDINAL = EPOCH.toordinal()


def teams_of(batch: DecodedBatch) -> Sequence[str]:
    """The team each accepted event counts for: the one the sink writes to `events.team`.

    That is the team the enrich step resolved (`batch.teams`); a batch that was not enriched
    counts for the team each event reports, else 'unowned' — as the sink does.
    """
    if len(batch.teams) == len(batch.events):
        return batch.teams
    return [event.team or UNOWNED for event in batch.events]


def activity_of(batch: DecodedBatch) -> tuple[list[Activity], int]:
    """The batch's distinct team x capability x day activity, and its newest day."""
    seen: set[tuple[str, str, int]] = set()
    for team, event in zip(teams_of(batch), batch.events, strict=True):
        at = event.occurred_at
        # The date of a UTC time is its UTC day, 4x cheaper than timestamp() (the common case).
        day = at.toordinal() - _EPOCH_ORDINAL if at.tzinfo is UTC else day_of(at)
        seen.add((team, event.capability, day))
    records = [Activity(team, capability, day) for team, capability, day in sorted(seen)]
    return records, max((r.day for r in records), default=NO_DAY)


class ActivityPublisher:
    """Publishes activity to `<events_topic>.activity`; see the module docstring."""

    def __init__(
        self,
        producer_factory: Callable[[], KafkaProducer],
        topic: str,
        stopping: threading.Event,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._producer_factory = producer_factory
        self._producer: KafkaProducer | None = None
        self.topic = topic
        self.stopping = stopping
        self.timeout_s = timeout_s
        self.retry = retry
        self.newest_day = NO_DAY  # newest day this process has published as watermark

    def publish(self, batch: DecodedBatch) -> dict[str, int]:
        """Publish the batch's activity (blocking); returns {topic: records sent}."""
        records, newest = activity_of(batch)
        watermark = newest if newest > self.newest_day else None
        if not records:
            return {self.topic: 0}
        sent = until_done(
            lambda: self._send(records, watermark),
            f"publishing activity to {self.topic}",
            self.stopping,
            self.retry,
        )
        if watermark is not None:
            self.newest_day = watermark
        return {self.topic: sent}

    def _send(self, records: list[Activity], watermark: int | None) -> int:
        producer = self._connect()
        futures: list[Any] = [
            producer.send(self.topic, key=key_of(r.team, r.capability), value=encode_record(r))
            for r in records
        ]
        if watermark is not None:
            # After the activity, in every partition: a partition's records stay in order.
            value = encode_record(Watermark(watermark))
            for partition in sorted(producer.partitions_for(self.topic) or ()):
                futures.append(
                    producer.send(self.topic, key=WATERMARK_KEY, value=value, partition=partition)
                )
        producer.flush(timeout=self.timeout_s)
        failed = [f for f in futures if not f.is_done or f.failed()]
        if failed:
            first = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            raise ConnectionError(
                f"{len(failed)} of {len(futures)} activity records were not acknowledged: {first}"
            )
        return len(futures)

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout_s)
