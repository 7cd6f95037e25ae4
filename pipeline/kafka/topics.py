"""Kafka topics Uptake owns: created on demand with kafka-python's admin client."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


def make_admin(
    bootstrap: str,
    *,
    client_id: str = "uptake-admin",
    security: Mapping[str, Any] | None = None,
    **options: Any,
) -> KafkaAdminClient:
    """The one way Uptake builds a kafka-python admin client. Raises KafkaError when no broker
    answers; `options` are kafka-python settings (timeouts), `security` its security kwargs."""
    return KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","), client_id=client_id, **options, **(security or {})
    )


def delete_topics_best_effort(
    bootstrap: str, owned: Callable[[str], bool], *, client_id: str, say: Callable[[str], None]
) -> None:
    """Delete every topic `owned` claims (for tools cleaning up after themselves). Never
    raises: a broker that does not answer or refuses is reported through `say`."""
    topics: list[str] = []
    try:
        admin = make_admin(bootstrap, client_id=client_id)
    except KafkaError as exc:
        say(f"could not delete the topics: {exc}")
        return
    try:
        topics = [t for t in admin.list_topics() if owned(t)]
        if topics:
            admin.delete_topics(topics, timeout_ms=30_000)
    except KafkaError as exc:
        say(f"could not delete the topics {', '.join(topics) or '?'}: {exc}")
    finally:
        admin.close()


class KafkaUnavailable(RuntimeError):
    """No Kafka broker answered at the bootstrap address."""


def unreachable_message(bootstrap: str, security: Mapping[str, Any] | None = None) -> str:
    """Why a client could not bootstrap. kafka-python reports a refused login or a failed TLS
    handshake as "Unable to bootstrap" too, so with SASL/SSL the message says what to check."""
    text = (
        f"no Kafka broker answers at {bootstrap}. Start the local one with `uptake broker start` "
        "or set KAFKA_BOOTSTRAP_SERVERS to your cluster."
    )
    protocol = str((security or {}).get("security_protocol", "PLAINTEXT"))
    if protocol.startswith("SASL_"):
        text += (
            f" With {protocol}, a broker that refuses the login looks the same: check "
            "UPTAKE_KAFKA_SASL_USERNAME, UPTAKE_KAFKA_SASL_PASSWORD and "
            "UPTAKE_KAFKA_SASL_MECHANISM (the broker's log names the failed authentication)."
        )
    if protocol.endswith("SSL"):
        text += (
            f" With {protocol}, a failed TLS handshake looks the same: check that the port is "
            "the broker's TLS listener and UPTAKE_KAFKA_SSL_CAFILE signs its certificate."
        )
    return text


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout_s: float = 30.0,
    *,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics (name -> partitions) that do not exist yet; returns those created.

    `security`: kafka-python security kwargs (`pipeline.kafka.security.client_kwargs`)."""
    try:
        admin = make_admin(
            bootstrap,
            security=security,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        raise KafkaUnavailable(unreachable_message(bootstrap, security)) from exc
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


def partition_count(
    bootstrap: str, topic: str, *, security: Mapping[str, Any] | None = None
) -> int:
    admin = make_admin(bootstrap, security=security)
    try:
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"]) if described else 0
    finally:
        admin.close()
