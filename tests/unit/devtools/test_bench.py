"""`uptake bench` is repeatable: each run draws its own event ids and owns only its own topics
(a whole run against the real broker: tests/integration/devtools/test_bench.py)."""

from __future__ import annotations

import msgspec

from pipeline.devtools.bench import BenchRun, api_call_messages


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
