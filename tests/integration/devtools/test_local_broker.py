"""The local single-node Kafka broker (devtools.broker) against a real JVM, plus the jar cache.

The integration tests start real brokers on free ports in tmp_path and always stop them.
The ensure_jars tests fake Maven and need neither java nor a network.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.devtools import broker as broker_mod
from pipeline.devtools.broker import BrokerError, LocalBroker, broker_answers, ensure_jars

needs_java = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="needs java and mvn on PATH (Debian: openjdk-17-jre-headless, maven)",
)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that were free on 127.0.0.1 a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


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


def test_stale_pid_file_is_cleaned_up(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    b = LocalBroker(tmp_path / "kafka", port=port, controller_port=controller_port)
    b.home.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    b.pid_file.write_text(f"{dead.pid}\n")
    assert not b.status(timeout=1).running
    assert not b.pid_file.exists()
    b.pid_file.write_text("garbage\n")
    assert b.stop() is False
    assert not b.pid_file.exists()


# --------------------------------------------------------------------------------------------
# ensure_jars with a fake Maven


class FakeMaven:
    """Stands in for subprocess.run: 'copies' the given jar names into -DoutputDirectory."""

    def __init__(self, jars: list[str], returncode: int = 0) -> None:
        self.jars = jars
        self.returncode = returncode
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        out = Path(next(a for a in cmd if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
        if self.returncode == 0:
            for name in self.jars:
                (out / name).write_bytes(name.encode())
        return subprocess.CompletedProcess(cmd, self.returncode, "", "[ERROR] no network")


@pytest.fixture
def fake_pom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>v1</project>")
    monkeypatch.setattr(broker_mod, "POM_FILE", pom)
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    return pom


def test_ensure_jars_runs_maven_only_when_needed(
    tmp_path: Path, fake_pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    maven = FakeMaven(["a-1.jar", "b-1.jar"])
    monkeypatch.setattr(broker_mod.subprocess, "run", maven)
    quiet = lambda _: None  # noqa: E731

    lib = ensure_jars(cache, progress=quiet)
    assert lib == cache.resolve() / "lib"
    assert sorted(p.name for p in lib.iterdir()) == ["a-1.jar", "b-1.jar"]
    assert len(maven.calls) == 1
    assert maven.calls[0][0] == "/usr/bin/mvn"
    assert "dependency:copy-dependencies" in maven.calls[0]
    assert "-DincludeScope=runtime" in maven.calls[0]
    assert (cache / "pom.sha256").is_file()

    assert ensure_jars(cache, progress=quiet) == lib  # marker matches: no Maven
    assert len(maven.calls) == 1

    # The pom changed: Maven again, the new jar set replaces the old one.
    fake_pom.write_text("<project>v2</project>")
    maven.jars = ["a-2.jar", "b-1.jar"]
    ensure_jars(cache, progress=quiet)
    assert len(maven.calls) == 2
    assert sorted(p.name for p in lib.iterdir()) == ["a-2.jar", "b-1.jar"]

    # lib emptied behind our back: Maven again even though the marker matches.
    for jar in lib.iterdir():
        jar.unlink()
    ensure_jars(cache, progress=quiet)
    assert len(maven.calls) == 3
    assert sorted(p.name for p in lib.iterdir()) == ["a-2.jar", "b-1.jar"]
    assert not [p for p in cache.iterdir() if p.name.startswith("lib-")]  # temp dirs gone


def test_ensure_jars_maven_failure_writes_no_marker(
    tmp_path: Path, fake_pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(broker_mod.subprocess, "run", FakeMaven(["a.jar"], returncode=1))
    with pytest.raises(BrokerError, match="Maven failed") as info:
        ensure_jars(cache, progress=lambda _: None)
    assert "no network" in str(info.value)
    assert not (cache / "pom.sha256").exists()


def test_ensure_jars_names_the_package_when_mvn_is_missing(
    tmp_path: Path, fake_pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="apt-get install maven"):
        ensure_jars(tmp_path / "cache", progress=lambda _: None)
