"""A real Prometheus scrapes a real worker: its counters equal what the worker was sent.

Prometheus (Debian's `prometheus` package, installed by `make test`) runs on a free loopback
port with the shipped recording and alerting rules, scraping the worker's /metrics every second.
The worker consumes a known set of good and bad events from a private topic; the test then asks
Prometheus's HTTP API, not the worker, for the numbers.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import pipeline
from pipeline.config.settings import KafkaSettings
from pipeline.kafka.producer import make_producer
from tests.conftest import REPO, Pipeline, wait_until
from tests.support.prometheus import Prometheus, running_prometheus

pytestmark = pytest.mark.integration

RULES = REPO / "deploy" / "prometheus" / "rules"


def _event(i: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=0xABC000 + i)),
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
        "source": "test",
        "team": "payments",
        "capability": "api-gateway",
        "data": {"api": "orders", "operation": "GET /x", "status_code": 200, "latency_ms": 3},
    }
    event.update(changes)
    return event


def _deploy(i: int, status: str, lead: timedelta) -> dict[str, Any]:
    deployed = datetime.now(UTC) - timedelta(minutes=2)
    return _event(
        i,
        event_type="deploy",
        capability="deploy-pipeline",
        occurred_at=deployed.isoformat(),
        data={
            "deployment_id": f"dep-{i}",
            "service": "payments-api",
            "environment": "production",
            "status": status,
            "commits": [{"sha": "abcdef1", "committed_at": (deployed - lead).isoformat()}],
        },
    )


BAD_BODY = {"api": "orders", "operation": "GET /x", "status_code": 999, "latency_ms": 1}


def _messages() -> list[bytes]:
    """The messages sent, their events 2 minutes old when built (call it right before sending:
    the freshness check below depends on it)."""
    return [
        msgspec.json.encode([_event(i) for i in range(40)]),
        *(msgspec.json.encode(_event(i)) for i in range(40, 45)),
        msgspec.json.encode(_deploy(50, "succeeded", timedelta(hours=1))),
        msgspec.json.encode(_deploy(51, "failed", timedelta(hours=5))),
        b"this is not json",
        b"",
        b"[]",
        msgspec.json.encode(_event(60, event_type="telemetry_blob")),
        msgspec.json.encode(_event(61, team=None, service=None)),
        msgspec.json.encode(_event(62, data=BAD_BODY)),
        msgspec.json.encode([_event(63), _event(64, data=BAD_BODY), _event(65)]),
    ]


MESSAGE_COUNT = len(_messages())
ACCEPTED = Counter({"api_call": 40 + 5 + 2, "deploy": 2})
REJECTED = Counter(
    {
        "not_json": 2,
        "empty_batch": 1,
        "unknown_event_type": 1,
        "missing_attribution": 1,
        "schema_violation": 2,
    }
)
CONSUMED = sum(ACCEPTED.values()) + sum(REJECTED.values())


@pytest.fixture
def prometheus(pipeline_env: Pipeline, tmp_path: Path) -> Iterator[Prometheus]:
    rules = [RULES / "uptake-recording.yml", RULES / "uptake-alerts.yml"]
    with running_prometheus(pipeline_env.env["UPTAKE_METRICS_PORT"], tmp_path, rules) as server:
        yield server


def test_prometheus_sees_exactly_what_the_worker_processed(
    pipeline_env: Pipeline, prometheus: Prometheus
) -> None:
    pipeline_env.run("migrate")
    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        for value in _messages():
            producer.send(pipeline_env.env["UPTAKE_EVENTS_TOPIC"], key=b"payments", value=value)
        producer.flush()
    finally:
        producer.close()

    pipeline_env.env["UPTAKE_ADOPTION_GAUGES_REFRESH_S"] = "1"
    worker = pipeline_env.start_worker()
    try:

        def scraped(promql: str, expected: float) -> bool:
            if worker.poll() is not None:
                raise AssertionError(f"worker died:\n{pipeline_env.worker_log()}")
            return prometheus.value(promql) == expected

        wait_until(
            lambda: scraped("sum(uptake_events_consumed_total)", CONSUMED),
            timeout=60,
            what=f"Prometheus to see {CONSUMED} consumed events\n{pipeline_env.worker_log()}",
        )
        assert prometheus.value('up{job="uptake-worker"}') == 1
        accepted = prometheus.by("event_type", "sum by (event_type) (uptake_events_accepted_total)")
        assert accepted == ACCEPTED
        rejected = prometheus.by("reason", "sum by (reason) (uptake_events_rejected_total)")
        assert rejected == REJECTED
        assert prometheus.value("sum(uptake_dead_letters_written_total)") == REJECTED.total()
        assert prometheus.value("sum(uptake_messages_consumed_total)") == MESSAGE_COUNT
        written = prometheus.by("table", "sum by (table) (uptake_clickhouse_inserted_rows_total)")
        assert written == {"events": ACCEPTED.total(), "rejected_events": REJECTED.total()}
        per_insert = prometheus.by("table", "sum by (table) (uptake_clickhouse_insert_rows_sum)")
        assert per_insert == written
        (build,) = prometheus.query("uptake_build_info")
        assert build["metric"]["version"] == pipeline.__version__
        assert build["metric"]["warehouse_kind"] in ("chdb", "server")
        freshness = prometheus.value("uptake_event_freshness_seconds")
        assert freshness is not None and 100 <= freshness <= 600  # events occurred 2 min ago

        # Sampled every few seconds: every partition of the topic, all written and committed.
        partitions = int(
            pipeline_env.env.get("UPTAKE_TOPIC_PARTITIONS", KafkaSettings.topic_partitions)
        )
        wait_until(
            lambda: (
                prometheus.value("count(uptake_consumer_lag_messages)") == partitions
                and prometheus.value("sum(uptake_consumer_lag_messages)") == 0
            ),
            timeout=30,
            what="the consumer lag of every partition to be 0",
        )
        # The adoption collector in the worker read the warehouse in the background.
        wait_until(
            lambda: scraped(
                'uptake_adoption_active_teams{capability="api-gateway",window="7d"}', 1
            ),
            timeout=30,
            what="the adoption gauges",
        )
        # The failed deploy never went live: one deployment, no change failure (0006).
        assert prometheus.value("uptake_dora_change_failure_ratio") == 0.0
        assert prometheus.value("uptake_dora_deployment_frequency_per_week") == 0.25
        assert prometheus.value("uptake_dora_lead_time_seconds") == pytest.approx(3600)
        # faust's commits are timed by Uptake's sensor (the offsets above were committed).
        commits = prometheus.value("sum(uptake_kafka_commit_duration_seconds_count)")
        assert commits is not None and commits >= 1
        # The lifecycle agent saw payments' first use of both capabilities (one UTC day each,
        # or two when the events straddle midnight), and nothing else.
        wait_until(
            lambda: scraped(
                'sum(uptake_lifecycle_milestones_written_total{milestone="first_use",'
                'action="publish"})',
                2,
            ),
            timeout=30,
            what="the lifecycle's first-use milestones",
        )
        milestones = prometheus.by(
            "milestone", "sum by (milestone) (uptake_lifecycle_milestones_written_total)"
        )
        assert milestones == {"first_use": 2, "activated": 0, "churned": 0, "reactivated": 0}
        activity = prometheus.value("sum(uptake_lifecycle_activity_records_total)")
        assert activity is not None and 2 <= activity <= ACCEPTED.total()  # one per event at most
        # The shipped recording rules load and evaluate against the real series.
        wait_until(
            lambda: prometheus.value("job:uptake_events_consumed:rate5m") is not None,
            timeout=15,
            what="the recording rules to be evaluated",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, pipeline_env.worker_log()
    assert "level=error" not in prometheus.log.read_text(), prometheus.log.read_text()
