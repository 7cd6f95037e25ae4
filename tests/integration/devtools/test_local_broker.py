"""The local single-node Kafka broker (devtools.broker) against a real JVM: real brokers on free
ports in tmp_path, always stopped (without a JVM: tests/unit/devtools/test_broker.py).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.devtools.broker import BrokerError, LocalBroker, broker_answers
from tests.support.ports import free_ports

needs_java = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="needs java and mvn on PATH (Debian: openjdk-17-jre-headless, maven)",
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    port, controller_port = free_ports(2)
    b = LocalBroker(tmp_path / "kafka", port=port, controller_port=controller_port)
    try:
        yield b
    finally:
        b.stop(timeout=10)


@pytest.mark.integration
@needs_java
def test_start_produce_consume_stop(broker: LocalBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    messages: list[str] = []
    started = broker.start(timeout=90, progress=messages.append)

    assert started.running and started.answering
    assert started.pid is not None
    assert started.bootstrap == f"127.0.0.1:{broker.port}" == broker.bootstrap
    assert broker_answers(broker.bootstrap)
    assert broker.pid_file.read_text().strip() == str(started.pid)
    assert (broker.data_dir / "meta.properties").is_file()
    cluster_id = broker.cluster_id_file.read_text().strip()
    assert len(cluster_id) == 22
    assert cluster_id in (broker.data_dir / "meta.properties").read_text()
    assert any("Formatting" in m for m in messages)

    # Auto-created topic (auto.create.topics.enable) with num.partitions=4.
    topic = f"uptake-test-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", max_block_ms=20_000, retries=10
    )
    try:
        sent = producer.send(topic, key=b"k", value=b"hello kafka").get(timeout=20)
    finally:
        producer.close(timeout=5)

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False
    )
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}
        tp = TopicPartition(topic, sent.partition)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while not values and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
    finally:
        consumer.close()
    assert values == [b"hello kafka"]

    status = broker.status()
    assert status.running and status.answering
    assert status.pid == started.pid
    assert status.home == broker.home
    assert status.log_file == broker.home / "logs" / "broker.log"
    assert status.log_file.stat().st_size > 0

    assert broker.stop() is True
    assert not broker_answers(broker.bootstrap, timeout=1)
    after = broker.status(timeout=1)
    assert not after.running and not after.answering and after.pid is None
    assert not broker.pid_file.exists()
    assert broker.stop() is False


@pytest.mark.integration
@needs_java
def test_start_twice_restart_and_foreign_port(broker: LocalBroker, tmp_path: Path) -> None:
    first = broker.start(timeout=90, progress=lambda _: None)
    messages: list[str] = []
    second = broker.start(timeout=90, progress=messages.append)
    assert second.running and second.answering
    assert second.pid == first.pid
    assert any("already running" in m for m in messages), messages

    # Another home cannot take a port our broker holds.
    (other_port,) = free_ports(1)
    other = LocalBroker(tmp_path / "other", port=broker.port, controller_port=other_port)
    with pytest.raises(BrokerError, match=str(broker.port)):
        other.start(timeout=5, progress=lambda _: None)
    assert not other.pid_file.exists()
    assert not other.status(timeout=1).running

    # A stopped broker restarts on its formatted storage, with the same cluster id.
    cluster_id = broker.cluster_id_file.read_text()
    assert broker.stop() is True
    messages.clear()
    third = broker.start(timeout=90, progress=messages.append)
    assert third.running and third.answering and third.pid != first.pid
    assert not any("Formatting" in m for m in messages), messages
    assert broker.cluster_id_file.read_text() == cluster_id


# --------------------------------------------------------------------------------------------
# ensure_jars with a fake Maven
