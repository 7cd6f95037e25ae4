"""How the lifecycle sits in the worker's faust app."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.config.settings import Settings
from pipeline.ingest.app import build_app
from pipeline.kafka.topics import partition_count
from pipeline.warehouse.connection import connect
from pipeline.warehouse.migrations import migrate

pytestmark = pytest.mark.integration


def test_the_worker_app_has_the_lifecycle_agent_and_no_faust_table(
    kafka_bootstrap: str, tmp_path: Path, inprocess_warehouse_url: str
) -> None:
    """A faust Table in this app makes faust-streaming 0.15.3 skip records of the events topic
    after a restart (pipeline/lifecycle/state.py): the lifecycle keeps its own changelog."""
    suffix = uuid.uuid4().hex[:8]
    with connect(inprocess_warehouse_url, create_database=True) as warehouse:
        migrate(warehouse, progress=lambda line: None)  # a new changelog: `events` is read
    settings = Settings.from_env(
        {},
        clickhouse_url=inprocess_warehouse_url,
        bootstrap=kafka_bootstrap,
        home=tmp_path,
        events_topic=f"test.app.{suffix}",
        consumer_group=f"test-app-{suffix}",
        topic_partitions=3,
        metrics_port=0,
    )
    sink: Any = SimpleNamespace(dead_letters=None)  # build_app keeps it, reads dead_letters
    app = build_app(settings, sink)
    assert len(app.tables) == 0
    assert {agent.name for agent in app.agents.values()} >= {"uptake.ingest", "uptake.lifecycle"}
    changelog = f"test-app-{suffix}-lifecycle-changelog"
    assert partition_count(kafka_bootstrap, changelog) == 3
    assert partition_count(kafka_bootstrap, f"test.app.{suffix}.activity") == 3
    assert partition_count(kafka_bootstrap, f"test.app.{suffix}.milestones") == 3
