"""Every codec decodes; a batch that does not is named (topic, partition, offsets) and stops the
worker with status 65 after exporting uptake_undecodable_batch_offset.

Record batches are built with aiokafka's own builder, so the bytes are what a broker returns.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

import aiokafka.codec
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from pipeline.kafka import undecodable
from pipeline.kafka.undecodable import (
    EXIT_UNDECODABLE,
    AttributedPartitionRecords,
    UndecodableBatch,
    UndecodableBatchError,
)
from pipeline.observability import metrics

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
TP = TopicPartition("uptake.events", 3)


def batch_bytes(codec: str, base_offset: int, count: int = 20) -> bytearray:
    builder = DefaultRecordBatchBuilder(2, CODEC_IDS[codec], 0, -1, -1, -1, 1 << 20)
    for i in range(count):
        builder.append(i, 1_700_000_000_000 + i, b"team-a", b'{"n": %d}' % i * 10, [])
    buffer = builder.build()
    struct.pack_into(">q", buffer, 0, base_offset)  # base offset: outside the CRC
    return buffer


def records_of(buffer: bytes, fetch_offset: int) -> AttributedPartitionRecords:
    return AttributedPartitionRecords(
        TP, MemoryRecords(bytes(buffer)), None, fetch_offset, None, None, True, 0
    )


@pytest.fixture
def seen() -> Iterator[list[UndecodableBatch]]:
    found: list[UndecodableBatch] = []
    AttributedPartitionRecords.handler = found.append
    yield found
    AttributedPartitionRecords.handler = None


def test_every_client_library_reads_every_kafka_codec() -> None:
    """aiokafka (the faust worker, bench) and kafka-python (writer, dlq replay, the lifecycle's
    changelog reader, soak) both find the libraries of gzip, snappy, lz4 and zstd."""
    missing = undecodable.missing_codecs()
    assert missing == {}, (
        f"codec libraries missing: {missing}; aiokafka needs "
        f"{undecodable.CODEC_LIBRARIES['aiokafka']}, kafka-python "
        f"{undecodable.CODEC_LIBRARIES['kafka-python']} (run `make .venv/.installed`)"
    )


@pytest.mark.parametrize("codec", list(CODEC_IDS))
def test_each_codec_decodes_through_the_attributed_fetcher(
    codec: str, seen: list[UndecodableBatch]
) -> None:
    records = list(records_of(batch_bytes(codec, 100), 100))
    assert [r.offset for r in records] == list(range(100, 120))
    assert records[3].value == b'{"n": 3}' * 10 and records[3].topic == TP.topic
    assert seen == []


def test_a_missing_codec_is_named_with_its_coordinates(
    monkeypatch: pytest.MonkeyPatch, seen: list[UndecodableBatch]
) -> None:
    good = batch_bytes("lz4", 500, 5)
    bad = batch_bytes("zstd", 505, 20)
    monkeypatch.setattr(aiokafka.codec, "has_zstd", lambda: False)  # as if cramjam lacked it
    records = records_of(good + bad, 500)
    taken = []
    with pytest.raises(UndecodableBatchError) as raised:
        for record in records:
            taken.append(record.offset)
    assert taken == [500, 501, 502, 503, 504]  # the batch before is read
    assert seen == [raised.value.batch]
    batch = seen[0]
    assert (batch.topic, batch.partition, batch.offset, batch.next_offset) == (
        "uptake.events",
        3,
        505,
        525,
    )
    assert batch.codec == "zstd" and batch.missing_codec
    text = batch.explain("uptake-worker", "k1:9092")
    assert "uptake.events partition 3 at offset 505" in text
    assert "zstd" in text and "install the codec libraries" in text and "cramjam" in text


def test_a_damaged_batch_is_named_with_the_offset_reset_that_skips_it(
    seen: list[UndecodableBatch],
) -> None:
    bad = batch_bytes("snappy", 40, 10)
    bad[-5] ^= 0xFF  # inside the compressed records: the CRC no longer matches
    with pytest.raises(UndecodableBatchError):
        list(records_of(bad, 42))  # a fetch from the middle of the batch
    (batch,) = seen
    assert (batch.offset, batch.next_offset, batch.codec, batch.missing_codec) == (
        42,
        50,
        "snappy",
        False,
    )
    assert "CorruptRecordException" in batch.error
    text = batch.explain("grp", "k1:9092")
    assert (
        "kafka-consumer-groups.sh --bootstrap-server k1:9092 --group grp --topic "
        "uptake.events:3 --reset-offsets --to-offset 50 --execute"
    ) in text
    assert "docs/operations.md#uptakeundecodablebatch" in text


def test_the_worker_handler_exports_the_offset_logs_and_exits_65() -> None:
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("uptake.worker").addHandler(handler)
    waited: list[float] = []
    codes: list[int] = []
    try:
        stop = undecodable.stop_worker(
            "grp", "k1:9092", 12.0, exit_=codes.append, sleep=waited.append
        )
        stop(UndecodableBatch("uptake.events", 2, 777, 790, "zstd", True, "no zstd"))
    finally:
        logging.getLogger("uptake.worker").removeHandler(handler)
    gauge = metrics.REGISTRY.get_sample_value(
        "uptake_undecodable_batch_offset", {"topic": "uptake.events", "partition": "2"}
    )
    assert gauge == 777
    assert waited == [12.0] and codes == [EXIT_UNDECODABLE] == [65]
    assert any("uptake.events partition 2 at offset 777" in line for line in lines), lines
    assert any("status 65 in 12s" in line for line in lines)


def test_install_makes_aiokafkas_fetcher_build_attributed_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka.consumer import fetcher

    monkeypatch.setattr(fetcher, "PartitionRecords", fetcher.PartitionRecords)
    monkeypatch.setattr(AttributedPartitionRecords, "handler", None)
    undecodable.install(print)
    assert fetcher.PartitionRecords is AttributedPartitionRecords
    assert AttributedPartitionRecords.handler is print


def kafka_python_batch(codec: str, base_offset: int, count: int = 20) -> bytearray:
    from kafka.record.default_records import DefaultRecordBatchBuilder as Builder

    builder = Builder(2, CODEC_IDS[codec], 0, -1, -1, -1, 1 << 20)
    for i in range(count):
        builder.append(i, 1_700_000_000_000 + i, b"k", b'{"n": %d}' % i * 10, [])
    buffer = builder.build()
    struct.pack_into(">q", buffer, 0, base_offset)
    return buffer


def kafka_python_records(buffer: bytes, fetch_offset: int) -> list[int]:
    from kafka.record.memory_records import MemoryRecords as KafkaPythonMemoryRecords
    from kafka.structs import TopicPartition as KafkaPythonTopicPartition

    records = undecodable.KafkaPythonPartitionRecords(
        fetch_offset,
        KafkaPythonTopicPartition("uptake.events.dlq", 0),
        KafkaPythonMemoryRecords(bytes(buffer)),
    )
    return [record.offset for record in records.take()]


@pytest.mark.parametrize("codec", list(CODEC_IDS))
def test_kafka_python_reads_each_codec_through_the_attributed_fetcher(codec: str) -> None:
    assert kafka_python_records(kafka_python_batch(codec, 7), 7) == list(range(7, 27))


def test_kafka_python_names_a_batch_whose_codec_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import kafka.codec

    buffer = kafka_python_batch("lz4", 0, 3) + kafka_python_batch("zstd", 3, 10)
    monkeypatch.setattr(kafka.codec, "has_zstd", lambda: False)
    with pytest.raises(UndecodableBatchError) as raised:
        kafka_python_records(buffer, 3)
    batch = raised.value.batch
    assert (batch.topic, batch.partition, batch.offset, batch.next_offset, batch.codec) == (
        "uptake.events.dlq",
        0,
        3,
        13,
        "zstd",
    )
    assert batch.missing_codec
    assert "uptake.events.dlq partition 0 at offset 3" in batch.explain()


def test_kafka_python_names_a_damaged_batch() -> None:
    buffer = kafka_python_batch("gzip", 100, 10)
    buffer[-3] ^= 0xFF
    with pytest.raises(UndecodableBatchError) as raised:
        kafka_python_records(buffer, 100)
    batch = raised.value.batch
    assert (batch.offset, batch.next_offset, batch.missing_codec) == (100, 110, False)
    assert "--reset-offsets --to-offset 110" in batch.explain("uptake-writer", "k:9092")


def test_the_command_line_turns_an_undecodable_batch_into_its_message_and_65(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kafka.consumer.fetcher import Fetcher

    from pipeline import cli

    monkeypatch.setattr(Fetcher, "PartitionRecords", Fetcher.PartitionRecords)
    batch = UndecodableBatch("uptake.enriched", 0, 41, 45, "zstd", True, "no zstd")

    def writer(args: object) -> int:
        assert Fetcher.PartitionRecords is undecodable.KafkaPythonPartitionRecords
        raise UndecodableBatchError(batch)

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "settings", writer))
    assert cli.main(["settings"]) == EXIT_UNDECODABLE
    err = capsys.readouterr().err
    assert (
        "error: cannot decode the Kafka record batch of uptake.enriched partition 0 at offset 41"
        in err
    )
    assert "Traceback" not in err


def _with_func(parser: object, command: str, func: object) -> object:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction):
            action.choices[command].set_defaults(func=func)
    return parser
