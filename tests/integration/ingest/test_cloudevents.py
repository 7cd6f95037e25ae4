"""CloudEvents 1.0 through the real pipeline: Kafka structured and binary mode into ClickHouse.

Structured events (one per message, and the JSON batch format) are sent with kafka-python;
binary-mode events (`ce_*` headers) with confluent-kafka (librdkafka), a foreign client, with
the headers and values the CloudEvents SDK's Kafka binding makes. The worker runs with
`--exit-when-idle` against its own warehouse; valid events must land in `events` with the
CloudEvent's id, time and type, invalid ones in `rejected_events` with the contract's reasons.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from pipeline.kafka.producer import make_producer
from tests.conftest import Pipeline

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def deploy_event(i: int, ce_type: str = "dev.uptake.deploy.v1", **attributes: Any) -> CloudEvent:
    return CloudEvent(
        {
            "id": str(uuid.UUID(int=1000 + i)),
            "source": "ci",
            "type": ce_type,
            "time": NOW - timedelta(minutes=i),
            "subject": "checkout-api",
            **attributes,
        },
        {
            "capability": "deploy-pipeline",
            "team": "checkout",
            "service": "checkout-api",
            "data": {
                "deployment_id": f"d-{i}",
                "service": "checkout-api",
                "environment": "production",
                "status": "succeeded",
            },
        },
    )


def test_cloudevents_in_structured_and_binary_mode_land_in_events_or_rejected_events(
    pipeline_env: Pipeline,
) -> None:
    from confluent_kafka import Producer

    env = pipeline_env.env
    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["UPTAKE_EVENTS_TOPIC"]
    pipeline_env.run("migrate")
    fmt = JSONFormat()
    structured_one = deploy_event(0)
    batch = [deploy_event(1, "deploy"), deploy_event(2, "dev.uptake.deploy")]
    binary_ok = deploy_event(3, "deploy.v1", datacontenttype="application/json")
    missing_time = json.loads(fmt.write(deploy_event(4)))
    del missing_time["time"]
    old_spec = json.loads(fmt.write(deploy_event(5)))
    old_spec["specversion"] = "0.3"
    binary_unknown = deploy_event(6, "com.example.deploy")
    binary_too_new = deploy_event(7, "dev.uptake.deploy.v9")

    producer = make_producer(bootstrap)
    try:
        message = ce_kafka.to_structured_event(structured_one)
        producer.send(topic, value=message.value, headers=list(message.headers.items()))
        producer.send(topic, value=b"[" + b", ".join(fmt.write(e) for e in batch) + b"]")
        producer.send(topic, value=json.dumps([missing_time, old_spec]).encode())
        producer.flush()
    finally:
        producer.close()
    foreign = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for event in (binary_ok, binary_unknown, binary_too_new):
        message = ce_kafka.to_binary_event(event)
        foreign.produce(topic, value=message.value, key=b"checkout", headers=message.headers)
    assert foreign.flush(30) == 0, "confluent-kafka did not deliver"
    del foreign  # librdkafka's threads stop with the last reference

    worker = pipeline_env.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()

    rows = pipeline_env.rows(
        "SELECT toString(event_id) AS id, event_type, schema_version, "
        "toUnixTimestamp64Milli(occurred_at) AS ms, source, team, service, capability "
        "FROM events ORDER BY id"
    )
    accepted = [structured_one, *batch, binary_ok]
    assert [r["id"] for r in rows] == sorted(e.get_id() for e in accepted)
    by_id = {e.get_id(): e for e in accepted}
    for row in rows:
        event = by_id[row["id"]]
        time = event.get_time()
        assert time is not None
        assert int(row["ms"]) == int(time.timestamp() * 1000)
        assert (row["event_type"], int(row["schema_version"]), row["source"]) == ("deploy", 1, "ci")
        assert (row["team"], row["service"], row["capability"]) == (
            "checkout",
            "checkout-api",
            "deploy-pipeline",
        )

    rejected = pipeline_env.rows(
        "SELECT reason, detail, event_type, raw, _index AS i FROM rejected_events ORDER BY reason"
    )
    assert sorted((r["reason"], r["detail"].rsplit(" - at ", 1)[1]) for r in rejected) == [
        ("schema_violation", "`$.time`"),
        ("unknown_event_type", "`$.type`"),
        ("unsupported_version", "`$.specversion`"),
        ("unsupported_version", "`$.type`"),
    ]
    raws = [json.loads(r["raw"]) for r in rejected]
    assert {raw["id"] for raw in raws} == {
        missing_time["id"],
        old_spec["id"],
        binary_unknown.get_id(),
        binary_too_new.get_id(),
    }
    binary_raw = next(raw for raw in raws if raw["id"] == binary_unknown.get_id())
    assert binary_raw["type"] == "com.example.deploy" and binary_raw["data"]["team"] == "checkout"
    assert sorted(int(r["i"]) for r in rejected if r["reason"] != "unknown_event_type") == [0, 0, 1]
