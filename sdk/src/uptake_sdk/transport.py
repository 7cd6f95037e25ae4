"""Transports: how a batch of JSON-array messages leaves the process.

A transport is used by the client's one sender thread only. `send()` blocks for at most about
`timeout_s`, returns the number of events the receiver refused (a collector's 207), and raises
`TransportError` otherwise: `permanent=True` when resending the same bytes cannot succeed (a
4xx other than 429), `retry_after` when the receiver said how long to wait (429/503).
kafka-python is imported only by the Kafka transport, when it first connects.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = ["KAFKA_COMPRESSIONS", "HttpTransport", "KafkaTransport", "Transport", "TransportError"]

KAFKA_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")

Message = tuple[str, bytes]
"""(Kafka key, JSON array of events)."""


class TransportError(Exception):
    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Transport(Protocol):
    def open(self) -> None:
        """Connect now (strict clients); raises `TransportError`. Otherwise `send` connects."""

    def send(self, messages: Sequence[Message]) -> int:
        """Deliver `messages`; the number of events the receiver refused, or `TransportError`."""

    def close(self) -> None: ...


class KafkaTransport:
    """Produces each message as one record (acks from all in-sync replicas, not idempotent,
    one request in flight: per-partition order; a duplicate from a retry is folded by event_id
    in the warehouse), then waits for every acknowledgement."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        timeout_s: float = 10.0,
        compression: str = "lz4",
        producer_config: Mapping[str, Any] | None = None,
        producer_factory: Callable[..., Any] | None = None,
    ) -> None:
        if compression not in KAFKA_COMPRESSIONS:
            raise ValueError(
                f"compression must be one of {', '.join(KAFKA_COMPRESSIONS)}, not {compression!r}"
            )
        self.bootstrap = bootstrap_servers
        self.topic = topic
        self.timeout_s = timeout_s
        self.compression = compression
        self.producer_config = dict(producer_config or {})
        self.producer_factory = producer_factory
        self._producer: Any = None

    def open(self) -> None:
        if self._producer is not None:
            return
        timeout_ms = int(self.timeout_s * 1000)
        config: dict[str, Any] = {
            "client_id": "uptake-sdk",
            "acks": "all",
            "enable_idempotence": False,
            "max_in_flight_requests_per_connection": 1,
            "linger_ms": 20,
            "batch_size": 1024 * 1024,
            "max_request_size": 8 * 1024 * 1024,
            "bootstrap_timeout_ms": timeout_ms,
            "max_block_ms": timeout_ms,
            "request_timeout_ms": timeout_ms,
            "delivery_timeout_ms": timeout_ms + 1000,
        }
        config.update(self.producer_config)
        try:
            if self.producer_factory is not None:
                self._producer = self.producer_factory(
                    self.bootstrap, compression=self.compression, **config
                )
            else:
                from kafka import KafkaProducer

                codec = None if self.compression == "none" else self.compression
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap.split(","), compression_type=codec, **config
                )
        except Exception as exc:  # kafka-python's NoBrokersAvailable, the factory's own errors
            raise TransportError(
                f"no Kafka broker answers at {self.bootstrap} within {self.timeout_s:g} s: {exc}"
            ) from exc

    def send(self, messages: Sequence[Message]) -> int:
        self.open()
        try:
            futures = [
                self._producer.send(self.topic, key=key.encode(), value=value)
                for key, value in messages
            ]
            self._producer.flush(timeout=self.timeout_s)
        except Exception as exc:  # KafkaTimeoutError (no metadata), a closed producer, ...
            raise TransportError(
                f"Kafka at {self.bootstrap} did not take the batch: {exc!r}"
            ) from exc
        for future in futures:
            if not future.is_done:
                raise TransportError(f"Kafka at {self.bootstrap} did not acknowledge in time")
            if future.failed():
                raise TransportError(f"Kafka at {self.bootstrap} refused: {future.exception!r}")
        return 0

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=1)


class HttpTransport:
    """POSTs a gzip'd JSON array to the collector's `/v1/events` with a bearer token.

    200 and 207 are delivered (207's refused events are counted), 429 and 503 are retried after
    `Retry-After`, other 5xx and network errors are retried with backoff, any other answer
    (401, 413, 422, ...) cannot succeed with the same body and is permanent.
    """

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/v1/events") else base + "/v1/events"
        self.token = token
        self.timeout_s = timeout_s

    def open(self) -> None:
        return None

    def send(self, messages: Sequence[Message]) -> int:
        import urllib.error  # here, not at the top: importing uptake_sdk stays fast
        import urllib.request

        items = [value[1:-1] for _, value in messages]
        body = gzip.compress(b"[" + b",".join(items) + b"]", compresslevel=5)
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "User-Agent": "uptake-sdk/0.1.0",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                status, payload = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
            retry_after = _retry_after(exc.headers.get("Retry-After"))
            text = payload[:300].decode("utf-8", "replace")
            if status in (429, 503) or (status >= 500 and status != 501):
                raise TransportError(
                    f"the collector at {self.url} answered {status}: {text}",
                    retry_after=retry_after,
                ) from exc
            if status == 422:  # every event refused: the decoder disagreed (clock rules)
                return _refused(payload)
            raise TransportError(
                f"the collector at {self.url} answered {status}: {text}", permanent=True
            ) from exc
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            raise TransportError(f"the collector at {self.url} is unreachable: {exc}") from exc
        return _refused(payload) if status == 207 else 0

    def close(self) -> None:
        return None


def _refused(payload: bytes) -> int:
    try:
        return int(json.loads(payload).get("rejected", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
