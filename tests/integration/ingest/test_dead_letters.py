"""The dead-letter path against a real broker: every reject lands in the DLQ, and replay works."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from kafka import KafkaConsumer

from pipeline.kafka.producer import make_producer
from pipeline.sink import dead_letters as dl
from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, str]]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        return [(m.value, dl.read_headers(m.headers)) for m in consumer]
    finally:
        consumer.close()


def read_at_least(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, dict[str, str]]]:
    """`read_all`, again until `n` messages came back (a first read may return before the
    consumer's group join fetched anything)."""
    return wait_until(
        lambda: (found := read_all(bootstrap, topic)) and len(found) >= n and found,
        timeout=60,
        what=f"{n} messages on {topic}",
    )


def event(i: int, occurred_at: datetime) -> dict[str, object]:
    return {
        "event_id": str(uuid.UUID(int=i + 1)),
        "event_type": "deploy",
        "schema_version": 1,
        "occurred_at": occurred_at.isoformat(),
        "source": "ci",
        "service": "checkout-api",
        "capability": "deploy-pipeline",
        "data": {
            "deployment_id": f"d-{i}",
            "service": "checkout-api",
            "environment": "production",
            "status": "succeeded",
        },
    }


def test_rejects_reach_the_dead_letter_topic_and_replay_resubmits_fixed_ones(
    pipeline_env: Pipeline,
) -> None:
    env = pipeline_env.env
    bootstrap, dlq = env["KAFKA_BOOTSTRAP_SERVERS"], env["UPTAKE_DLQ_TOPIC"]
    pipeline_env.run("migrate")
    now = datetime.now(UTC)
    early = [event(i, now + timedelta(days=2)) for i in range(3)]  # a clock-skewed emitter
    producer = make_producer(bootstrap)
    try:
        producer.send(env["UPTAKE_EVENTS_TOPIC"], key=b"x", value=msgspec.json.encode(early))
        producer.send(env["UPTAKE_EVENTS_TOPIC"], key=b"x", value=b"{broken")
        producer.send(
            env["UPTAKE_EVENTS_TOPIC"], key=b"x", value=msgspec.json.encode(event(9, now))
        )
        producer.flush()
    finally:
        producer.close()

    worker = pipeline_env.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()

    dead = read_all(bootstrap, dlq)
    assert sorted(h[dl.REASON] for _, h in dead) == ["not_json"] + ["occurred_at_in_future"] * 3
    broken = next(value for value, h in dead if h[dl.REASON] == "not_json")
    assert broken == b"{broken", "the original bytes are kept"
    assert all(h[dl.SOURCE_TOPIC] == env["UPTAKE_EVENTS_TOPIC"] for _, h in dead)
    assert {h[dl.SOURCE_OFFSET] for _, h in dead} == {"0", "1"}
    future_detail = next(h[dl.DETAIL] for _, h in dead if h[dl.REASON] != "not_json")
    assert "occurred_at" in future_detail

    # Before any fix nothing would pass; a dry run judges and changes nothing.
    dry = pipeline_env.run("dlq", "replay", "--dry-run")
    assert "0 would be re-submitted" in dry.stdout and "4 would be still invalid" in dry.stdout
    # The fix: accept more clock skew. Judge again, then replay for real.
    env["UPTAKE_MAX_FUTURE_SKEW_S"] = str(3 * 24 * 3600)
    dry = pipeline_env.run("dlq", "replay", "--dry-run")
    assert "3 would be re-submitted" in dry.stdout and "1 would be still invalid" in dry.stdout
    assert len(read_all(bootstrap, dlq)) == 4
    done = pipeline_env.run("dlq", "replay")
    assert "3 were re-submitted (now valid): 3 to the events topic" in done.stdout
    assert "1 were still invalid" in done.stdout
    worker = pipeline_env.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()
    rows = pipeline_env.rows("SELECT count() AS n FROM events")
    assert int(rows[0]["n"]) == 4

    # The still-invalid one went back once, marked; a second replay does not loop.
    dead = read_all(bootstrap, dlq)
    replayed = [h for _, h in dead if h.get(dl.REPLAYED) == "1"]
    assert len(dead) == 5 and len(replayed) == 1 and replayed[0][dl.REASON] == "not_json"
    again = pipeline_env.run("dlq", "replay")
    assert "1 skipped: already replayed once" in again.stdout
    assert len(read_all(bootstrap, dlq)) == 5


def test_a_reason_filter_limits_the_replay(pipeline_env: Pipeline) -> None:
    pipeline_env.run("migrate")
    producer = make_producer(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        producer.send(pipeline_env.env["UPTAKE_EVENTS_TOPIC"], value=b"nope")
        producer.send(pipeline_env.env["UPTAKE_EVENTS_TOPIC"], value=b"[]")
        producer.flush()
    finally:
        producer.close()
    worker = pipeline_env.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()
    done = pipeline_env.run("dlq", "replay", "--dry-run", "--reason", "empty_batch")
    assert "read 2 dead-letter messages, 1 matched the filter" in done.stdout
    bad = pipeline_env.run("dlq", "replay", "--reason", "no_such_reason", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_dead_lettered_backfill_event_is_replayed_to_the_backfill_topic(
    pipeline_env: Pipeline,
) -> None:
    """Judged by the backfill rules and sent back where it came from: on the live topic the
    40-day-old event would be refused for its age again."""
    env = pipeline_env.env
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    backfill_topic = env.get("UPTAKE_BACKFILL_TOPIC") or f"{env['UPTAKE_EVENTS_TOPIC']}.backfill"
    pipeline_env.run("migrate")
    env["UPTAKE_BACKFILL_MAX_AGE_S"] = str(30 * 86400)
    old = event(40, datetime.now(UTC) - timedelta(days=40))
    producer = make_producer(bootstrap)
    try:
        producer.send(backfill_topic, key=b"x", value=msgspec.json.encode([old]))
        producer.flush()
    finally:
        producer.close()
    worker = pipeline_env.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()
    [(_, headers)] = read_at_least(bootstrap, env["UPTAKE_DLQ_TOPIC"], 1)
    assert (headers[dl.REASON], headers[dl.SOURCE_TOPIC]) == ("occurred_at_too_old", backfill_topic)
    assert "UPTAKE_BACKFILL_MAX_AGE_S" in headers[dl.DETAIL]

    env["UPTAKE_BACKFILL_MAX_AGE_S"] = str(60 * 86400)  # the fix
    done = pipeline_env.run("dlq", "replay")
    assert "1 were re-submitted (now valid): 0 to the events topic, 1 to the backfill topic" in (
        done.stdout
    )
    # The dead letter keeps the event's own bytes: the replay sends it as a one-event message.
    # The topic has several partitions, so the two messages may come back in either order.
    sent = [msgspec.json.decode(v) for v, _ in read_at_least(bootstrap, backfill_topic, 2)]
    assert sorted(sent, key=lambda value: isinstance(value, list)) == [old, [old]]
    worker = pipeline_env.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()
    rows = pipeline_env.rows("SELECT toString(event_id) AS id FROM events")
    assert [r["id"] for r in rows] == [old["event_id"]]


def test_no_raw_user_reaches_rejected_events_or_the_dead_letter_topic(
    pipeline_env: Pipeline,
) -> None:
    """Rejects of events naming "alice@example.com" (a clock-skewed event, a batch with one bad
    event, a cut-off body) are stored with her pseudonym; her accepted event has the same key."""
    env = pipeline_env.env
    bootstrap, dlq = env["KAFKA_BOOTSTRAP_SERVERS"], env["UPTAKE_DLQ_TOPIC"]
    env["UPTAKE_PSEUDONYM_KEY"] = "a-test-key-of-at-least-16-bytes"
    pipeline_env.run("migrate")
    now = datetime.now(UTC)
    alice = "alice@example.com"
    early = {**event(1, now + timedelta(days=2)), "user": alice}
    fine = {**event(2, now), "user": alice}
    bad = {**event(3, now), "user": alice, "capability": 7}
    producer = make_producer(bootstrap)
    try:
        topic = env["UPTAKE_EVENTS_TOPIC"]
        producer.send(topic, key=b"x", value=msgspec.json.encode(early))
        producer.send(topic, key=b"x", value=msgspec.json.encode([fine, bad]))
        cut = msgspec.json.encode({"user": alice, **early})[:-40]  # not JSON; names her
        producer.send(topic, key=b"x", value=cut)
        producer.flush()
    finally:
        producer.close()

    worker = pipeline_env.start_worker("--exit-when-idle", "3")
    assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()

    dead = read_at_least(bootstrap, dlq, 3)
    stored = pipeline_env.rows("SELECT reason, raw FROM rejected_events")
    assert sorted(h[dl.REASON] for _, h in dead) == sorted(r["reason"] for r in stored)
    assert len(stored) == 3, stored
    key = pipeline_env.rows("SELECT user_key FROM events")[0]["user_key"]
    assert len(key) == 32
    for value in [v for v, _ in dead] + [r["raw"].encode() for r in stored]:
        assert alice.encode() not in value and b"alice" not in value, value
    marked = f"uptake-pseudonym:{key}".encode()
    assert all(marked in v for v, _ in dead), "each names her by her key, as events do"
