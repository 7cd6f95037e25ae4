"""The incremental processor: whatever the order, duplication, batching and crashes, what it
publishes equals the rules applied to the final set of active days
(tests/support/lifecycle_brute.py)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.decode import DecodedBatch
from pipeline.contract.events import ApiCall, ApiCallEvent
from pipeline.lifecycle.activity import activity_of
from pipeline.lifecycle.engine import (
    Activity,
    LifecycleEngine,
    Record,
    Watermark,
    decode_record,
    encode_record,
    key_of,
)
from pipeline.lifecycle.rules import Rules, day_of
from tests.support.lifecycle_brute import brute_force
from tests.support.lifecycle_harness import CrashingStore, Model

RULES = Rules(activation_days=3, activation_window_days=14, churn_days=28)
TEAMS = ("payments", "search", "a|b")
CAPS = ("api-gateway", "deploy-pipeline")


def truth(
    activity: list[tuple[str, str, int]], watermark: int
) -> set[tuple[str, str, str, int, int]]:
    days: dict[tuple[str, str], set[int]] = defaultdict(set)
    for team, cap, day in activity:
        days[team, cap].add(day)
    return {
        (team, cap, m.kind, m.day, m.episode)
        for (team, cap), active in days.items()
        for m in brute_force(active, watermark, RULES)
    }


def streams(
    activity: list[tuple[str, str, int]], rng: random.Random, partitions: int, duplicate: float
) -> dict[int, list[Record]]:
    """Route activity by key like Kafka, duplicate some, interleave watermark records."""
    out: dict[int, list[Record]] = {p: [] for p in range(partitions)}
    newest = -(10**6)
    for team, cap, day in activity:
        record = Activity(team, cap, day)
        partition = hash(key_of(team, cap)) % partitions
        out[partition].append(record)
        if rng.random() < duplicate:
            out[partition].append(record)
        newest = max(newest, day)
        if rng.random() < 0.3:  # the ingest sends its newest day after a batch
            for p in range(partitions):
                out[p].append(Watermark(newest))
    for p in range(partitions):
        out[p].append(Watermark(newest))
    return out


def test_records_survive_the_wire() -> None:
    for record in (Activity("t|x", "c", 19_000), Watermark(-3)):
        assert decode_record(encode_record(record)) == record


def test_a_late_day_retracts_the_churn_it_fills_in() -> None:
    store = CrashingStore()
    engine = LifecycleEngine(RULES, 0, store)
    key = key_of("payments", "api-gateway")
    engine.apply(0, [Activity("payments", "api-gateway", 0), Watermark(60)])  # complete: <= 59
    first = engine.emission([key]).milestones
    assert {(r.change.kind, r.change.day, r.change.retracted) for r in first} == {
        ("first_use", 0, False),
        ("churned", 28, False),
    }
    engine.confirm([key])
    engine.apply(0, [Activity("payments", "api-gateway", 20)])  # late: day 20 < watermark 59
    second = engine.emission([key]).milestones
    assert {(r.change.kind, r.change.day, r.change.retracted) for r in second} == {
        ("churned", 28, True),
        ("churned", 48, False),
    }


def test_applying_the_same_records_again_changes_nothing() -> None:
    store = CrashingStore()
    engine = LifecycleEngine(RULES, 0, store)
    records: list[Record] = [Activity("a", "b", d) for d in (1, 2, 3)] + [Watermark(50)]
    keys = engine.apply(0, records)
    engine.confirm(keys)
    assert engine.apply(0, records) == []
    assert engine.pending(0) == []


def test_the_watermark_churns_keys_that_get_no_activity() -> None:
    engine = LifecycleEngine(RULES, 7, CrashingStore())
    engine.confirm(engine.apply(1, [Activity("a", "b", 10)]))
    assert engine.apply(1, [Watermark(45)]) == []  # watermark 45 - 7 - 1 = 37 < churn day 38
    touched = engine.apply(1, [Watermark(46)])
    assert [r.change.kind for r in engine.emission(touched).milestones] == ["churned"]
    assert engine.apply(0, [Watermark(100)]) == []  # another partition's keys are not touched


activity_st = st.lists(
    st.tuples(st.sampled_from(TEAMS), st.sampled_from(CAPS), st.integers(0, 150)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(activity=activity_st, seed=st.integers(0, 2**32), lag=st.integers(0, 10))
def test_any_order_duplication_and_batching_publishes_the_truth(
    activity: list[tuple[str, str, int]], seed: int, lag: int
) -> None:
    rng = random.Random(seed)
    rng.shuffle(activity)
    model = Model(RULES, lag, streams(activity, rng, partitions=3, duplicate=0.2))
    model.run(rng, crash_rate=0.0)
    watermark = max(day for _, _, day in activity) - lag - 1
    assert model.outputs.live() == truth(activity, watermark)


@settings(max_examples=300, deadline=None)
@given(activity=activity_st, seed=st.integers(0, 2**32), lag=st.integers(0, 10))
def test_crashes_at_any_step_neither_lose_nor_invent_a_milestone(
    activity: list[tuple[str, str, int]], seed: int, lag: int
) -> None:
    rng = random.Random(seed)
    rng.shuffle(activity)
    model = Model(RULES, lag, streams(activity, rng, partitions=2, duplicate=0.1))
    model.run(rng, crash_rate=0.4)
    watermark = max(day for _, _, day in activity) - lag - 1
    assert model.outputs.live() == truth(activity, watermark)


@settings(max_examples=300, deadline=None)
@given(activity=activity_st, seed=st.integers(0, 2**32), lag=st.integers(0, 10))
def test_a_rebalance_under_a_batch_then_the_batch_again_publishes_the_truth(
    activity: list[tuple[str, str, int]], seed: int, lag: int
) -> None:
    """faust reloads the table from its changelog while a batch is in flight (at any step);
    the agent notices the rebalance and applies the batch again: crashes too."""
    rng = random.Random(seed)
    rng.shuffle(activity)
    model = Model(RULES, lag, streams(activity, rng, partitions=2, duplicate=0.1))
    model.run(rng, crash_rate=0.2, rebalance_rate=0.4)
    watermark = max(day for _, _, day in activity) - lag - 1
    assert model.outputs.live() == truth(activity, watermark)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_within_the_allowed_lateness_a_churn_is_never_retracted(seed: int) -> None:
    """Days that arrive no later than the allowed lateness never fill in a published churn: a
    churn waits for the watermark. (A late day before a first use or an activation moves it.)"""
    rng = random.Random(seed)
    lag = 5
    activity = sorted(
        ((rng.choice(TEAMS), rng.choice(CAPS), rng.randint(0, 150)) for _ in range(60)),
        key=lambda a: a[2] + rng.uniform(0, lag),  # each day at most `lag` days late
    )
    model = Model(RULES, lag, streams(activity, rng, partitions=2, duplicate=0.1))
    model.run(rng, crash_rate=0.0, max_batch=1)
    assert not [c for c in model.outputs.latest.values() if c.kind == "churned" and c.retracted]
    watermark = max(day for _, _, day in activity) - lag - 1
    assert model.outputs.live() == truth(activity, watermark)


def test_negative_control_without_the_outbox_a_crash_loses_milestones() -> None:
    """The same check catches the design it guards against: state saved, then a crash before
    the milestones were written, and nothing ever writes them."""
    lost = 0
    for seed in range(40):
        rng = random.Random(seed)
        activity = [(rng.choice(TEAMS), rng.choice(CAPS), rng.randint(0, 150)) for _ in range(40)]
        model = Model(RULES, 3, streams(activity, rng, partitions=2, duplicate=0.0), naive=True)
        model.run(rng, crash_rate=0.4)
        watermark = max(day for _, _, day in activity) - 3 - 1
        lost += model.outputs.live() != truth(activity, watermark)
    assert lost > 0


def test_activity_of_a_batch_counts_utc_days_and_resolved_teams() -> None:
    def event(at: datetime, team: str | None) -> ApiCallEvent:
        return ApiCallEvent(
            event_id=uuid.uuid4(),
            schema_version=1,
            occurred_at=at,
            source="t",
            capability="api",
            team=team,
            data=ApiCall(api="a", operation="GET /", status_code=200, latency_ms=1.0),
        )

    late_evening = datetime(2024, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # May 2 UTC
    batch = DecodedBatch(
        events=[
            event(datetime(2024, 5, 1, 1, tzinfo=UTC), "a"),
            event(datetime(2024, 5, 1, 22, tzinfo=UTC), "a"),
            event(late_evening, None),
        ]
    )
    may1 = day_of(datetime(2024, 5, 1, tzinfo=UTC))
    records, newest = activity_of(batch)
    assert records == [Activity("a", "api", may1), Activity("unowned", "api", may1 + 1)]
    assert newest == may1 + 1
    batch.teams = ["x", "x", "y"]  # resolved by the enrich step: these count
    assert activity_of(batch)[0] == [Activity("x", "api", may1), Activity("y", "api", may1 + 1)]


def test_negative_control_a_batch_not_applied_again_after_a_rebalance_goes_wrong() -> None:
    wrong = 0
    for seed in range(40):
        rng = random.Random(seed)
        activity = [(rng.choice(TEAMS), rng.choice(CAPS), rng.randint(0, 150)) for _ in range(40)]
        model = Model(RULES, 3, streams(activity, rng, partitions=2, duplicate=0.1))
        model.run(rng, crash_rate=0.0, rebalance_rate=0.4, redo_after_rebalance=False)
        watermark = max(day for _, _, day in activity) - 3 - 1
        wrong += model.outputs.live() != truth(activity, watermark)
    assert wrong > 0
