"""Uptake's Kafka security settings against a real broker that requires SASL (PLAIN).

The module's own LocalBroker listens with PLAINTEXT (for the readiness probe) and with
SASL_PLAINTEXT on a second port; every client below talks to the SASL port only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from pipeline.config.settings import Settings
from pipeline.devtools.broker import LocalBroker, broker_answers
from pipeline.devtools.simulate.org import GroundTruth, Organisation, generate
from pipeline.kafka.producer import make_producer, produce
from pipeline.kafka.security import client_kwargs
from pipeline.kafka.topics import KafkaUnavailable, ensure_topics
from tests.conftest import Pipeline, env_without_settings, free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "uptake", "s3cret-sasl-pw"


@pytest.fixture(scope="module")
def sasl_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """127.0.0.1:<port> of a broker listener that requires SASL/PLAIN."""
    sasl_port = free_port()
    broker = LocalBroker(
        tmp_path_factory.mktemp("kafka-sasl"),
        port=free_port(),
        controller_port=free_port(),
        sasl_port=sasl_port,
        sasl_users={USER: PASSWORD, "other": "other-pw"},
    )
    broker.start(timeout=120, progress=lambda line: None)
    try:
        yield f"127.0.0.1:{sasl_port}"
    finally:
        broker.stop()


def sasl_env(bootstrap: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "UPTAKE_KAFKA_SASL_MECHANISM": "PLAIN",
        "UPTAKE_KAFKA_SASL_USERNAME": USER,
        "UPTAKE_KAFKA_SASL_PASSWORD": password,
    }


def test_the_sasl_listener_refuses_a_client_without_sasl(sasl_bootstrap: str) -> None:
    assert not broker_answers(sasl_bootstrap, timeout=2.0)
    settings = Settings.from_env(sasl_env(sasl_bootstrap))
    assert broker_answers(sasl_bootstrap, timeout=5.0, security=client_kwargs(settings))


def test_make_producer_with_the_settings_publishes_over_sasl(sasl_bootstrap: str) -> None:
    settings = Settings.from_env(sasl_env(sasl_bootstrap))
    security = client_kwargs(settings)
    topic = f"sasl.{uuid.uuid4().hex[:8]}"
    assert ensure_topics(sasl_bootstrap, {topic: 1}, timeout_s=20, security=security) == [topic]
    producer = make_producer(sasl_bootstrap, **security)
    try:
        for i in range(3):
            producer.send(topic, value=f"m{i}".encode()).get(timeout=20)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=sasl_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        **security,
    )
    try:
        assert [m.value for m in consumer] == [b"m0", b"m1", b"m2"]
    finally:
        consumer.close()


def test_a_wrong_password_fails_with_a_message_naming_the_sasl_settings(
    sasl_bootstrap: str,
) -> None:
    settings = Settings.from_env(sasl_env(sasl_bootstrap, password="wrong-password"))
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable) as refused:
        ensure_topics(sasl_bootstrap, {"never": 1}, timeout_s=5, security=client_kwargs(settings))
    assert time.monotonic() - started < 30
    message = str(refused.value)
    assert "UPTAKE_KAFKA_SASL_PASSWORD" in message and "refuses the login" in message
    assert "wrong-password" not in message
    with pytest.raises(KafkaUnavailable, match="UPTAKE_KAFKA_SASL_USERNAME"):
        make_producer(sasl_bootstrap, bootstrap_timeout_ms=5000, **client_kwargs(settings))


def test_the_faust_worker_reads_and_stores_events_over_sasl(
    sasl_bootstrap: str, warehouse_url: str, tmp_path: Path
) -> None:
    """`uptake simulate` and `uptake worker` (faust/aiokafka) with only the SASL settings."""
    suffix = uuid.uuid4().hex[:8]
    env = env_without_settings()
    env.update(sasl_env(sasl_bootstrap))
    env.update(
        {
            "UPTAKE_CLICKHOUSE_URL": warehouse_url,
            "UPTAKE_HOME": str(tmp_path / "home"),
            "UPTAKE_EVENTS_TOPIC": f"sasl.events.{suffix}",
            "UPTAKE_DLQ_TOPIC": f"sasl.events.dlq.{suffix}",
            "UPTAKE_CONSUMER_GROUP": f"sasl-worker-{suffix}",
            "UPTAKE_METRICS_PORT": "0",
            "UPTAKE_FLUSH_INTERVAL_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    (tmp_path / "home").mkdir()
    pipeline = Pipeline(env, tmp_path / "home")
    pipeline.run("migrate")
    truth = GroundTruth()
    events = generate(Organisation.synthetic(seed=3, teams=3), 500, seed=3, truth=truth)
    settings = Settings.from_env(env)
    ensure_topics(
        sasl_bootstrap,
        {settings.kafka.events_topic: 2},
        timeout_s=20,
        security=client_kwargs(settings),
    )
    producer = make_producer(sasl_bootstrap, **client_kwargs(settings))
    try:
        produce(producer, settings.kafka.events_topic, events, per_message=50)
    finally:
        producer.close()
    worker = pipeline.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=240) == 0, pipeline.worker_log()
    assert PASSWORD not in pipeline.worker_log()
    rows = pipeline.rows("SELECT count() AS n, uniqExact(event_id) AS ids FROM events")
    assert int(rows[0]["n"]) == int(rows[0]["ids"]) == truth.total == 500
    shown = pipeline.run("settings").stdout
    assert PASSWORD not in shown and "UPTAKE_KAFKA_SASL_PASSWORD" in shown
