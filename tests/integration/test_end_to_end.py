"""Simulated events → real Kafka → faust worker → real ClickHouse, compared with ground truth."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from pipeline.devtools.simulate.org import GroundTruth, Organisation, generate
from pipeline.kafka.producer import make_producer, produce
from tests.conftest import Pipeline, wait_until
from tests.support.metrics import scrape, total

pytestmark = pytest.mark.integration


def test_simulated_events_reach_clickhouse_with_exact_counts(pipeline_env: Pipeline) -> None:
    pipeline_env.run("migrate")
    truth = GroundTruth()
    org = Organisation.synthetic(seed=7, teams=10)
    events = generate(org, 12_000, seed=7, truth=truth)
    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        report = produce(producer, pipeline_env.env["UPTAKE_EVENTS_TOPIC"], events, per_message=50)
    finally:
        producer.close()
    assert report.events == truth.total == 12_000

    worker = pipeline_env.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()

    rows = pipeline_env.rows(
        "SELECT team, event_type, count() AS n, uniqExact(event_id) AS ids "
        "FROM events GROUP BY team, event_type"
    )
    stored = {(r["team"], r["event_type"]): int(r["n"]) for r in rows}
    assert stored == dict(truth.by_team_type)
    assert all(int(r["n"]) == int(r["ids"]) for r in rows), "an event was stored twice"
    assert pipeline_env.rows("SELECT count() AS n FROM rejected_events")[0]["n"] == 0
    assert "consumed 12,000 events (12,000 accepted, 0 rejected)" in pipeline_env.worker_log()
    users = pipeline_env.rows(
        "SELECT uniqExact(user_key) AS keys, countIf(user_key LIKE '%.eng%') AS raw FROM events"
    )[0]
    assert int(users["raw"]) == 0, "raw user identifiers reached ClickHouse"
    generated_users = {u for team in org.teams for u in team.users}
    assert 0 < int(users["keys"]) <= len(generated_users)


def _event(i: int, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": str(uuid.UUID(int=i + 1)),
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "source": "test",
        "team": "payments",
        "capability": "api-gateway",
        "data": {"api": "orders", "operation": "GET /x", "status_code": 200, "latency_ms": 3.5},
    }
    event.update(changes)
    return event


def test_bad_input_is_rejected_with_reasons_and_the_worker_keeps_going(
    pipeline_env: Pipeline,
) -> None:
    pipeline_env.run("migrate")
    encode = msgspec.json.encode
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    bad_body = {"api": "orders", "operation": "GET /x", "status_code": 999, "latency_ms": 1}
    messages: list[bytes] = [
        encode([_event(i) for i in range(0, 100)]),
        b"this is not json",
        b"\xff\xfe\x00garbage",
        b"",
        b"42",
        b"[]",
        encode(_event(100, event_type="telemetry_blob")),
        encode(_event(101, schema_version=9)),
        encode(_event(102, team=None, service=None)),
        encode(_event(103, occurred_at=future)),
        encode(_event(104, data=bad_body)),
        encode(_event(105, occurred_at="yesterday")),
        # One bad event inside a batch rejects only that event.
        encode([_event(106), _event(107, data=bad_body), _event(108)]),
        encode([_event(i) for i in range(200, 300)]),
    ]
    expected_accepted = 100 + 2 + 100
    expected_reasons = Counter(
        {
            "not_json": 3,  # text, invalid UTF-8, empty value
            "schema_violation": 4,  # 42, status 999, "yesterday", status 999 in the batch
            "empty_batch": 1,
            "unknown_event_type": 1,
            "unsupported_version": 1,
            "missing_attribution": 1,
            "occurred_at_in_future": 1,
        }
    )
    expected_total = expected_accepted + sum(expected_reasons.values())

    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        for value in messages:
            producer.send(pipeline_env.env["UPTAKE_EVENTS_TOPIC"], key=b"payments", value=value)
        producer.flush()
    finally:
        producer.close()

    worker = pipeline_env.start_worker()
    try:

        def consumed_all() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            if worker.poll() is not None:
                raise AssertionError(f"worker died:\n{pipeline_env.worker_log()}")
            try:
                samples = scrape(pipeline_env.metrics_url)
            except OSError:
                return None
            done = total(samples, "uptake_events_consumed_total") >= expected_total
            return samples if done else None

        samples = wait_until(consumed_all, timeout=180, what="the worker to consume everything")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, pipeline_env.worker_log()

    consumed = total(samples, "uptake_events_consumed_total")
    accepted = total(samples, "uptake_events_accepted_total")
    rejected = total(samples, "uptake_events_rejected_total")
    assert consumed == expected_total
    assert consumed == accepted + rejected
    assert accepted == expected_accepted
    by_reason = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "uptake_events_rejected_total"
    }
    assert by_reason == expected_reasons

    stored = pipeline_env.rows(
        "SELECT (SELECT count() FROM events) AS accepted, "
        "(SELECT count() FROM rejected_events) AS rejected"
    )[0]
    assert (int(stored["accepted"]), int(stored["rejected"])) == (
        expected_accepted,
        sum(expected_reasons.values()),
    )
    rejected_rows = pipeline_env.rows("SELECT reason, detail, raw FROM rejected_events")
    assert Counter(r["reason"] for r in rejected_rows) == expected_reasons
    status_reject = [r for r in rejected_rows if "status_code" in r["detail"]]
    assert status_reject and all("$.data.status_code" in r["detail"] for r in status_reject)
    assert any(r["raw"] == "this is not json" for r in rejected_rows), "original bytes are kept"
