"""The dead-letter path: every rejected event goes to the DLQ topic with why and where it came from.

A message is the event's original bytes, keyed `topic:partition:offset:index`, with `uptake-*`
headers (docs/guarantees.md, "Dead letters"). `publish()` blocks until Kafka acknowledged every
message (acks=all) and raises `DeadLetterError` otherwise. The sink calls it before it writes the
same rejections, inside its retry loop: delivery is at-least-once (a replay publishes again,
same key).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer

from pipeline.contract.decode import Rejection

REASON = "uptake-reason"
DETAIL = "uptake-detail"
EVENT_TYPE = "uptake-event-type"
SOURCE_TOPIC = "uptake-source-topic"
SOURCE_PARTITION = "uptake-source-partition"
SOURCE_OFFSET = "uptake-source-offset"
SOURCE_INDEX = "uptake-source-index"
REJECTED_AT = "uptake-rejected-at"
REPLAYED = "uptake-replayed"


class DeadLetterError(RuntimeError):
    """Kafka did not acknowledge every dead-letter message."""


def dead_letter_key(rejection: Rejection) -> bytes:
    return f"{rejection.topic}:{rejection.partition}:{rejection.offset}:{rejection.index}".encode()


def dead_letter_headers(rejection: Rejection, *, replayed: bool = False) -> list[tuple[str, bytes]]:
    headers = [
        (REASON, str(rejection.reason).encode()),
        (DETAIL, rejection.detail.encode()[:4096]),
        (EVENT_TYPE, rejection.event_type.encode()),
        (SOURCE_TOPIC, rejection.topic.encode()),
        (SOURCE_PARTITION, str(rejection.partition).encode()),
        (SOURCE_OFFSET, str(rejection.offset).encode()),
        (SOURCE_INDEX, str(rejection.index).encode()),
        (REJECTED_AT, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
    ]
    if replayed:
        headers.append((REPLAYED, b"1"))
    return headers


def read_headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """Kafka headers as a str -> str mapping (later duplicates win)."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers or ()}


class DeadLetterPublisher:
    """Sends rejections to the dead-letter topic and waits for Kafka's acknowledgement."""

    def __init__(self, producer: KafkaProducer, topic: str, timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def publish(self, rejections: Sequence[Rejection], *, replayed: bool = False) -> int:
        futures: list[Any] = [
            self.producer.send(
                self.topic,
                key=dead_letter_key(r),
                value=r.raw,
                headers=dead_letter_headers(r, replayed=replayed),
            )
            for r in rejections
        ]
        if not futures:
            return 0
        self.producer.flush(timeout=self.timeout_s)
        failed = [f for f in futures if not f.is_done or f.failed()]
        if failed:
            first = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            raise DeadLetterError(
                f"{len(failed)} of {len(futures)} dead-letter messages to {self.topic} "
                f"were not acknowledged: {first}"
            )
        return len(futures)

    def close(self) -> None:
        self.producer.close(timeout=self.timeout_s)
