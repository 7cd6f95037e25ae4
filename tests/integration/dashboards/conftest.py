"""The session's dashboard warehouse (`filled_warehouse`), built by tests/support/dashboards.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.devtools.simulate.org import Organisation, Scenario, generate, with_feedback
from pipeline.kafka.producer import make_producer, produce
from tests.conftest import env_without_settings
from tests.support.dashboards import EVENTS, SEED, TEAMS, WINDOW, FilledWarehouse


@pytest.fixture(scope="session")
def filled_warehouse(
    kafka_bootstrap: str,
    clickhouse_server_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> FilledWarehouse:
    home = tmp_path_factory.mktemp("dashboards-home")
    suffix = uuid.uuid4().hex[:8]
    url = (
        f"{clickhouse_server_url}/dash_{suffix}"
        if clickhouse_server_url
        else f"chdb://{home / 'warehouse'}"
    )
    env = env_without_settings()
    topic = f"test.dashboards.{suffix}"
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "UPTAKE_CLICKHOUSE_URL": url,
            "UPTAKE_HOME": str(home),
            "UPTAKE_EVENTS_TOPIC": topic,
            "UPTAKE_DLQ_TOPIC": f"{topic}.dlq",
            "UPTAKE_CONSUMER_GROUP": f"test-dashboards-{suffix}",
            "UPTAKE_METRICS_PORT": "0",
            "UPTAKE_ADOPTION_GAUGES_REFRESH_S": "0",
            "UPTAKE_FLUSH_INTERVAL_S": "0.5",
            # Nine weeks of history: the live lateness limit must let them in.
            "UPTAKE_MAX_LATENESS_S": str(int((WINDOW + timedelta(days=7)).total_seconds())),
            "PYTHONUNBUFFERED": "1",
        }
    )
    org = Organisation.synthetic(SEED, teams=TEAMS)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    filled = FilledWarehouse(url, env, end - WINDOW, end, tuple(t.name for t in org.teams))
    filled.uptake("migrate")
    producer = make_producer(kafka_bootstrap)
    try:
        events = with_feedback(  # the developer-feedback panels need ratings
            generate(org, EVENTS, SEED, end=end, window=WINDOW, scenario=Scenario()), SEED
        )
        produce(producer, topic, events)
    finally:
        producer.close()
    worker = filled.uptake("worker", "--exit-when-idle", "5", timeout=900)
    filled.worker_log = worker.stdout + worker.stderr
    filled.uptake("impact")  # the impact dashboard shows its estimates
    return filled
