"""The ingest path, composed in one place: innermost step first, the commit last.

    dedupe offsets → decode → pseudonymise → resolve teams → write → publish activity → record
    → the agent's loop body returns, faust acks the batch and commits its offsets

Offsets move only after the write; nothing may escape the loop body (docs/guarantees.md,
"Commit after write"). An unexpected exception in decode, pseudonymise or resolve teams is a
bug, not bad input: the batch is prepared again one message at a time, the message that raised
is rejected as `internal_error` (and dead-lettered with the batch's other rejections), and the
rest is written (docs/guarantees.md, "A message that makes a step raise"). The helpers the
steps call live in `pipeline.ingest.steps`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pipeline.contract.decode import BatchDecoder, DecodedBatch, Rejection, SourceMessage
from pipeline.contract.reasons import Reason
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.enrich.raw_user import pseudonymise_rejections
from pipeline.ingest.catalogs import WorkerCatalogs
from pipeline.ingest.steps import Progress, concat, decode_by_topic, record, unique_offsets
from pipeline.observability import metrics

log = logging.getLogger("uptake.worker")

Submit = Callable[[DecodedBatch], Awaitable[dict[str, int]]]


class DedupeOffsets:
    """Drop records at or below an offset already seen for their partition in this batch (a
    batch taken across a rebalance can hold an offset twice). Pure, never blocks, never fails;
    returns the kept messages in their order."""

    def __call__(self, messages: list[SourceMessage]) -> list[SourceMessage]:
        return unique_offsets(messages)


@dataclass
class Decode:
    """Decode each message with its topic's decoder (`by_topic`, e.g. the backfill topic's
    limits; `live` otherwise). Pure, never blocks, never raises for bad input: every record is
    accepted or rejected with a reason (consumed = accepted + rejected)."""

    live: BatchDecoder
    by_topic: Mapping[str, BatchDecoder]

    def __call__(self, messages: list[SourceMessage]) -> DecodedBatch:
        return decode_by_topic(messages, self.live, self.by_topic)


@dataclass
class Pseudonymise:
    """Set `batch.user_keys`: a keyed hash of each event's user, never the user, and replace
    the user inside each rejection's raw bytes by the same key (`pipeline.enrich.raw_user`)
    before the sink stores them. Pure CPU, never blocks, never fails."""

    pseudonyms: Pseudonymizer

    def __call__(self, batch: DecodedBatch) -> None:
        batch.user_keys = self.pseudonyms.keys([e.user for e in batch.events])
        pseudonymise_rejections(batch.rejections, self.pseudonyms)


@dataclass
class ResolveTeams:
    """Set `batch.teams` from the team catalog as of each event's time (after Pseudonymise: user
    ownership uses the keys) and note undeclared capabilities. No I/O: catalog writes are queued
    on the sink's thread; an event nobody owns counts for its reported team or 'unowned'."""

    catalogs: WorkerCatalogs

    def __call__(self, batch: DecodedBatch) -> None:
        self.catalogs.enrich(batch)


@dataclass
class IngestChain:
    """One batch through every step. `write` and `publish_activity` run on the sink's thread and
    block (asynchronously) until done: they retry failures themselves and end the process without
    committing when a batch cannot be made safe (exit 75), so they never return a failure.
    `record` counts the batch in metrics and `progress` and cannot fail."""

    dedupe_offsets: DedupeOffsets
    decode: Decode
    pseudonymise: Pseudonymise
    resolve_teams: ResolveTeams | None
    write: Submit
    publish_activity: Submit | None
    progress: Progress
    dead_lettered: bool
    backfill_topic: str

    async def __call__(self, messages: list[SourceMessage]) -> DecodedBatch:
        messages = self.dedupe_offsets(messages)
        batch = self.prepare(messages)
        written = await self.write(batch)
        if self.publish_activity is not None:  # before the ack: the lifecycle sees every batch
            await self.publish_activity(batch)
        record(
            batch,
            self.progress,
            messages=len(messages),
            written=written,
            dead_lettered=self.dead_lettered,
            backfill_topic=self.backfill_topic,
        )
        return batch

    def prepare(self, messages: list[SourceMessage]) -> DecodedBatch:
        """Decode, pseudonymise and resolve teams; never raises. When a step raises, the batch
        is prepared again message by message and each message that raises is rejected as
        `internal_error`. Deterministic for the same messages, as a replay needs."""
        try:
            return self._prepare(messages, [""])
        except Exception:
            log.exception("an ingest step raised: preparing the batch one message at a time")
        parts = []
        for message in messages:
            step = [""]
            try:
                parts.append(self._prepare([message], step))
            except Exception as exc:
                metrics.INGEST_STEP_ERRORS.labels(step[0]).inc()
                log.error(
                    "%s raised on %s:%d@%d: dead-lettered as internal_error (%s: %s)",
                    step[0],
                    message.topic,
                    message.partition,
                    message.offset,
                    type(exc).__name__,
                    exc,
                )
                parts.append(internal_error(message, step[0], exc))
        return concat(parts)

    def _prepare(self, messages: list[SourceMessage], step: list[str]) -> DecodedBatch:
        step[0] = "decode"  # which step raised, for the metric and the detail
        batch = self.decode(messages)
        step[0] = "pseudonymise"
        self.pseudonymise(batch)
        if self.resolve_teams is not None:
            step[0] = "resolve_teams"
            self.resolve_teams(batch)
        return batch


def internal_error(message: SourceMessage, step: str, exc: Exception) -> DecodedBatch:
    """A batch holding one `internal_error` rejection of the whole message."""
    detail = f"{step} raised {type(exc).__name__}: {exc}"[:1000]
    rejection = Rejection(
        Reason.INTERNAL_ERROR,
        detail,
        message.value or b"",
        message.topic,
        message.partition,
        message.offset,
        0,
    )
    return DecodedBatch(rejections=[rejection])
