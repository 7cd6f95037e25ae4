"""The writer topic's records (pipeline/ingest/remote.py): encoding, splitting, merging."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.devtools.simulate.org import Organisation, generate
from pipeline.ingest.remote import decode_batch, encode_batch, merge_batches, split_batch
from pipeline.sink.clickhouse import SinkStopped


def decoded(first_offset: int = 0, messages: int = 60, partitions: int = 3) -> DecodedBatch:
    events = list(generate(Organisation.synthetic(5, teams=4), messages * 10, 5))
    source = [
        SourceMessage(
            "t", i % partitions, first_offset + i, msgspec.json.encode(events[i * 10 : i * 10 + 10])
        )
        for i in range(messages)
    ]
    source.append(SourceMessage("t", 1, first_offset + messages, b"garbage"))
    batch = BatchDecoder().decode(source)
    batch.user_keys = [
        hashlib.sha256(e.user.encode()).hexdigest()[:32] if e.user else "" for e in batch.events
    ]
    return batch


def rows(batch: DecodedBatch) -> list[tuple[object, ...]]:
    return [
        (t, p, o, e.event_id, k)
        for t, p, o, e, k in zip(
            batch.topics,
            batch.partitions,
            batch.offsets,
            batch.events,
            batch.user_keys,
            strict=True,
        )
    ]


def test_a_batch_survives_the_round_trip_without_raw_user_ids() -> None:
    batch = decoded()
    assert any(e.user for e in batch.events)
    record = encode_batch(batch)
    back = decode_batch(record)
    assert rows(back) == rows(batch)
    assert back.rejections == batch.rejections
    assert all(e.user is None for e in back.events)
    assert [msgspec.structs.replace(e, user=None) for e in batch.events] == back.events
    for user in {e.user for e in batch.events if e.user}:
        assert user.encode() not in record


def test_an_unpseudonymised_batch_is_refused() -> None:
    batch = decoded()
    batch.user_keys = []
    with pytest.raises(ValueError, match="not pseudonymised"):
        encode_batch(batch)


def test_split_keeps_each_message_whole_and_each_partition_in_order() -> None:
    batch = decoded()
    records = split_batch(batch, max_bytes=20_000)
    assert len(records) > 3
    parts = [decode_batch(r) for r in records]
    assert all(len(r) <= 20_000 for r in records if len({*decode_batch(r).offsets}) > 1)
    seen: dict[tuple[str, int], int] = {}
    owner: dict[tuple[str, int, int], int] = {}
    for n, part in enumerate(parts):
        for t, p, o in zip(part.topics, part.partitions, part.offsets, strict=True):
            assert owner.setdefault((t, p, o), n) == n, "a message was split over two records"
            assert o >= seen.get((t, p), -1), "a partition went back in offset order"
            seen[(t, p)] = o
    assert sorted(rows(merge_batches(parts))) == sorted(rows(batch))
    assert merge_batches(parts).rejections == batch.rejections


def test_merge_writes_overlapping_records_once() -> None:
    first = decoded(first_offset=0, messages=30)
    overlapping = decoded(first_offset=0, messages=45)  # a second worker re-read 0..29
    merged = merge_batches([first, overlapping])
    offsets = list(zip(merged.partitions, merged.offsets, strict=True))
    expected = sorted(set(zip(overlapping.partitions, overlapping.offsets, strict=True)))
    assert sorted(set(offsets)) == expected
    per_message = {k: offsets.count(k) for k in set(offsets)}
    assert set(per_message.values()) == {10}  # ten events per message, each message once
    assert len(merged.user_keys) == len(merged.events)
    keys = [(r.partition, r.offset) for r in merged.rejections]
    assert len(keys) == len(set(keys))


def test_merge_leaves_a_list_some_records_lack_empty() -> None:
    first, second = decoded(0, 10), decoded(100, 10)
    first.teams = ["t"] * len(first.events)
    merged = merge_batches([first, second])
    assert merged.teams == [] and len(merged.user_keys) == len(merged.events)


class FailingProducer:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    def send(self, topic: str, value: bytes, partition: int) -> FailingProducer:
        self._value = value
        return self

    def get(self, timeout: float) -> None:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("no acknowledgement")
        self.sent.append(self._value)


def test_publisher_retries_until_acknowledged_and_gives_up_when_stopped() -> None:
    from pipeline.ingest.remote import KafkaBatchPublisher
    from pipeline.sink.clickhouse import RetryPolicy

    producer = FailingProducer(failures=2)
    publisher = KafkaBatchPublisher(
        producer,  # type: ignore[arg-type]
        "w",
        retry=RetryPolicy(first_delay_s=0.01, max_delay_s=0.01),
    )
    batch = decoded()
    assert publisher.write(batch) == {}
    assert [decode_batch(r).offsets for r in producer.sent] == [batch.offsets]
    stopped = KafkaBatchPublisher(FailingProducer(failures=-1), "w")  # type: ignore[arg-type]
    stopped.stop()
    with pytest.raises(SinkStopped):
        stopped.write(batch)
