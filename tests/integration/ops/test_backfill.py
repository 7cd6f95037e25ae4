"""Late and out-of-order events with a real broker and the real worker.

- Events 30-60 days old go through `uptake backfill` into `events` and the day rollup, once per
  event; loading the same file again changes no number (not even the raw row count: the sink
  skips the re-sent ids). The same events sent to the live topic are rejected too old, with a
  detail that names the limit and the backfill command.
- Events within the lateness limit that arrive out of order, some after their day's bucket was
  already written, land in the bucket of their own `occurred_at`.
"""

from __future__ import annotations

import gzip
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.kafka.producer import make_producer
from pipeline.kafka.topics import ensure_topics
from tests.conftest import Pipeline

pytestmark = pytest.mark.integration

TEAMS = ("bf-search", "bf-payments", "bf-ml")


def make_event(rng: random.Random, at: datetime) -> dict[str, Any]:
    """One api_call, deploy or model_training of a test team at `at` (ids from `rng`)."""
    team = rng.choice(TEAMS)
    kind = rng.choice(("api_call", "api_call", "deploy", "model_training"))
    data: dict[str, Any]
    if kind == "api_call":
        capability = "api-gateway"
        data = {"api": "orders", "operation": "GET /v1/orders", "status_code": 200}
        data["latency_ms"] = rng.randint(1, 50)
    elif kind == "deploy":
        capability = "deploy-pipeline"
        data = {"deployment_id": f"d-{rng.getrandbits(48):x}", "service": f"{team}-api"}
        data |= {"environment": "production", "status": "succeeded"}
    else:
        capability = "ml-training"
        data = {"run_id": f"r-{rng.getrandbits(48):x}", "model": "m", "status": "succeeded"}
        data["duration_s"] = 60.0
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": kind,
        "schema_version": 1,
        "occurred_at": at.isoformat(timespec="milliseconds"),
        "source": "backfill-test",
        "capability": capability,
        "team": team,
        "data": data,
    }


def events_between(
    rng: random.Random, count: int, oldest: timedelta, newest: timedelta
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    span = (oldest - newest).total_seconds()
    return [
        make_event(rng, now - newest - timedelta(seconds=rng.uniform(0, span)))
        for _ in range(count)
    ]


def per_team_type(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((e["team"], e["event_type"]) for e in events)


def per_day(events: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter(
        (e["team"], e["event_type"], datetime.fromisoformat(e["occurred_at"]).date().isoformat())
        for e in events
    )


def send(pipeline: Pipeline, topic: str, events: list[dict[str, Any]], per: int = 50) -> None:
    bootstrap = pipeline.env["KAFKA_BOOTSTRAP_SERVERS"]
    ensure_topics(bootstrap, {topic: 4})
    producer = make_producer(bootstrap)
    try:
        for i in range(0, len(events), per):
            producer.send(topic, key=b"k", value=msgspec.json.encode(events[i : i + per]))
        producer.flush()
    finally:
        producer.close()


def run_worker(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=240) == 0, pipeline.worker_log()


def stored_per_team_type(pipeline: Pipeline, sql: str) -> Counter[tuple[str, str]]:
    return Counter(
        {(r["team"], r["event_type"]): int(r["n"]) for r in pipeline.rows(sql) if int(r["n"])}
    )


def stored_per_day(pipeline: Pipeline, table: str) -> Counter[tuple[str, str, str]]:
    rows = pipeline.rows(
        f"SELECT team, event_type, toString(toDate(bucket)) AS day, sum(events) AS n "
        f"FROM {table} WHERE team LIKE 'bf-%' GROUP BY ALL"
    )
    return Counter({(r["team"], r["event_type"], r["day"]): int(r["n"]) for r in rows})


def check_loaded_once(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    expected = per_team_type(events)
    folded = stored_per_team_type(
        pipeline, "SELECT team, event_type, count() AS n FROM events FINAL GROUP BY ALL"
    )
    distinct = stored_per_team_type(
        pipeline, "SELECT team, event_type, uniqExact(event_id) AS n FROM events GROUP BY ALL"
    )
    assert folded == expected
    assert distinct == expected
    assert stored_per_day(pipeline, "usage_day") == per_day(events)
    hourly = pipeline.rows("SELECT sum(events) AS n FROM usage_hour WHERE team LIKE 'bf-%'")
    assert int(hourly[0]["n"]) == len(events)


def test_a_backfill_loads_old_events_exactly_once_even_when_run_twice(
    pipeline_env: Pipeline, tmp_path: Path
) -> None:
    env = pipeline_env.env
    pipeline_env.run("migrate")
    rng = random.Random(4)
    history = events_between(rng, 1200, oldest=timedelta(days=60), newest=timedelta(days=30))
    path = tmp_path / "history.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.writelines(msgspec.json.encode(e) + b"\n" for e in history)

    send(pipeline_env, env["UPTAKE_EVENTS_TOPIC"], history)  # the live topic: too old
    loaded = pipeline_env.run("backfill", str(path))
    assert "1,200 valid, 0 invalid" in loaded.stdout
    assert "sent 1,200 events" in loaded.stdout and env["UPTAKE_EVENTS_TOPIC"] in loaded.stdout
    run_worker(pipeline_env)

    check_loaded_once(pipeline_env, history)
    rejected = pipeline_env.rows(
        "SELECT reason, count() AS n, any(detail) AS detail FROM rejected_events GROUP BY reason"
    )
    assert [(r["reason"], int(r["n"])) for r in rejected] == [("occurred_at_too_old", 1200)]
    assert "more than 7 days ago" in rejected[0]["detail"]
    assert "uptake backfill" in rejected[0]["detail"]
    topics = pipeline_env.rows("SELECT DISTINCT _topic AS t FROM events")
    assert [r["t"] for r in topics] == [f"{env['UPTAKE_EVENTS_TOPIC']}.backfill"]

    # The same file again: new Kafka records, the same event ids. Nothing counts twice, and the
    # sink does not even insert them again (the raw count of `events` stays).
    again = pipeline_env.run("backfill", str(path))
    assert "sent 1,200 events" in again.stdout
    run_worker(pipeline_env)
    check_loaded_once(pipeline_env, history)
    raw = pipeline_env.rows("SELECT count() AS n FROM events")
    assert int(raw[0]["n"]) == 1200


def test_out_of_order_events_within_the_lateness_land_in_their_own_day(
    pipeline_env: Pipeline,
) -> None:
    topic = pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    pipeline_env.run("migrate")
    rng = random.Random(11)
    recent = events_between(rng, 900, oldest=timedelta(days=6, hours=12), newest=timedelta(0))
    rng.shuffle(recent)  # arrival order is not time order
    first, late = recent[:500], recent[500:]
    send(pipeline_env, topic, first)
    run_worker(pipeline_env)
    assert stored_per_day(pipeline_env, "usage_day") == per_day(first)

    # The rest arrives later, for days whose buckets already hold rows: they merge into them.
    assert set(per_day(late)) & set(per_day(first)), "the test needs buckets that get late rows"
    send(pipeline_env, topic, late)
    run_worker(pipeline_env)
    check_loaded_once(pipeline_env, recent)
    assert pipeline_env.rows("SELECT count() AS n FROM rejected_events")[0]["n"] in (0, "0")


def test_negative_control_without_the_id_window_a_rerun_counts_twice_in_the_rollups(
    pipeline_env: Pipeline, tmp_path: Path
) -> None:
    """What the re-run guarantee rests on: `events` folds re-sent ids by itself, the rollups
    only because the sink skips ids it wrote recently (UPTAKE_DEDUP_WINDOW)."""
    pipeline_env.env["UPTAKE_DEDUP_WINDOW"] = "0"
    pipeline_env.run("migrate")
    history = events_between(random.Random(5), 300, timedelta(days=45), timedelta(days=31))
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in history))
    for _ in range(2):
        pipeline_env.run("backfill", str(path))
        run_worker(pipeline_env)
    folded = pipeline_env.rows("SELECT count() AS n FROM events FINAL")
    assert int(folded[0]["n"]) == 300
    assert stored_per_day(pipeline_env, "usage_day") == Counter(
        {key: 2 * n for key, n in per_day(history).items()}
    )
