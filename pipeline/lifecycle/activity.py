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

from kafka import KafkaProducer

from pipeline.catalog.capabilities import Capability, CapabilityCatalog
from pipeline.catalog.teams import UNOWNED
from pipeline.contract.decode import DecodedBatch
from pipeline.contract.events import ApiCallEvent, Envelope, event_type_of
from pipeline.lifecycle.engine import Activity, Watermark, encode_record, key_of
from pipeline.lifecycle.outputs import KafkaWrites
from pipeline.lifecycle.retry import until_done
from pipeline.lifecycle.rules import EPOCH, NO_DAY, day_of
from pipeline.sink.clickhouse import RetryPolicy

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


UseRule = Callable[[Envelope], bool]
UseOf = Callable[[str, str, str | None], bool]  # (event type, capability, api) -> is use


def catalog_counts(catalog: Callable[[], CapabilityCatalog]) -> UseOf:
    """Use as the capability catalog defines it (`Capability.counts_as_use`: event types and,
    for api_call, APIs; any type for an undeclared capability), read from the current catalog."""

    def counts(event_type: str, name: str, api: str | None) -> bool:
        current = catalog()
        capability = current.resolve(name) if name in current else Capability.undeclared(name)
        return capability.counts_as_use(event_type, api)

    return counts


def catalog_use(catalog: Callable[[], CapabilityCatalog]) -> UseRule:
    """`catalog_counts` for a decoded event."""
    counts = catalog_counts(catalog)

    def uses(event: Envelope) -> bool:
        api = event.data.api if isinstance(event, ApiCallEvent) else None
        return counts(event_type_of(event), event.capability, api)

    return uses


def activity_of(batch: DecodedBatch, uses: UseRule | None = None) -> tuple[list[Activity], int]:
    """The batch's distinct team x capability x day activity, and its newest day.

    With `uses`, only events that count as use of their capability are activity; the newest
    day is still taken from them only.
    """
    seen: set[tuple[str, str, int]] = set()
    for team, event in zip(teams_of(batch), batch.events, strict=True):
        if uses is not None and not uses(event):
            continue
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
        uses: UseRule | None = None,
    ) -> None:
        self._kafka = KafkaWrites(producer_factory, timeout_s)
        self.uses = uses
        self.topic = topic
        self.stopping = stopping
        self.retry = retry
        self.newest_day = NO_DAY  # newest day this process has published as watermark

    def publish(self, batch: DecodedBatch) -> dict[str, int]:
        """Publish the batch's activity (blocking); returns {topic: records sent}."""
        return self.publish_activity(*activity_of(batch, self.uses))

    def publish_activity(self, records: list[Activity], newest: int) -> dict[str, int]:
        """Publish these records and, when `newest` is a newer day, a watermark (blocking)."""
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
        sends: list[tuple[int | None, bytes, bytes]] = [
            (None, key_of(r.team, r.capability), encode_record(r)) for r in records
        ]
        if watermark is not None:
            # After the activity, in every partition: a partition's records stay in order.
            value = encode_record(Watermark(watermark))
            sends += [(p, WATERMARK_KEY, value) for p in self._kafka.partitions_for(self.topic)]
        return self._kafka.send(self.topic, sends)

    def close(self) -> None:
        self._kafka.close()
