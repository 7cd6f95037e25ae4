"""The collector's way to Kafka: produce messages and wait for the broker's acknowledgement.

`KafkaGateway` is blocking (kafka-python) and thread-safe; the aiohttp handlers call it through
a thread pool so the event loop never waits on Kafka. The producer is created on first use, so
the collector starts (and answers /healthz) while Kafka is down; it uses `make_producer`'s
durable settings: acks from all in-sync replicas, idempotence.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline.config.settings import DEFAULT_KAFKA_COMPRESSION
from pipeline.kafka.probe import broker_answers
from pipeline.kafka.producer import make_producer
from pipeline.kafka.topics import KafkaUnavailable, unreachable_message


class ProduceFailed(RuntimeError):
    """Kafka did not acknowledge every message in time; some may still have been stored."""


class KafkaGateway:
    """Sends (key, value) messages to one topic; `produce()` returns only after acks=all."""

    RECONNECT_PAUSE_S = 1.0
    """After a failed connection attempt, requests fail at once for this long."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        timeout_s: float,
        *,
        security: Mapping[str, Any] | None = None,
        compression: str = DEFAULT_KAFKA_COMPRESSION,
        linger_ms: float = 5,
    ) -> None:
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self.security = dict(security or {})
        self.compression = compression
        self.topic = topic
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._failed_at = -float("inf")
        self._ready_cache: tuple[float, bool] = (-float("inf"), False)

    def _connected(self) -> KafkaProducer:
        with self._lock:
            if self._producer is not None:
                return self._producer
            if time.monotonic() - self._failed_at < self.RECONNECT_PAUSE_S:
                raise KafkaUnavailable(unreachable_message(self.bootstrap))
            ms = int(self.timeout_s * 1000)
            config: dict[str, Any] = {
                "client_id": "uptake-collector",
                "linger_ms": self.linger_ms,
                "bootstrap_timeout_ms": ms,
                "max_block_ms": ms,
                "request_timeout_ms": ms,
                "delivery_timeout_ms": ms + 1000,
                **self.security,
            }
            try:
                self._producer = make_producer(
                    self.bootstrap, compression=self.compression, **config
                )
            except KafkaUnavailable:
                self._failed_at = time.monotonic()
                raise
            return self._producer

    def produce(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Send the messages (key, JSON value) and wait for Kafka's acknowledgement of each.

        Raises `KafkaUnavailable` when no broker answers and `ProduceFailed` when a message was
        refused or not acknowledged within `timeout_s`. Blocking: call it from a worker thread.
        """
        for outcome in self.send_each(messages):
            if outcome is not None:
                raise outcome

    def send_each(self, messages: Sequence[tuple[str, bytes]]) -> list[ProduceFailed | None]:
        """Send the messages and wait (up to `timeout_s` in all) for each one's acknowledgement.

        One outcome per message, in order: None once Kafka acknowledged it, else the
        `ProduceFailed` saying why. Raises `KafkaUnavailable` (nothing sent) when no broker
        answers. Blocking: call it from a worker thread.
        """
        producer = self._connected()
        deadline = time.monotonic() + self.timeout_s
        futures: list[Any] = []
        outcomes: list[ProduceFailed | None] = []
        refused: KafkaError | None = None
        for key, value in messages:
            if refused is not None:  # e.g. no metadata within max_block_ms: don't wait again
                futures.append(refused)
                continue
            try:
                futures.append(producer.send(self.topic, key=key.encode("utf-8"), value=value))
            except KafkaError as exc:
                refused = exc
                futures.append(exc)
        for future in futures:
            try:
                if isinstance(future, KafkaError):
                    raise future
                future.get(timeout=max(0.0, deadline - time.monotonic()))
                outcomes.append(None)
            except KafkaError as exc:
                failed = ProduceFailed(
                    f"Kafka at {self.bootstrap} did not acknowledge the events within "
                    f"{self.timeout_s:g} s: {exc}"
                )
                failed.__cause__ = exc
                outcomes.append(failed)
        return outcomes

    def ready(self, cache_s: float = 2.0) -> bool:
        """True if a broker answers a metadata request (result cached for `cache_s`)."""
        checked, answer = self._ready_cache
        if time.monotonic() - checked < cache_s:
            return answer
        answer = broker_answers(
            self.bootstrap, timeout=min(self.timeout_s, 2.0), security=self.security
        )
        self._ready_cache = (time.monotonic(), answer)
        return answer

    def close(self) -> None:
        """Deliver what is in flight (up to `timeout_s`) and close the producer."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                producer.close(timeout=self.timeout_s)
