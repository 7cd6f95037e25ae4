"""`uptake bench` is repeatable: runs in one UPTAKE_HOME neither collide nor pile up."""

from __future__ import annotations

import json
import re

import msgspec
import pytest
from kafka import KafkaAdminClient

from pipeline.devtools.bench import BenchRun, api_call_messages
from pipeline.kafka.topics import ensure_topics
from tests.conftest import Pipeline


def _ids(messages: list[bytes]) -> set[str]:
    return {event["event_id"] for m in messages for event in msgspec.json.decode(m)}


def test_each_run_draws_its_own_event_ids() -> None:
    first, second = BenchRun.new(), BenchRun.new()
    ids = _ids(api_call_messages(1_000, 100, 5, first.id_seed))
    assert len(ids) == 1_000
    assert ids == _ids(api_call_messages(1_000, 100, 5, first.id_seed))  # a re-send
    assert not ids & _ids(api_call_messages(1_000, 100, 5, second.id_seed))
    # The freshness phase continues the run's sequence after the throughput phase's events.
    assert not ids & _ids(api_call_messages(100, 100, 5, first.id_seed, first=1_000))


def test_a_run_owns_only_its_own_topics() -> None:
    run, longer = BenchRun("abc", 1), BenchRun("abcd", 2)
    for topic in (
        "uptake.bench.abc",
        "uptake.bench.abc.activity",
        "uptake.bench.abc.milestones",
        "uptake-bench-abc-lifecycle-changelog",
        "uptake-bench-abc-__assignor-__leader",
    ):
        assert run.owns_topic(topic)
        assert not longer.owns_topic(topic)
    for topic in ("uptake.bench.abcd", "uptake-bench-abcd-lifecycle-changelog", "uptake.events"):
        assert not run.owns_topic(topic)
    assert BenchRun.of_database(run.database) == BenchRun("abc", 0)
    assert BenchRun.of_database("uptake") is None


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
