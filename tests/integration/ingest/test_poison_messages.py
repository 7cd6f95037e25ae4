"""Hole 2 of issue #16 with the real worker, broker and engine: a message that makes an ingest
step raise (UPTAKE_CHAOS_POISON, through the fault seam) is dead-lettered as `internal_error`,
and every other event of its batch is stored once — none lost, none counted twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from pipeline.devtools.simulate.org import GroundTruth, Organisation, generate
from pipeline.kafka.producer import make_producer, produce
from tests.conftest import Pipeline
from tests.integration.ingest.test_dead_letters import read_at_least

pytestmark = pytest.mark.integration

MARKER = "poison-marker-16"
EVENTS = 2_000


def poison_event() -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "source": "gateway",
        "team": "team-poison",
        "user": MARKER,
        "capability": "api-gateway",
        "data": {"api": "orders", "operation": "GET /", "status_code": 200, "latency_ms": 3.0},
    }


def send_with_poison(pipeline_env: Pipeline) -> GroundTruth:
    """EVENTS simulated events in 25-event messages, and one poison message in the middle."""
    truth = GroundTruth()
    events = list(generate(Organisation.synthetic(16, teams=5), EVENTS, 16, truth=truth))
    topic = pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        produce(producer, topic, events[: EVENTS // 2], per_message=25, key_of=lambda e: "k")
        producer.send(topic, key=b"k", value=msgspec.json.encode(poison_event())).get(30)
        produce(producer, topic, events[EVENTS // 2 :], per_message=25, key_of=lambda e: "k")
        producer.flush()
    finally:
        producer.close()
    return truth


def figures(pipeline_env: Pipeline) -> dict[str, int]:
    one = pipeline_env.rows(
        "SELECT (SELECT count() FROM events FINAL) AS events, "
        "(SELECT uniqExact(event_id) FROM events) AS ids, "
        "(SELECT sum(events) FROM usage_day) AS rolled_up, "
        "(SELECT count() FROM rejected_events WHERE reason = 'internal_error') AS internal"
    )[0]
    return {k: int(v) for k, v in one.items()}


def by_team_type(pipeline_env: Pipeline) -> dict[tuple[str, str], int]:
    rows = pipeline_env.rows("SELECT team, event_type, count() AS n FROM events GROUP BY ALL")
    return {(r["team"], r["event_type"]): int(r["n"]) for r in rows}


@pytest.mark.parametrize("step", ["decode", "pseudonymise"])
def test_a_message_that_makes_a_step_raise_is_dead_lettered_and_the_rest_is_stored(
    pipeline_env: Pipeline, step: str
) -> None:
    pipeline_env.run("migrate")
    truth = send_with_poison(pipeline_env)
    pipeline_env.env["UPTAKE_CHAOS_POISON"] = f"{step}:{MARKER}"
    pipeline_env.env["UPTAKE_BATCH_MAX_MESSAGES"] = "500"  # the poison shares a batch
    worker = pipeline_env.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()
    assert figures(pipeline_env) == {
        "events": EVENTS,  # none lost
        "ids": EVENTS,  # none twice
        "rolled_up": EVENTS,  # the rollups count each once
        "internal": 1,  # the poison message, rejected
    }
    assert by_team_type(pipeline_env) == dict(truth.by_team_type)
    log = pipeline_env.worker_log()
    assert f"{step} raised on" in log and "dead-lettered as internal_error" in log, log
    rejected = pipeline_env.rows("SELECT detail, raw FROM rejected_events")
    assert len(rejected) == 1
    assert rejected[0]["detail"] == f"{step} raised RuntimeError: chaos: a poison message"
    assert MARKER in rejected[0]["raw"]
    dead = read_at_least(
        pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"], pipeline_env.env["UPTAKE_DLQ_TOPIC"], 1
    )
    assert [headers["uptake-reason"] for _, headers in dead] == ["internal_error"]
    assert MARKER.encode() in dead[0][0]


def test_negative_control_a_skipped_batch_is_caught_as_lost(pipeline_env: Pipeline) -> None:
    """Shows the test above catches the fault: the poison's batch acked unwritten, as faust did
    when the exception escaped the loop body, is found missing by the same figures."""
    pipeline_env.run("migrate")
    send_with_poison(pipeline_env)
    pipeline_env.env["UPTAKE_CHAOS_POISON"] = f"pseudonymise:{MARKER}:skip"
    pipeline_env.env["UPTAKE_BATCH_MAX_MESSAGES"] = "500"
    worker = pipeline_env.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()
    counted = figures(pipeline_env)
    assert counted["events"] < EVENTS and counted["internal"] == 0, counted
    print(f"\nnegative control: {EVENTS - counted['events']} of {EVENTS} events lost")
