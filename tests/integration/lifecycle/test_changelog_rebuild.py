"""Hole 8 of issue #16 on the real broker and engine: a deleted lifecycle changelog topic is
rebuilt from the events table, not started empty.

The worker runs a simulated organisation's first 50 days; then the changelog topic is deleted
and the worker is started again on the last 10 days. Milestones and lifecycle rows must equal
the rules applied to all 60 days (tests/support/lifecycle_brute.py). A lifecycle started empty would
take each team's next use for a first use.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from kafka import KafkaAdminClient

from pipeline.devtools.simulate.org import Organisation, generate
from pipeline.lifecycle.rules import day_of_iso
from tests.conftest import Pipeline, wait_until
from tests.integration.ingest.test_team_resolution import send
from tests.support.lifecycle_brute import LAG_DAYS, expected_lifecycle, stored_lifecycle

pytestmark = pytest.mark.integration


def delete_topic(pipeline_env: Pipeline, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        assert topic in admin.list_topics()
        admin.delete_topics([topic], timeout_ms=30_000)
        wait_until(lambda: topic not in admin.list_topics(), timeout=60, what=f"{topic} deleted")
    finally:
        admin.close()


def test_a_deleted_changelog_is_rebuilt_from_the_events_table(pipeline_env: Pipeline) -> None:
    pipeline_env.env.update(
        UPTAKE_MAX_LATENESS_S=str(100 * 86400),
        UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS=str(LAG_DAYS),
        UPTAKE_BATCH_MAX_MESSAGES="100",
    )
    pipeline_env.run("migrate")
    events = list(generate(Organisation.synthetic(8, teams=6), 3000, 8, window=timedelta(days=60)))
    split = max(day_of_iso(e["occurred_at"]) for e in events) - 10
    before = [e for e in events if day_of_iso(e["occurred_at"]) < split]
    after = [e for e in events if day_of_iso(e["occurred_at"]) >= split]
    send(pipeline_env, before)
    worker = pipeline_env.start_worker("--exit-when-idle", "6")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()[-3000:]
    assert "rebuilding the lifecycle state" not in pipeline_env.worker_log(), "nothing to rebuild"

    changelog = f"{pipeline_env.env['UPTAKE_CONSUMER_GROUP']}-lifecycle-changelog"
    delete_topic(pipeline_env, changelog)
    send(pipeline_env, after)
    worker = pipeline_env.start_worker("--exit-when-idle", "12")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()[-3000:]

    truth, states = expected_lifecycle(events)
    milestones, lifecycle = stored_lifecycle(pipeline_env)
    assert len(milestones) == len(set(milestones)), "a milestone was written twice"
    assert set(milestones) == truth
    assert lifecycle == states
    assert "rebuilding the lifecycle state from the events table" in pipeline_env.worker_log()
    first_uses = [m for m in truth if m[2] == "first_use"]
    print(
        f"\nlifecycle rebuild: {len(events)} events, {len(truth)} milestones "
        f"({len(first_uses)} first uses) for {len(states)} pairs, changelog deleted once"
    )
