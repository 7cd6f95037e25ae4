"""Send generated events to Kafka with kafka-python, batched per team into JSON-array messages."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline.config.settings import DEFAULT_KAFKA_COMPRESSION, KAFKA_COMPRESSIONS
from pipeline.kafka.topics import KafkaUnavailable, unreachable_message


@dataclass
class ProduceReport:
    events: int = 0
    messages: int = 0
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def make_producer(
    bootstrap: str, *, compression: str = DEFAULT_KAFKA_COMPRESSION, **overrides: Any
) -> KafkaProducer:
    """A durable producer: acks from all in-sync replicas, ordered retries, batching.

    `compression` is UPTAKE_KAFKA_COMPRESSION's vocabulary (none, gzip, snappy, lz4, zstd):
    callers that have settings pass `settings.kafka.compression`. Raises ValueError for another
    value, KafkaUnavailable when no broker answers.
    """
    if compression not in KAFKA_COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {', '.join(KAFKA_COMPRESSIONS)}, not {compression!r}"
        )
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "acks": "all",
        # Not idempotent: kafka-python 3.0.12's idempotent producer never requests a new
        # producer id after a batch expired during a broker outage, so it stops sending for
        # good. One request in flight keeps per-partition order; a retry that duplicates a
        # record is folded by event_id in the warehouse.
        "enable_idempotence": False,
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": 20,
        "batch_size": 1024 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "client_id": "uptake-producer",
        "compression_type": None if compression == "none" else compression,
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        raise KafkaUnavailable(unreachable_message(bootstrap, overrides)) from exc


class ProgressLine:
    """Rewrites one status line on a terminal, prints a line every few seconds elsewhere."""

    def __init__(self, label: str, total: int | None, stream: Any = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        rate = done / max(now - self.started, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        pct = f" {100 * done / self.total:5.1f}%" if self.total else ""
        text = f"{self.label}: {done:,}{of}{pct}  {rate:,.0f}/s"
        if self.tty:
            self.stream.write("\r" + text + "   ")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def produce(
    producer: KafkaProducer,
    topic: str,
    events: Iterable[dict[str, Any]],
    *,
    per_message: int = 100,
    key_of: Callable[[dict[str, Any]], str] = lambda e: e.get("team") or e.get("service") or "",
    progress: ProgressLine | None = None,
    deadline: float | None = None,
) -> ProduceReport:
    """Send events as JSON-array messages of up to `per_message` events sharing one key.

    Stops early at `deadline` (time.monotonic()); flushes before returning, so every counted
    event was acknowledged by the broker. Raises KafkaUnavailable if the broker refuses.
    """
    report = ProduceReport()
    started = time.monotonic()
    buffers: dict[str, list[dict[str, Any]]] = {}
    encode = msgspec.json.encode
    futures = []

    def send(key: str, batch: list[dict[str, Any]]) -> None:
        futures.append(producer.send(topic, key=key.encode(), value=encode(batch)))
        report.messages += 1

    for event in events:
        key = key_of(event)
        buffer = buffers.setdefault(key, [])
        buffer.append(event)
        if len(buffer) >= per_message:
            send(key, buffer)
            buffers[key] = []
        report.events += 1
        if progress is not None and report.events % 1000 == 0:
            progress.update(report.events)
            if deadline is not None and time.monotonic() >= deadline:
                break
    for key, buffer in buffers.items():
        if buffer:
            send(key, buffer)
    producer.flush()
    for future in futures:
        if future.failed():
            raise KafkaUnavailable(f"Kafka did not take a message: {future.exception}")
    report.seconds = time.monotonic() - started
    if progress is not None:
        progress.finish(report.events)
    return report
