"""`uptake bench` is repeatable against the real broker: runs in one UPTAKE_HOME neither collide
nor pile up."""

from __future__ import annotations

import json
import re

import pytest
from kafka import KafkaAdminClient

from pipeline.kafka.topics import ensure_topics
from tests.conftest import Pipeline


@pytest.mark.integration
def test_bench_runs_again_in_the_same_home_and_leaves_nothing_behind(
    pipeline_env: Pipeline,
) -> None:
    bootstrap = pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"]
    folder = pipeline_env.home / "bench"

    def in_bench_folder(database: str) -> Pipeline:
        url = f"chdb://{folder}?database={database}"
        return Pipeline({**pipeline_env.env, "UPTAKE_CLICKHOUSE_URL": url}, pipeline_env.home)

    # What earlier runs left: a killed run's database and topic, and the `uptake` database
    # bench versions before per-run databases wrote every run's events to.
    # (The names docs/benchmarks.md gives: bench_<run id>, uptake.bench.<run id>.)
    in_bench_folder("bench_deadbeef0000").run("migrate")
    in_bench_folder("uptake").run("migrate")
    killed = "uptake.bench.deadbeef0000"
    ensure_topics(bootstrap, {killed: 1, f"{killed}.activity": 1})

    # Before run ids were per run, the second run's events all looked like re-sends of the
    # first's to the sink's event-id window: "pipeline stored 0 events, expected 2000".
    runs = []
    for events in (2_000, 2_000, 3_000):
        done = pipeline_env.run(
            "bench", "--events", str(events), "--freshness-rate", "1000", timeout=600
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["events"] == events
        assert result["pipeline_events_per_s"] > 0
        assert result["baseline_events_per_s"] > 0
        topic = re.search(r"events to (uptake\.bench\.\w+)", done.stderr)
        assert topic is not None, done.stderr
        runs.append(topic.group(1))
    assert len(set(runs)) == 3

    # Each run deleted its topics (events, activity, milestones, changelog, faust's own) and
    # the first one the killed run's ...
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        run_ids = [topic.rsplit(".", 1)[-1] for topic in [killed, *runs]]
        left = [t for t in admin.list_topics() for run_id in run_ids if run_id in t]
    finally:
        admin.close()
    assert left == []
    # ... and its database in the bench's warehouse (bench data only); the leftovers are gone.
    databases = (
        in_bench_folder("system")
        .run("query", "--format", "tsv", "SELECT name FROM system.databases ORDER BY name")
        .stdout.split()
    )
    assert not [name for name in databases if name.startswith("bench") or name == "uptake"]
