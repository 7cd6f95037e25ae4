"""Insert failures in the real worker: retried with backoff, and never committed when unwritten.

faust-streaming 0.15.3 acks a `take()` batch even when the loop body raises, so a failure that
escaped the body would commit offsets of events never written. These tests run the real worker
with injected insert failures (UPTAKE_CHAOS_FAIL_INSERTS) and check the warehouse afterwards.
"""

from __future__ import annotations

import signal

import pytest

from pipeline.devtools.simulate.org import GroundTruth, Organisation, generate
from pipeline.ingest.steps import EXIT_SINK_FAILED
from pipeline.kafka.producer import make_producer, produce
from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration


def send_events(pipeline_env: Pipeline, count: int, seed: int) -> GroundTruth:
    truth = GroundTruth()
    events = generate(Organisation.synthetic(seed, teams=5), count, seed, truth=truth)
    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        produce(producer, pipeline_env.env["UPTAKE_EVENTS_TOPIC"], events, per_message=25)
    finally:
        producer.close()
    return truth


def stored_counts(pipeline_env: Pipeline) -> dict[tuple[str, str], int]:
    rows = pipeline_env.rows("SELECT team, event_type, count() AS n FROM events GROUP BY ALL")
    return {(r["team"], r["event_type"]): int(r["n"]) for r in rows}


def test_failed_inserts_are_retried_and_counts_stay_exact(pipeline_env: Pipeline) -> None:
    pipeline_env.run("migrate")
    truth = send_events(pipeline_env, 3_000, seed=11)
    pipeline_env.env["UPTAKE_CHAOS_FAIL_INSERTS"] = "3"
    worker = pipeline_env.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()
    assert pipeline_env.worker_log().count("retrying in") == 3
    assert stored_counts(pipeline_env) == dict(truth.by_team_type)


def test_a_worker_stopped_while_inserts_fail_commits_nothing(pipeline_env: Pipeline) -> None:
    pipeline_env.run("migrate")
    truth = send_events(pipeline_env, 2_000, seed=12)
    pipeline_env.env["UPTAKE_CHAOS_FAIL_INSERTS"] = "-1"
    worker = pipeline_env.start_worker()
    wait_until(
        lambda: "retrying in" in pipeline_env.worker_log() or worker.poll() is not None,
        timeout=120,
        what="the first failed insert",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == EXIT_SINK_FAILED, pipeline_env.worker_log()
    assert "without committing" in pipeline_env.worker_log()

    # The warehouse is back: a new worker finds every event still uncommitted in Kafka.
    del pipeline_env.env["UPTAKE_CHAOS_FAIL_INSERTS"]
    worker = pipeline_env.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()
    assert stored_counts(pipeline_env) == dict(truth.by_team_type)
