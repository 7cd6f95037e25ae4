"""A foreign client: librdkafka (confluent-kafka) producing in every compression codec.

- the real worker (faust on aiokafka) writes every event exactly once, for each of gzip,
  snappy, lz4 and zstd, single-event and JSON-array messages, with keys and without;
- kafka-python's consumer (writer, dlq replay, the lifecycle's changelog reader, soak) and
  aiokafka's read every codec too;
- a batch the worker cannot decode (zstd, with the codec hidden from aiokafka in the worker
  process only) stops it with status 65, a message naming topic, partition and offset, and the
  gauge on /metrics meanwhile.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from tests.conftest import Pipeline, wait_until

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")


def _event(codec: str, i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5, seconds=i)).isoformat(),
        "source": f"librdkafka-{codec}",
        "team": "payments",
        "capability": "api-gateway",
        "data": {"api": "orders", "operation": "GET /x", "status_code": 200, "latency_ms": 3.5},
    }


def _librdkafka(bootstrap: str, codec: str) -> Any:
    return confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 20,  # several messages per record batch: compression applies to batches
            "acks": "all",
            "client.id": f"foreign-{codec}",
        }
    )


def _send(producer: Any, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    failed: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    for key, value in messages:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0, "librdkafka did not deliver every message"
    assert failed == []


def _messages(codec: str) -> tuple[list[tuple[bytes | None, bytes]], set[str]]:
    """100 single events keyed, 100 unkeyed, 10 arrays of 10 keyed, 10 unkeyed: 400 events."""
    encode = msgspec.json.encode
    messages: list[tuple[bytes | None, bytes]] = []
    ids: set[str] = set()
    n = 0
    for keyed in (True, False):
        for _ in range(100):
            event = _event(codec, n)
            n += 1
            ids.add(event["event_id"])
            messages.append((b"payments" if keyed else None, encode(event)))
        for _ in range(10):
            array = [_event(codec, n + j) for j in range(10)]
            n += 10
            ids.update(e["event_id"] for e in array)
            messages.append((b"payments" if keyed else None, encode(array)))
    return messages, ids


def test_the_worker_writes_every_librdkafka_codec_exactly_once(pipeline_env: Pipeline) -> None:
    pipeline_env.run("migrate")
    bootstrap = pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    sent: dict[str, set[str]] = {}
    for codec in CODECS:
        messages, ids = _messages(codec)
        producer = _librdkafka(bootstrap, codec)
        _send(producer, topic, messages)
        sent[f"librdkafka-{codec}"] = ids

    worker = pipeline_env.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()

    rows = pipeline_env.rows(
        "SELECT source, count() AS n, uniqExact(event_id) AS ids FROM events GROUP BY source"
    )
    stored = {r["source"]: (int(r["n"]), int(r["ids"])) for r in rows}
    assert stored == {source: (len(ids), len(ids)) for source, ids in sent.items()}
    assert sum(len(ids) for ids in sent.values()) == 1600
    stored_ids = {r["event_id"] for r in pipeline_env.rows("SELECT event_id FROM events")}
    assert stored_ids == set().union(*sent.values())
    assert pipeline_env.rows("SELECT count() AS n FROM rejected_events")[0]["n"] == 0


def test_kafka_python_and_aiokafka_read_every_librdkafka_codec(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer

    topic = f"test.codecs.{uuid.uuid4().hex[:8]}"
    expected: list[bytes] = []
    for codec in CODECS:
        messages = [(None, f"{codec}-{i}".encode() * 20) for i in range(50)]
        _send(_librdkafka(kafka_bootstrap, codec), topic, messages)
        expected.extend(value for _, value in messages)

    consumer = KafkaConsumer(  # as writer, dlq replay, the changelog reader and soak build it
        topic,
        bootstrap_servers=kafka_bootstrap.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    try:
        read_by_kafka_python = [message.value for message in consumer]
    finally:
        consumer.close()
    assert sorted(read_by_kafka_python) == sorted(expected)

    async def read_with_aiokafka() -> list[bytes]:
        from aiokafka import AIOKafkaConsumer

        aio = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await aio.start()
        values: list[bytes] = []
        try:
            while len(values) < len(expected):
                batch = await aio.getmany(timeout_ms=5000)
                if not batch:
                    break
                values.extend(m.value for records in batch.values() for m in records)
        finally:
            await aio.stop()
        return values

    assert sorted(asyncio.run(read_with_aiokafka())) == sorted(expected)


# The worker as `uptake worker` starts it, with aiokafka's zstd support hidden: what a worker
# whose image lacks the codec library would meet.
WORKER_WITHOUT_ZSTD = (
    "import sys, aiokafka.codec; aiokafka.codec.has_zstd = lambda: False; "
    "from pipeline.cli import main; sys.exit(main(['worker', '--exit-when-idle', '4']))"
)


def test_an_undecodable_batch_stops_the_worker_with_its_coordinates(
    pipeline_env: Pipeline,
) -> None:
    import subprocess

    pipeline_env.run("migrate")
    bootstrap = pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    pipeline_env.run("worker", "--exit-when-idle", "2")  # creates the topics; nothing to read
    messages, _ = _messages("zstd")
    producer = _librdkafka(bootstrap, "zstd")
    for key, value in messages[:50]:  # one partition: every record batch goes there
        producer.produce(topic, value=value, key=key, partition=1)
    assert producer.flush(30) == 0

    env = {**pipeline_env.env, "UPTAKE_UNDECODABLE_EXIT_DELAY_S": "20"}
    log = open(pipeline_env.home / "worker.log", "a")  # noqa: SIM115 - closed below
    try:
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER_WITHOUT_ZSTD],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def gauge() -> float | None:
            try:
                with urllib.request.urlopen(pipeline_env.metrics_url, timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                return None
            for line in text.splitlines():
                if line.startswith("uptake_undecodable_batch_offset{"):
                    assert f'topic="{topic}"' in line and 'partition="1"' in line, line
                    return float(line.rsplit(" ", 1)[1]) + 1  # offset 0 is a value too
            return None

        assert wait_until(gauge, timeout=120, what="uptake_undecodable_batch_offset") == 1
        code = worker.wait(timeout=120)
    finally:
        log.close()
    output = pipeline_env.worker_log()
    assert code == 65, output
    assert f"cannot decode the Kafka record batch of {topic} partition 1 at offset 0" in output
    assert "zstd" in output and "install the codec libraries" in output
    assert "Traceback" not in output
    assert pipeline_env.rows("SELECT count() AS n FROM events")[0]["n"] == 0


def test_a_kafka_python_command_names_an_undecodable_batch(pipeline_env: Pipeline) -> None:
    """`uptake dlq replay` (kafka-python, like `uptake writer` and the changelog reader) stops
    with the batch's coordinates and status 65 instead of a traceback."""
    import subprocess

    dlq = pipeline_env.env["UPTAKE_DLQ_TOPIC"]
    producer = _librdkafka(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"], "zstd")
    for _ in range(30):  # partition 0: whatever partitions the broker gives a new topic
        producer.produce(dlq, value=b'{"not": "an event"}' * 10, partition=0)
    assert producer.flush(30) == 0
    hide_zstd = (
        "import sys, kafka.codec; kafka.codec.has_zstd = lambda: False; "
        "from pipeline.cli import main; sys.exit(main(['dlq', 'replay', '--dry-run']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_zstd],
        env=pipeline_env.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 65, done.stdout + done.stderr
    assert f"cannot decode the Kafka record batch of {dlq} partition 0 at offset 0" in done.stderr
    assert "zstd" in done.stderr and "Traceback" not in done.stderr
