"""The emitter SDK against the session's real Kafka broker: validation before sending, batching
per team into JSON-array messages, exactly-once landing of every event, defaults, flush on close
and at interpreter exit, and DeliveryError when no broker takes the events."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

import pipeline
from pipeline.contract.events import ApiCallEvent
from pipeline.contract.reasons import Reason
from pipeline.kafka.topics import ensure_topics
from pipeline.sdk import (
    DeliveryError,
    InvalidEvent,
    UptakeClient,
    api_call,
    deploy,
    incident,
    model_training,
    pack_messages,
)
from tests.conftest import REPO, free_port
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"test.sdk.{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, {name: 3})
    return name


def event(team: str | None = "checkout", **changes: Any) -> dict[str, Any]:
    built = api_call(
        capability="api-gateway",
        team=team,
        service=f"{team or 'lonely'}-api",
        api="orders",
        operation="POST /v1/orders",
        status_code=201,
        latency_ms=23.7,
    )
    built.update(changes)
    return built


# --- validation before sending -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason", "path"),
    [
        ({"data": {"api": "orders"}}, Reason.SCHEMA_VIOLATION, "$.data"),
        ({"team": None, "service": None}, Reason.MISSING_ATTRIBUTION, "$.team"),
        ({"event_type": "page_view"}, Reason.UNKNOWN_EVENT_TYPE, "$.event_type"),
        ({"schema_version": 7}, Reason.UNSUPPORTED_VERSION, "$.schema_version"),
        ({"event_id": "not-a-uuid"}, Reason.SCHEMA_VIOLATION, "$.event_id"),
        (
            {"occurred_at": datetime.now(UTC) + timedelta(hours=1)},
            Reason.OCCURRED_IN_FUTURE,
            "$.occurred_at",
        ),
        ({"occurred_at": "2025-06-01T09:30:12"}, Reason.SCHEMA_VIOLATION, "$.occurred_at"),
        ({"latency_ms": object()}, Reason.NOT_JSON, "$"),
    ],
)
def test_an_invalid_event_raises_with_reason_and_path_and_is_not_sent(
    kafka_bootstrap: str, topic: str, changes: dict[str, Any], reason: Reason, path: str
) -> None:
    bad, changes = event(), dict(changes)
    data_change = changes.pop("latency_ms", None)
    if data_change is not None:
        bad["data"]["latency_ms"] = data_change
    bad.update(changes)
    with (
        UptakeClient(kafka_bootstrap, topic, source="sdk-test") as client,
        pytest.raises(InvalidEvent) as raised,
    ):
        client.emit(bad)
    error = raised.value
    assert error.reason == reason
    assert error.path.startswith(path), error.path
    assert str(error).startswith(f"invalid event: {reason.value} at {error.path}: ")
    assert read_topic(kafka_bootstrap, topic) == []


def test_the_error_names_the_offending_field() -> None:
    error = InvalidEvent(Reason.SCHEMA_VIOLATION, "Expected `int` <= 599 - at `$.data.status_code`")
    assert error.path == "$.data.status_code"
    assert str(error) == (
        "invalid event: schema_violation at $.data.status_code: Expected `int` <= 599"
    )


# --- batching, keys, exactly once --------------------------------------------------------------


def test_events_land_as_json_arrays_keyed_by_team_each_exactly_once(
    kafka_bootstrap: str, topic: str
) -> None:
    teams = ["checkout", "search", "payments"]
    sent: list[dict[str, Any]] = []
    with UptakeClient(
        kafka_bootstrap, topic, source="sdk-test", batch_events=40, linger_ms=60_000
    ) as client:
        for i in range(250):
            e = event(teams[i % 3])
            sent.append(e)
            client.emit(e)
        service_only = event(None)  # no team: keyed by service
        sent.append(service_only)
        client.emit(service_only)
    records = read_topic(kafka_bootstrap, topic)
    landed: list[dict[str, Any]] = []
    for key, value in records:
        batch = msgspec.json.decode(value)
        assert isinstance(batch, list) and 1 <= len(batch) <= 40
        assert {e.get("team") or e["service"] for e in batch} == {key.decode()}
        landed.extend(batch)
    ids = Counter(e["event_id"] for e in landed)
    assert sorted(ids) == sorted(e["event_id"] for e in sent)
    assert set(ids.values()) == {1}, "an event landed twice"
    assert {key for key, _ in records} == {b"checkout", b"search", b"payments", b"lonely-api"}
    # Full batches were sent as soon as they filled: 250 events over 3 teams of 40 each.
    assert Counter(len(msgspec.json.decode(v)) for _, v in records)[40] == 6


def test_concurrent_emitters_lose_and_duplicate_nothing(kafka_bootstrap: str, topic: str) -> None:
    teams = ["checkout", "search"]
    sent: list[list[str]] = [[] for _ in range(4)]
    with UptakeClient(
        kafka_bootstrap, topic, source="sdk-test", batch_events=25, linger_ms=5
    ) as client:

        def emit_many(n: int) -> None:
            for i in range(100):
                e = event(teams[i % 2])
                sent[n].append(e["event_id"])
                client.emit(e)

        threads = [threading.Thread(target=emit_many, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    landed = [
        e["event_id"] for _, v in read_topic(kafka_bootstrap, topic) for e in msgspec.json.decode(v)
    ]
    assert len(landed) == 400
    assert sorted(landed) == sorted(i for ids in sent for i in ids)


def test_defaults_are_filled_and_the_callers_dict_is_untouched(
    kafka_bootstrap: str, topic: str
) -> None:
    bare = {
        "event_type": "deploy",
        "capability": "deploy-pipeline",
        "team": "checkout",
        "data": {
            "deployment_id": "dep-1",
            "service": "checkout-api",
            "environment": "production",
            "status": "succeeded",
        },
    }
    before = msgspec.json.encode(bare)
    started = datetime.now(UTC)
    with UptakeClient(kafka_bootstrap, topic, source="deploy-pipeline") as client:
        client.emit(bare)
    assert msgspec.json.encode(bare) == before
    [(key, value)] = read_topic(kafka_bootstrap, topic)
    [landed] = msgspec.json.decode(value)
    assert key == b"checkout"
    assert uuid.UUID(landed["event_id"]).version == 4
    assert landed["schema_version"] == 1
    assert landed["source"] == "deploy-pipeline"
    assert landed["occurred_at"].endswith("Z")
    occurred = datetime.fromisoformat(landed["occurred_at"])
    assert started - timedelta(seconds=1) <= occurred <= datetime.now(UTC)


def test_an_events_own_source_and_id_are_kept(kafka_bootstrap: str, topic: str) -> None:
    own = event(source="risk-scoring", event_id="9b7e4a52-0c1d-4f3e-8a6b-5d2c1e0f9a8b")
    with UptakeClient(kafka_bootstrap, topic, source="sdk-test") as client:
        client.emit(own)
    [(_, value)] = read_topic(kafka_bootstrap, topic)
    [landed] = msgspec.json.decode(value)
    assert landed["source"] == "risk-scoring"
    assert landed["event_id"] == "9b7e4a52-0c1d-4f3e-8a6b-5d2c1e0f9a8b"


def test_builders_and_structs_give_valid_events(kafka_bootstrap: str, topic: str) -> None:
    now = datetime.now(UTC)
    built = [
        api_call(
            capability="risk-scoring",
            team="payments",
            api="risk",
            operation="POST /v2/decisions",
            status_code=200,
            latency_ms=41,
            outcome={"name": "risk_decision", "decision": "approve", "value": 249.9},
        ),
        deploy(
            deployment_id="dep-4f1c2a9b",
            service="checkout-api",
            team="checkout",
            environment="production",
            status="succeeded",
            started_at=now - timedelta(minutes=7),
            commits=[("e83c516", now - timedelta(hours=3))],
        ),
        model_training(
            run_id="run-1", model="ranker", status="succeeded", duration_s=12.5, team="search"
        ),
        incident(
            incident_id="inc-1",
            service="checkout-api",
            severity="sev2",
            status="opened",
            opened_at=now - timedelta(minutes=1),
        ),
    ]
    struct = msgspec.json.decode(
        msgspec.json.encode(event("search", source="struct")), type=ApiCallEvent
    )
    with UptakeClient(kafka_bootstrap, topic, source="sdk-test") as client:
        for e in built:
            client.emit(e)
        client.emit(struct)
    landed = [e for _, v in read_topic(kafka_bootstrap, topic) for e in msgspec.json.decode(v)]
    assert sorted(e["event_type"] for e in landed) == sorted(
        ["api_call", "deploy", "model_training", "incident", "api_call"]
    )
    assert str(struct.event_id) in {e["event_id"] for e in landed}
    assert UptakeClient.deploy is deploy  # the builders are reachable from the class too


def test_linger_sends_a_partial_batch_without_flush(kafka_bootstrap: str, topic: str) -> None:
    client = UptakeClient(kafka_bootstrap, topic, source="sdk-test", linger_ms=50)
    try:
        client.emit(event())
        deadline = time.monotonic() + 10
        while not read_topic(kafka_bootstrap, topic):
            assert time.monotonic() < deadline, "the lingering batch was never sent"
            time.sleep(0.2)
    finally:
        client.close()


def test_close_flushes_what_is_buffered(kafka_bootstrap: str, topic: str) -> None:
    client = UptakeClient(kafka_bootstrap, topic, source="sdk-test", linger_ms=600_000)
    for _ in range(3):
        client.emit(event())
    assert read_topic(kafka_bootstrap, topic) == []  # still buffered: the linger is 10 minutes
    client.close()
    [(_, value)] = read_topic(kafka_bootstrap, topic)
    assert len(msgspec.json.decode(value)) == 3
    with pytest.raises(RuntimeError, match="closed"):
        client.emit(event())
    client.close()  # idempotent


def test_events_are_flushed_at_interpreter_exit(kafka_bootstrap: str, topic: str) -> None:
    script = textwrap.dedent(
        f"""
        from pipeline import UptakeClient
        from pipeline.sdk import api_call
        client = UptakeClient({kafka_bootstrap!r}, {topic!r}, source="atexit", linger_ms=600000)
        for _ in range(5):
            client.emit(api_call(capability="api-gateway", team="checkout", api="orders",
                                 operation="GET /v1/orders", status_code=200, latency_ms=3))
        # no flush, no close: the atexit hook delivers them
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    landed = [e for _, v in read_topic(kafka_bootstrap, topic) for e in msgspec.json.decode(v)]
    assert len(landed) == 5
    assert {e["source"] for e in landed} == {"atexit"}


def test_the_package_exports_the_client() -> None:
    assert pipeline.UptakeClient is UptakeClient
    assert pipeline.InvalidEvent is InvalidEvent
    assert pipeline.DeliveryError is DeliveryError
    assert {"UptakeClient", "InvalidEvent", "DeliveryError", "__version__"} <= set(pipeline.__all__)


# --- delivery failures -------------------------------------------------------------------------


def test_no_broker_at_all_is_a_delivery_error() -> None:
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="no Kafka broker answers"):
        UptakeClient(f"127.0.0.1:{free_port()}", "t", timeout_s=1)
    assert time.monotonic() - started < 10


def test_flush_raises_delivery_error_with_the_events_kafka_did_not_take() -> None:
    # api_version given: the producer skips bootstrapping, so the client starts and every send
    # then fails to reach a broker (a closed port), which flush() must report.
    client = UptakeClient(
        f"127.0.0.1:{free_port()}",
        "t",
        source="sdk-test",
        batch_events=2,
        timeout_s=1,
        producer_config={"api_version": (2, 8)},
    )
    events = [event() for _ in range(3)]
    for e in events:
        client.emit(e)  # the first two form a full batch and are sent at once
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        client.close(timeout=2)
    assert time.monotonic() - started < 10
    assert sorted(e["event_id"] for e in raised.value.events) == sorted(
        e["event_id"] for e in events
    )
    assert "did not acknowledge 3 event(s)" in str(raised.value)
    assert raised.value.errors


# --- packing (no broker needed, but cheap) ----------------------------------------------------


def test_pack_messages_respects_count_and_size_and_keeps_order() -> None:
    items = [("a", b'{"n":%d}' % i) for i in range(7)] + [("b", b'{"n":99}')]
    packed = pack_messages(items, max_events=3)
    assert [(k, msgspec.json.decode(v)) for k, v in packed] == [
        ("a", [{"n": 0}, {"n": 1}, {"n": 2}]),
        ("a", [{"n": 3}, {"n": 4}, {"n": 5}]),
        ("a", [{"n": 6}]),
        ("b", [{"n": 99}]),
    ]
    by_size = pack_messages([("a", b"x" * 40)] * 5, max_events=100, max_bytes=100)
    assert [len(v) for _, v in by_size] == [83, 83, 42]
