"""Hole 2 of issue #16 without a broker: a message on which an ingest step raises is rejected as
`internal_error`, the others of its batch go on, in order, with their keys and teams."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.contract.reasons import Reason
from pipeline.devtools.bench import api_call_messages
from pipeline.devtools.faults import PoisonStep
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.ingest.chain import Decode, DedupeOffsets, IngestChain, Pseudonymise
from pipeline.ingest.steps import Progress
from pipeline.observability import metrics

MARKER = b"poison-unit"


def chain(step: str, written: list[DecodedBatch]) -> IngestChain:
    async def write(batch: DecodedBatch) -> dict[str, int]:
        written.append(batch)
        return {}

    decode = Decode(BatchDecoder(), {})
    pseudonymise = Pseudonymise(Pseudonymizer(b"k" * 32))
    return IngestChain(
        DedupeOffsets(),
        PoisonStep(decode, MARKER) if step == "decode" else decode,  # type: ignore[arg-type]
        PoisonStep(pseudonymise, MARKER) if step == "pseudonymise" else pseudonymise,  # type: ignore[arg-type]
        None,
        write,
        None,
        Progress(),
        dead_lettered=False,
        backfill_topic="",
    )


@pytest.mark.parametrize("step", ["decode", "pseudonymise"])
def test_the_message_that_raised_is_rejected_and_the_rest_goes_on(step: str) -> None:
    messages = api_call_messages(50, per_message=10, teams=2)
    poisoned = msgspec.json.decode(messages[2])
    poisoned[0]["user"] = MARKER.decode()
    messages[2] = msgspec.json.encode(poisoned)
    source = [SourceMessage("events", 0, offset, m) for offset, m in enumerate(messages)]
    before = metrics.INGEST_STEP_ERRORS.labels(step)._value.get()
    written: list[DecodedBatch] = []
    batch = asyncio.run(chain(step, written)(source))

    assert written == [batch]
    assert batch.offsets == [o for o in range(5) if o != 2 for _ in range(10)], "order kept"
    assert len(batch.user_keys) == len(batch.events) == 40
    assert [(r.reason, r.offset, r.raw) for r in batch.rejections] == [
        (Reason.INTERNAL_ERROR, 2, messages[2])
    ]
    assert batch.rejections[0].detail == f"{step} raised RuntimeError: chaos: a poison message"
    assert metrics.INGEST_STEP_ERRORS.labels(step)._value.get() == before + 1
    assert batch.consumed == 41, "consumed = accepted + rejected (the message counts as one)"


def test_a_batch_without_a_failure_is_prepared_once() -> None:
    messages = api_call_messages(20, per_message=10, teams=2)
    source = [SourceMessage("events", 0, offset, m) for offset, m in enumerate(messages)]
    written: list[DecodedBatch] = []
    batch = asyncio.run(chain("pseudonymise", written)(source))
    assert len(batch.events) == 20 and not batch.rejections
