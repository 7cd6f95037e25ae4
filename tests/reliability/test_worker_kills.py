"""SIGKILL the real worker at chosen points of a batch, restart it, compare with the ground truth.

Kill points (pipeline/devtools/faults.py): before an insert, in the middle of a batch (events
written, rejects not), and after every insert but before the offset commit. Each iteration
starts a worker that finishes a few batches, then dies by SIGKILL at the next batch; the last
worker runs until the topic is drained. Afterwards every table must equal the ground truth: the
events per team and event type, the rejects per reason, no event id twice, every rollup
(usage_minute, usage_hour, usage_day: every field of every bucket) and every fact table
(deployments, model_trainings, incidents: rows per team, before any merge) and the adoption
lifecycle (adoption_milestones, adoption_lifecycle: equal to the rules applied to the events,
tests/support/lifecycle_brute.py; no milestone twice). The negative control
runs one after-insert kill with the sink's dedup switched off and shows the same comparison
catches the double count, in `events` and in the rollups.

Iterations: UPTAKE_RELIABILITY_KILLS (default 6, two per kill point) — a longer soak is
`UPTAKE_RELIABILITY_KILLS=60 make reliability`.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from pipeline.devtools.simulate.org import GroundTruth, Organisation, Scenario, generate
from pipeline.kafka.producer import make_producer
from tests.conftest import Pipeline
from tests.support.lifecycle_brute import LAG_DAYS, expected_lifecycle, stored_lifecycle
from tests.support.views.expected import ROLLUP_SQL, rollup_diff

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

KILL_POINTS = ("before_insert", "mid_batch", "after_insert")
BAD_EVERY = 7  # one message in seven is garbage, so batches carry rejects too


@dataclass
class Sent:
    truth: GroundTruth
    events: list[dict[str, Any]]  # the lifecycle's truth is computed from them
    bad: int  # not-JSON messages


def produce_with_rejects(pipeline_env: Pipeline, events: int, seed: int) -> Sent:
    """Valid simulated events in small messages, with a not-JSON message every BAD_EVERY."""
    truth = GroundTruth(detailed=True)
    org = Organisation.synthetic(seed, teams=6)
    generated = list(generate(org, events, seed, truth=truth, scenario=Scenario()))
    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    topic = pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    bad = 0
    try:
        for n, start in enumerate(range(0, len(generated), 10)):
            chunk = generated[start : start + 10]
            producer.send(topic, key=chunk[0]["team"].encode(), value=msgspec.json.encode(chunk))
            if n % BAD_EVERY == 0:
                producer.send(topic, key=b"garbage", value=b"garbage %d" % n)
                bad += 1
        producer.flush()
    finally:
        producer.close()
    return Sent(truth, generated, bad)


def diff_with_truth(pipeline_env: Pipeline, sent: Sent) -> dict[str, Any]:
    """What differs between the warehouse and the ground truth; empty when they agree."""
    truth, bad = sent.truth, sent.bad
    rows = pipeline_env.rows(
        "SELECT team, event_type, count() AS n, uniqExact(event_id) AS ids "
        "FROM events GROUP BY team, event_type"
    )
    stored = Counter({(r["team"], r["event_type"]): int(r["n"]) for r in rows})
    expected = Counter(truth.by_team_type)
    rejects = pipeline_env.rows(
        "SELECT count() AS n, uniqExact(_partition, _offset, _index) AS k FROM rejected_events"
    )[0]
    diff: dict[str, Any] = {}
    if stored - expected:
        diff["double_counted"] = dict(stored - expected)
    if expected - stored:
        diff["lost"] = dict(expected - stored)
    if any(int(r["n"]) != int(r["ids"]) for r in rows):
        diff["duplicate_event_ids"] = True
    if (int(rejects["n"]), int(rejects["k"])) != (bad, bad):
        diff["rejects"] = {"stored": int(rejects["n"]), "distinct": int(rejects["k"]), "sent": bad}
    for grain in ("minute", "hour", "day"):
        table = f"usage_{grain}"
        problems = rollup_diff(
            pipeline_env.rows(ROLLUP_SQL.format(table=table, where="")), truth.rollup(grain)
        )
        if problems:
            diff[table] = {"differences": len(problems), "first": problems[:5]}
    for table, facts in (
        ("deployments", truth.deployments),
        ("model_trainings", truth.trainings),
        ("incidents", truth.incidents),
    ):
        # No FINAL: a row inserted twice would show before any merge folds it.
        stored_rows = Counter(
            {
                str(r["team"]): int(r["n"])
                for r in pipeline_env.rows(f"SELECT team, count() AS n FROM {table} GROUP BY team")
            }
        )
        if stored_rows != Counter(str(f["team"]) for f in facts):
            diff[table] = {"stored": dict(stored_rows), "sent": len(facts)}
    milestones, states = expected_lifecycle(sent.events)
    milestone_rows, lifecycle = stored_lifecycle(pipeline_env)
    if len(milestone_rows) != len(set(milestone_rows)) or set(milestone_rows) != milestones:
        diff["adoption_milestones"] = {
            "missing": sorted(milestones - set(milestone_rows))[:5],
            "unexpected": sorted(set(milestone_rows) - milestones)[:5],
            "twice": len(milestone_rows) - len(set(milestone_rows)),
        }
    if lifecycle != states:
        diff["adoption_lifecycle"] = {
            key: (lifecycle.get(key), states.get(key))
            for key in sorted(lifecycle.keys() | states.keys())
            if lifecycle.get(key) != states.get(key)
        }
    return diff


def run_until_killed(pipeline_env: Pipeline, point: str, after_batches: int) -> int:
    env = dict(pipeline_env.env)
    pipeline_env.env.update(
        UPTAKE_CHAOS_KILL_AT=point, UPTAKE_CHAOS_KILL_AFTER_BATCHES=str(after_batches)
    )
    try:
        worker = pipeline_env.start_worker("--exit-when-idle", "6")
        return worker.wait(timeout=180)
    finally:
        pipeline_env.env.clear()
        pipeline_env.env.update(env)


def drain(pipeline_env: Pipeline) -> None:
    worker = pipeline_env.start_worker("--exit-when-idle", "4")
    assert worker.wait(timeout=240) == 0, pipeline_env.worker_log()[-3000:]


@pytest.fixture
def small_batches(pipeline_env: Pipeline) -> Pipeline:
    # Small batches: many batch boundaries, so kills land in different places of the stream.
    pipeline_env.env["UPTAKE_BATCH_MAX_MESSAGES"] = "40"
    pipeline_env.env["UPTAKE_FLUSH_INTERVAL_S"] = "0.2"
    pipeline_env.env["UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS"] = str(LAG_DAYS)
    pipeline_env.run("migrate")
    return pipeline_env


def test_kills_at_every_point_leave_every_number_exact(small_batches: Pipeline) -> None:
    iterations = int(os.environ.get("UPTAKE_RELIABILITY_KILLS", "6"))
    sent = produce_with_rejects(small_batches, 8_000, seed=21)
    rng = random.Random(21)
    kills = Counter[str]()
    for i in range(iterations):
        point = KILL_POINTS[i % len(KILL_POINTS)]
        code = run_until_killed(small_batches, point, after_batches=rng.randint(0, 3))
        if code == -signal.SIGKILL:
            kills[point] += 1
        else:  # the topic ran dry before the chosen batch: nothing left to kill
            assert code == 0, small_batches.worker_log()[-3000:]
            break
    drain(small_batches)
    assert sum(kills.values()) >= min(iterations, 3), kills
    assert set(kills) == set(KILL_POINTS[: min(iterations, 3)]), kills
    assert diff_with_truth(small_batches, sent) == {}
    print(
        f"\nreliability: worker SIGKILLed {sum(kills.values())} times {dict(kills)}, "
        f"{sent.truth.total} events + {sent.bad} rejects, lost 0, double counted 0"
    )


def test_negative_control_without_watermarks_the_same_check_finds_double_counts(
    small_batches: Pipeline,
) -> None:
    sent = produce_with_rejects(small_batches, 1_000, seed=22)
    small_batches.env["UPTAKE_CHAOS_IGNORE_WATERMARKS"] = "true"
    assert run_until_killed(small_batches, "after_insert", after_batches=1) == -signal.SIGKILL
    drain(small_batches)
    diff = diff_with_truth(small_batches, sent)
    assert "double_counted" in diff, diff
    assert "usage_day" in diff, diff  # the rollups see the double count too
    assert "lost" not in diff
