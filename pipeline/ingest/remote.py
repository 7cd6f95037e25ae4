"""Scale-out with one warehouse writer (UPTAKE_WRITER=kafka): workers publish, `uptake writer`
inserts (pipeline/ingest/writer.py).

`KafkaBatchPublisher` has the contract of `ClickHouseSink.write`: it returns only after every
record of the batch was acknowledged by all in-sync replicas, one record after the other, and
retries with backoff until `stop()` (then raises `SinkStopped`: the worker exits without
committing). A batch becomes JSON records of at most `max_record_bytes`, split at message
boundaries; raw user identifiers are dropped, only their pseudonyms travel.

Why the writer is exact (the ordering argument): docs/guarantees.md ("Scale-out");
why this mode exists: docs/design.md ("Scale-out with one writer").
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from kafka import KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.contract.decode import DecodedBatch
from pipeline.contract.events import Event
from pipeline.kafka.topics import KafkaUnavailable, make_admin, unreachable_message
from pipeline.sink.clickhouse import RetryPolicy, retry_until_stopped

log = logging.getLogger("uptake.worker")

MAX_RECORD_BYTES = 4 * 1024 * 1024
"""A batch is split into records of at most this size (one source message may exceed it)."""
TOPIC_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""`max.message.bytes` of the writer topic when Uptake creates it."""
PUBLISH_TIMEOUT_S = 30.0

_PER_EVENT = tuple(f.name for f in dataclasses.fields(DecodedBatch) if f.name != "rejections")
"""DecodedBatch's lists parallel to `events` (events, partitions, offsets, topics, user_keys,
teams, ... — read from the dataclass, so a list added later travels too)."""


def _wire_type() -> type[msgspec.Struct]:
    hints = typing.get_type_hints(DecodedBatch)
    hints["events"] = list[Event]  # the tagged union: each event decodes to its own class
    return msgspec.defstruct(
        "WireBatch",
        [
            (f.name, hints[f.name], msgspec.field(default_factory=list))
            for f in dataclasses.fields(DecodedBatch)
        ],
        array_like=True,
    )


WireBatch = _wire_type()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WireBatch).decode


def encode_batch(batch: DecodedBatch) -> bytes:
    """One record of the writer topic; raw user identifiers are left out."""
    values = {name: getattr(batch, name) for name in _PER_EVENT}
    if any(event.user for event in batch.events):
        if len(batch.user_keys) != len(batch.events):
            raise ValueError("the batch was not pseudonymised: user keys are missing")
        replace = msgspec.structs.replace
        values["events"] = [replace(e, user=None) if e.user else e for e in batch.events]
    return _encode(WireBatch(rejections=batch.rejections, **values))


def decode_batch(record: bytes) -> DecodedBatch:
    wire = _decode(record)
    return DecodedBatch(**{f.name: getattr(wire, f.name) for f in dataclasses.fields(DecodedBatch)})


def split_batch(batch: DecodedBatch, max_bytes: int = MAX_RECORD_BYTES) -> list[bytes]:
    """Encoded records of at most `max_bytes` each (unless one source message is larger).

    Splits only between source messages: the rows of one (partition, offset) stay in one
    record, and within a partition the records come in offset order.
    """
    encoded = encode_batch(batch)
    if len(encoded) <= max_bytes:
        return [encoded]
    halves = _halves(batch)
    if halves is None:
        return [encoded]  # a single source message: cannot be split
    return [record for half in halves for record in split_batch(half, max_bytes)]


def _halves(batch: DecodedBatch) -> tuple[DecodedBatch, DecodedBatch] | None:
    keys = sorted(
        {*zip(batch.topics, batch.partitions, strict=True)}
        | {(r.topic, r.partition) for r in batch.rejections}
    )
    if len(keys) > 1:
        first = set(keys[: len(keys) // 2])
        return (
            _select(batch, lambda t, p, o: (t, p) in first),
            _select(batch, lambda t, p, o: (t, p) not in first),
        )
    offsets = sorted({*batch.offsets} | {r.offset for r in batch.rejections})
    if len(offsets) < 2:
        return None
    cut = offsets[len(offsets) // 2 - 1]
    return _select(batch, lambda t, p, o: o <= cut), _select(batch, lambda t, p, o: o > cut)


def _select(batch: DecodedBatch, keep: Callable[[str, int, int], bool]) -> DecodedBatch:
    rows = [
        i
        for i, (t, p, o) in enumerate(
            zip(batch.topics, batch.partitions, batch.offsets, strict=True)
        )
        if keep(t, p, o)
    ]
    out = DecodedBatch(
        rejections=[r for r in batch.rejections if keep(r.topic, r.partition, r.offset)]
    )
    for name in _PER_EVENT:
        column = getattr(batch, name)
        if len(column) == len(batch.events):
            setattr(out, name, [column[i] for i in rows])
    return out


def merge_batches(batches: Sequence[DecodedBatch]) -> DecodedBatch:
    """One batch from consecutive writer-topic records, in order, each source offset once.

    Two workers may have published the same offsets (a rebalance, a worker that died before
    its commit): rows at or below an offset an *earlier* record already carried for their
    partition are dropped here, so the sink sees offsets that never go back within a partition.
    Per-event lists that some record lacks (e.g. `teams`, set by the writer) come out empty.
    """
    if len(batches) == 1:
        return batches[0]
    out = DecodedBatch()
    complete = {name: True for name in _PER_EVENT}
    high: dict[tuple[str, int], int] = {}
    for batch in batches:
        before = dict(high)
        rows = []
        for i, key in enumerate(zip(batch.topics, batch.partitions, strict=True)):
            offset = batch.offsets[i]
            if offset > before.get(key, -1):
                rows.append(i)
            if offset > high.get(key, -1):
                high[key] = offset
        for name in _PER_EVENT:
            column = getattr(batch, name)
            if len(column) != len(batch.events):
                complete[name] = complete[name] and not batch.events
                continue
            getattr(out, name).extend(
                column if len(rows) == len(column) else [column[i] for i in rows]
            )
        for rejection in batch.rejections:
            key = (rejection.topic, rejection.partition)
            if rejection.offset > before.get(key, -1):
                out.rejections.append(rejection)
            if rejection.offset > high.get(key, -1):
                high[key] = rejection.offset
    for name, whole in complete.items():
        if not whole:
            setattr(out, name, [])
    return out


def ensure_writer_topic(
    bootstrap: str,
    topic: str,
    timeout_s: float = 30.0,
    *,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Create the writer topic (one partition: the writer reads one ordered log) if missing."""
    try:
        admin = make_admin(bootstrap, security=security, request_timeout_ms=int(timeout_s * 1000))
    except KafkaError as exc:
        raise KafkaUnavailable(unreachable_message(bootstrap, security)) from exc
    try:
        if topic not in set(admin.list_topics()):
            new = NewTopic(
                topic,
                num_partitions=1,
                replication_factor=-1,
                topic_configs={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
            )
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([new], timeout_ms=int(timeout_s * 1000))
    except KafkaError as exc:
        raise KafkaUnavailable(f"{unreachable_message(bootstrap)} ({exc})") from exc
    finally:
        admin.close()


class KafkaBatchPublisher:
    """The worker's sink in UPTAKE_WRITER=kafka mode; see the module docstring for the contract.

    Not thread-safe: one thread calls `write`; `stop()` may be called from any thread.
    """

    dead_letters = None  # the writer dead-letters what it writes

    def __init__(
        self,
        producer: KafkaProducer,
        topic: str,
        retry: RetryPolicy | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.retry = retry or RetryPolicy()
        self.max_record_bytes = max_record_bytes
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def forget_watermarks(self) -> None:
        """Nothing to forget: the writer keeps the watermarks."""

    def write(self, batch: DecodedBatch) -> dict[str, int]:
        """Publish the batch; returns {} (no table was written by this process)."""
        if not batch.consumed:
            return {}
        records = split_batch(batch, self.max_record_bytes)

        def publish() -> None:
            for record in records:  # one at a time: a record lands after the previous one
                self.producer.send(self.topic, value=record, partition=0).get(
                    timeout=PUBLISH_TIMEOUT_S
                )

        retry_until_stopped(
            publish, f"publishing to {self.topic}", self._stopping, self.retry, logger=log
        )
        return {}


def publisher_for(bootstrap: str, topic: str, **producer: Any) -> KafkaBatchPublisher:
    from pipeline.kafka.producer import make_producer

    security = {k: v for k, v in producer.items() if k.startswith(("security_", "sasl_", "ssl_"))}
    # `compression` (UPTAKE_KAFKA_COMPRESSION) passes through to make_producer with the rest.
    ensure_writer_topic(bootstrap, topic, security=security)
    config = {"linger_ms": 0, "max_request_size": TOPIC_MAX_MESSAGE_BYTES, **producer}
    return KafkaBatchPublisher(make_producer(bootstrap, **config), topic)
