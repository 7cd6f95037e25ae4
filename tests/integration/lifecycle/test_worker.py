"""The lifecycle in the real worker against the real broker and ClickHouse.

Ninety days of a simulated organisation (with gaps cut into half of the team x capability
pairs, so teams churn and come back, and 3% of the events held back and sent last, so they
arrive late and correct milestones already written) go through the worker; the worker is
SIGKILLed in a lifecycle batch after its state reached the changelog and before any milestone
was written, and a second worker drains the topic. Then `adoption_milestones`, `adoption_lifecycle`
and the milestone topic must equal the rules applied to the event dicts
(tests/support/lifecycle_brute.py): nothing lost by the kill, nothing written twice.
"""

from __future__ import annotations

import random
import signal
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from kafka import KafkaConsumer

from pipeline.devtools.simulate.org import Organisation, generate
from pipeline.kafka.producer import make_producer, produce
from pipeline.lifecycle.rules import day_of_iso
from tests.conftest import Pipeline
from tests.support.lifecycle_brute import LAG_DAYS, expected_lifecycle, stored_lifecycle

pytestmark = pytest.mark.integration


def simulated(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events in time order with gaps cut in, and the held-back late ones."""
    events = list(
        generate(Organisation.synthetic(seed, teams=8), 8000, seed, window=timedelta(days=90))
    )
    rng = random.Random(seed)
    first = min(day_of_iso(e["occurred_at"]) for e in events)
    keys = sorted({(e["team"], e["capability"]) for e in events})
    gaps = {}
    for key in rng.sample(keys, len(keys) // 2):
        start = rng.randint(first, first + 60)
        gaps[key] = (start, start + rng.randint(20, 45))
    kept = []
    for event in events:
        gap = gaps.get((event["team"], event["capability"]))
        if gap is None or not gap[0] <= day_of_iso(event["occurred_at"]) < gap[1]:
            kept.append(event)
    late = [e for e in kept if rng.random() < 0.03]
    late_ids = {e["event_id"] for e in late}
    return [e for e in kept if e["event_id"] not in late_ids], late


def milestone_topic(pipeline_env: Pipeline) -> tuple[set[tuple[Any, ...]], int]:
    """The live milestones on the topic (last record per key wins) and the records read."""
    consumer = KafkaConsumer(
        pipeline_env.env["UPTAKE_EVENTS_TOPIC"] + ".milestones",
        bootstrap_servers=pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    latest: dict[bytes, dict[str, Any]] = {}
    read = 0
    try:
        for message in consumer:
            latest[message.key] = msgspec.json.decode(message.value)
            read += 1
    finally:
        consumer.close()
    live = {
        (v["team"], v["capability"], v["milestone"], v["occurred_at"], v["episode"])
        for v in latest.values()
        if not v["retracted"]
    }
    return live, read


def test_lifecycle_equals_the_rules_after_a_kill_late_events_and_a_restart(
    pipeline_env: Pipeline,
) -> None:
    pipeline_env.env.update(
        UPTAKE_MAX_LATENESS_S=str(100 * 86400),
        UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS=str(LAG_DAYS),
        UPTAKE_BATCH_MAX_MESSAGES="40",
    )
    pipeline_env.run("migrate")
    in_order, late = simulated(seed=11)
    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        for part in (in_order, late):
            produce(producer, pipeline_env.env["UPTAKE_EVENTS_TOPIC"], part, per_message=20)
    finally:
        producer.close()
    truth, states = expected_lifecycle(in_order + late)

    killed = dict(pipeline_env.env)
    pipeline_env.env.update(
        UPTAKE_CHAOS_KILL_AT="lifecycle_after_state", UPTAKE_CHAOS_KILL_AFTER_BATCHES="3"
    )
    try:
        worker = pipeline_env.start_worker("--exit-when-idle", "6")
        assert worker.wait(timeout=240) == -signal.SIGKILL, pipeline_env.worker_log()[-3000:]
    finally:
        pipeline_env.env.clear()
        pipeline_env.env.update(killed)
    # The killed worker holds its partitions until its session expires (10 s): a shorter idle
    # limit could stop the new worker before it joined the group.
    worker = pipeline_env.start_worker("--exit-when-idle", "12")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()[-3000:]
    log = pipeline_env.worker_log()
    assert "chaos: SIGKILL in lifecycle batch 4, after_state" in log

    stored, lifecycle = stored_lifecycle(pipeline_env)
    assert len(stored) == len(set(stored)), "a milestone was written twice"
    assert set(stored) == truth
    assert lifecycle == states
    on_topic, records = milestone_topic(pipeline_env)
    assert on_topic == truth
    kinds = {kind for _, _, kind, _, _ in truth}
    assert kinds == {"first_use", "activated", "churned", "reactivated"}, kinds
    retracted = pipeline_env.rows("SELECT count() AS n FROM adoption_milestones WHERE retracted")
    print(
        f"\nlifecycle: {len(truth)} milestones for {len(states)} team x capability pairs, "
        f"{len(in_order) + len(late)} events ({len(late)} late), {records} topic records, "
        f"{retracted[0]['n']} retraction rows; worker SIGKILLed once in a lifecycle batch"
    )
