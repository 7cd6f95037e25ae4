"""A Kafka record batch a consumer cannot decode: named, exported, and the process stops.

`install(handler)` (aiokafka, in every consumer built by `pipeline.kafka.client`) and
`install_kafka_python()` (every `uptake` command) make the fetchers raise `UndecodableBatchError`
naming topic, partition and offset instead of a bare traceback; `handler` gets the
`UndecodableBatch` first. Nothing is skipped. Why: docs/design.md#undecodable-record-batches.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiokafka.codec
import kafka.codec
import kafka.errors
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from kafka.consumer.fetcher import Fetcher as KafkaPythonFetcher

from pipeline.observability import metrics

log = logging.getLogger("uptake.worker")

EXIT_UNDECODABLE = 65  # EX_DATAERR: a record batch cannot be decoded; restarting does not help
CODECS = ("gzip", "snappy", "lz4", "zstd")
_CODEC_IDS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
CODEC_LIBRARIES = {
    "aiokafka": "cramjam (all four codecs)",
    "kafka-python": "python-snappy, lz4 and zstandard (or cramjam)",
}


def missing_codecs() -> dict[str, list[str]]:
    """Codecs each Kafka client library cannot decode in this environment ({} when none).

    aiokafka reads for the faust worker (and `uptake bench`); kafka-python for `uptake writer`,
    `uptake dlq replay`, the lifecycle's changelog reader and `uptake soak`.
    """
    checks: dict[str, dict[str, Callable[[], bool]]] = {
        "aiokafka": {c: getattr(aiokafka.codec, f"has_{c}") for c in CODECS},
        "kafka-python": {c: getattr(kafka.codec, f"has_{c}") for c in CODECS},
    }
    out = {lib: [c for c, has in codecs.items() if not has()] for lib, codecs in checks.items()}
    return {lib: codecs for lib, codecs in out.items() if codecs}


@dataclass(frozen=True)
class UndecodableBatch:
    """Where the consumer stopped: `offset` is the first offset of `topic`/`partition` it could
    not read; `next_offset` the offset after the batch (where a deliberate skip resumes), or
    None when the batch's header could not be read either."""

    topic: str
    partition: int
    offset: int
    next_offset: int | None
    codec: str
    missing_codec: bool
    error: str

    def explain(self, group: str = "<consumer group>", bootstrap: str = "<bootstrap>") -> str:
        """The message a person reads: what, where, and the remedy."""
        codec = f", {self.codec}-compressed" if self.codec not in ("none", "unknown") else ""
        span = (
            f" (the batch ends before offset {self.next_offset}{codec})"
            if self.next_offset is not None
            else codec.replace(",", " (", 1) + (")" if codec else "")
        )
        where = f"{self.topic} partition {self.partition} at offset {self.offset}{span}"
        if self.missing_codec:
            remedy = (
                "install the codec libraries this Uptake is locked with (`make .venv/.installed`, "
                f"or the image): aiokafka needs {CODEC_LIBRARIES['aiokafka']}, kafka-python "
                f"{CODEC_LIBRARIES['kafka-python']}; then start the process again (it reads "
                "the batch then)"
            )
        else:
            target = self.next_offset if self.next_offset is not None else self.offset + 1
            remedy = (
                "the batch is damaged; to skip it deliberately, stop every worker of the group "
                f"and run: kafka-consumer-groups.sh --bootstrap-server {bootstrap} --group "
                f"{group} --topic {self.topic}:{self.partition} --reset-offsets --to-offset "
                f"{target} --execute (the events in it are lost)"
            )
        return (
            f"cannot decode the Kafka record batch of {where}: {self.error}. Nothing of this "
            f"partition from offset {self.offset} on was committed. Remedy: {remedy}. "
            "Runbook: docs/operations.md#uptakeundecodablebatch"
        )


class UndecodableBatchError(Exception):
    """Raised by the fetcher in place of aiokafka's codec or corruption error."""

    def __init__(self, batch: UndecodableBatch) -> None:
        super().__init__(
            f"undecodable record batch: {batch.topic}[{batch.partition}]@{batch.offset}: "
            f"{batch.error}"
        )
        self.batch = batch


class _BatchTracker:
    """aiokafka's or kafka-python's MemoryRecords, remembering the batch it handed out last."""

    __slots__ = ("_records", "current")

    def __init__(self, records: Any) -> None:
        self._records = records
        self.current: Any = None

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        self.current = None  # reading the header may fail too
        self.current = self._records.next_batch()
        return self.current


class AttributedPartitionRecords(aiokafka_fetcher.PartitionRecords):
    """aiokafka's PartitionRecords that names the batch it cannot decode (see the module)."""

    handler: Callable[[UndecodableBatch], None] | None = None

    def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        self._tracker = _BatchTracker(records)
        super().__init__(tp, self._tracker, *args, **kwargs)

    def _unpack_records(self) -> Iterator[Any]:
        try:
            yield from super()._unpack_records()
        except (UnsupportedCodecError, CorruptRecordException) as exc:
            batch = describe(self._tp, self.next_fetch_offset, self._tracker.current, exc)
            handler = type(self).handler
            if handler is not None:
                handler(batch)
            raise UndecodableBatchError(batch) from exc


class KafkaPythonPartitionRecords(KafkaPythonFetcher.PartitionRecords):
    """kafka-python's PartitionRecords that names the batch it cannot decode (see the module)."""

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[Any]:
        tracker = _BatchTracker(records)
        try:
            yield from super()._unpack_records(tp, tracker, key_deserializer, value_deserializer)
        except (kafka.errors.UnsupportedCodecError, kafka.errors.CorruptRecordError) as exc:
            raise UndecodableBatchError(
                describe(tp, self.next_fetch_offset, tracker.current, exc)
            ) from exc


def describe(tp: Any, position: int, batch: Any, exc: BaseException) -> UndecodableBatch:
    """The UndecodableBatch of error `exc` met at consumer `position` in `batch` (or None)."""
    next_offset = codec = None
    if batch is not None:
        next_offset = getattr(batch, "next_offset", None)  # legacy (v0/v1) batches have none
        codec = _CODEC_IDS.get(int(getattr(batch, "compression_type", -1)), "unknown")
    return UndecodableBatch(
        topic=tp.topic,
        partition=tp.partition,
        offset=position,
        next_offset=None if next_offset is None else int(next_offset),
        codec=codec or "unknown",
        missing_codec=isinstance(exc, UnsupportedCodecError | kafka.errors.UnsupportedCodecError),
        error=str(exc)
        if str(exc).startswith(type(exc).__name__)
        else f"{type(exc).__name__}: {exc}",
    )


def install(handler: Callable[[UndecodableBatch], None]) -> None:
    """Make aiokafka's fetcher, in this process, attribute undecodable batches to `handler`."""
    AttributedPartitionRecords.handler = handler
    aiokafka_fetcher.PartitionRecords = AttributedPartitionRecords


def install_kafka_python() -> None:
    """Make kafka-python's fetcher, in this process, raise UndecodableBatchError with the batch."""
    KafkaPythonFetcher.PartitionRecords = KafkaPythonPartitionRecords


def stop_worker(
    group: str,
    bootstrap: str,
    delay_s: float,
    exit_: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[UndecodableBatch], None]:
    """The worker's handler: export the gauge, log the message, wait `delay_s`, exit 65.

    It runs on faust's consumer thread and blocks it on purpose: nothing more is fetched from
    any partition, so nothing past the batch is acked or committed; batches already taken finish
    on the main loop meanwhile, and /metrics (its own thread) shows the gauge to Prometheus.
    `os._exit` then ends the process before faust could commit anything else.
    """

    def handle(batch: UndecodableBatch) -> None:
        metrics.UNDECODABLE_BATCH_OFFSET.labels(batch.topic, str(batch.partition)).set(batch.offset)
        log.error("%s", batch.explain(group, bootstrap))
        log.error("exiting with status %d in %.0fs", EXIT_UNDECODABLE, delay_s)
        sleep(delay_s)
        (exit_ or _exit_now)(EXIT_UNDECODABLE)

    return handle


def _exit_now(code: int) -> None:
    logging.shutdown()  # the message above reaches stderr first
    os._exit(code)
