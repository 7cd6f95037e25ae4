"""The worker's bulk intake with the real broker and engine (pipeline/kafka/bulk.py): one-event
messages are stored exactly once, the group's committed offsets reach the end of every
partition (acked in bulk after the write), and UPTAKE_BATCH_MAX_BYTES closes batches before
UPTAKE_BATCH_MAX_MESSAGES does — with the default byte bound as the negative control."""

from __future__ import annotations

import re
import uuid

import pytest

from pipeline.devtools.bench import api_call_messages
from pipeline.kafka.producer import make_producer
from pipeline.kafka.topics import ensure_topics
from tests.conftest import Pipeline
from tests.integration.ingest.test_scale_out import caught_up

pytestmark = pytest.mark.integration

EVENTS = 3_000
PARTITIONS = 3


def produce_single_events(pipeline_env: Pipeline) -> int:
    """EVENTS one-event messages over PARTITIONS partitions; returns the bytes sent."""
    bootstrap = pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    ensure_topics(bootstrap, {topic: PARTITIONS})
    pipeline_env.run("migrate")
    messages = api_call_messages(EVENTS, 1, 5, seed=uuid.uuid4().int >> 64)
    producer = make_producer(bootstrap)
    try:
        for i, value in enumerate(messages):
            producer.send(topic, key=f"k{i % 7}".encode(), value=value)
        producer.flush()
    finally:
        producer.close()
    return sum(len(m) + 2 for m in messages)


def run_worker(pipeline_env: Pipeline, **settings: str) -> int:
    """Run the worker until idle; returns the batches it wrote (its exit line)."""
    env = {**pipeline_env.env, "UPTAKE_TOPIC_PARTITIONS": str(PARTITIONS), **settings}
    done = Pipeline(env, pipeline_env.home).run("worker", "--exit-when-idle", "3", timeout=300)
    found = re.search(r"stopped: consumed ([\d,]+) events .* in ([\d,]+) batches", done.stderr)
    assert found is not None, done.stderr
    assert int(found.group(1).replace(",", "")) == EVENTS
    return int(found.group(2).replace(",", ""))


def committed_equals_end(pipeline_env: Pipeline) -> bool:
    env = pipeline_env.env
    return caught_up(
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["UPTAKE_CONSUMER_GROUP"],
        env["UPTAKE_EVENTS_TOPIC"],
        PARTITIONS,
    )


def stored(pipeline_env: Pipeline) -> tuple[int, int]:
    row = pipeline_env.rows("SELECT count() AS n, uniqExact(event_id) AS ids FROM events")[0]
    return int(row["n"]), int(row["ids"])


def test_one_event_messages_are_stored_once_and_committed_after_the_write(
    pipeline_env: Pipeline,
) -> None:
    sent = produce_single_events(pipeline_env)
    bound = 40_000  # bytes: about 100 one-event messages
    batches = run_worker(
        pipeline_env, UPTAKE_BATCH_MAX_BYTES=str(bound), UPTAKE_BATCH_MAX_MESSAGES="100000"
    )
    assert stored(pipeline_env) == (EVENTS, EVENTS)
    assert committed_equals_end(pipeline_env)
    # Every batch held at most `bound` bytes, so there were at least sent / bound of them.
    assert batches >= sent // bound


def test_negative_control_without_the_byte_bound_batches_are_few_and_large(
    pipeline_env: Pipeline,
) -> None:
    sent = produce_single_events(pipeline_env)
    batches = run_worker(pipeline_env, UPTAKE_BATCH_MAX_MESSAGES="100000")
    assert stored(pipeline_env) == (EVENTS, EVENTS)
    assert committed_equals_end(pipeline_env)
    assert batches < sent // 40_000  # the default 8 MiB bound never closed a batch here
