"""Kafka topics Uptake owns: created on demand with kafka-python's admin client."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


class KafkaUnavailable(RuntimeError):
    """No Kafka broker answered at the bootstrap address."""


def unreachable_message(bootstrap: str) -> str:
    return (
        f"no Kafka broker answers at {bootstrap}. Start the local one with `uptake broker start` "
        "or set KAFKA_BOOTSTRAP_SERVERS to your cluster."
    )


def ensure_topics(bootstrap: str, topics: dict[str, int], timeout_s: float = 30.0) -> list[str]:
    """Create the topics (name -> partitions) that do not exist yet; returns those created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id="uptake-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        raise KafkaUnavailable(unreachable_message(bootstrap)) from exc
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=-1)
            for name, partitions in topics.items()
            if name not in existing
        ]
        if missing:
            # Another process may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=int(timeout_s * 1000))
        return [t.name for t in missing]
    except KafkaError as exc:
        raise KafkaUnavailable(f"{unreachable_message(bootstrap)} ({exc})") from exc
    finally:
        admin.close()


def partition_count(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="uptake-admin")
    try:
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"]) if described else 0
    finally:
        admin.close()
