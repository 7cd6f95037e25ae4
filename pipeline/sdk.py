"""The emitter SDK: how a platform service sends usage events to Uptake from Python.

```python
from pipeline.sdk import UptakeClient, api_call

with UptakeClient("kafka-1:9092", source="api-gateway") as uptake:
    uptake.emit(api_call(capability="api-gateway", team="checkout", api="orders",
                         operation="POST /v1/orders", status_code=201, latency_ms=23.7))
```

Contract of `UptakeClient`:

- `emit()` validates every event locally with the worker's own decoder
  (`pipeline.contract.decode.BatchDecoder`) before anything is sent; an event the worker would
  reject raises `InvalidEvent` (reason code + JSON path) and is not sent. Missing `event_id`
  (a random UUID), `occurred_at` (now, UTC), `schema_version` (1) and `source` (the client's)
  are filled in first; the caller's dict is never modified.
- Valid events are grouped per Kafka key (the team, else the service) into JSON-array messages
  of at most `batch_events` events (and at most `MESSAGE_TARGET_BYTES`, so the worker's and
  the broker's size limits hold). A group is sent when it is full, when it is `linger_ms` old
  (a background thread), on `flush()`, on `close()` and at interpreter exit (`atexit`).
- The producer is `pipeline.kafka.producer.make_producer`'s: acks from all in-sync replicas,
  idempotent. `flush()` returns only once Kafka acknowledged every event emitted before it,
  and raises `DeliveryError` (carrying the events concerned) if Kafka did not take some;
  re-emitting those is safe because the warehouse deduplicates by `event_id`.
- Failures of background sends are reported by the next `flush()` / `close()`, never lost.
- A client is thread-safe: any number of threads may `emit()` concurrently.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import msgspec
from kafka.errors import KafkaError

from pipeline.config.settings import DEFAULT_KAFKA_COMPRESSION
from pipeline.contract.decode import BatchDecoder, Limits, SourceMessage
from pipeline.contract.reasons import Reason
from pipeline.kafka.producer import make_producer
from pipeline.kafka.topics import KafkaUnavailable

log = logging.getLogger(__name__)

__all__ = [
    "MESSAGE_TARGET_BYTES",
    "DeliveryError",
    "InvalidEvent",
    "UptakeClient",
    "api_call",
    "deploy",
    "incident",
    "model_training",
    "pack_messages",
    "rfc3339",
]

MESSAGE_TARGET_BYTES = 512 * 1024
"""Largest JSON-array message the SDK and the collector build from several events.

Below the worker's `UPTAKE_MAX_MESSAGE_BYTES` (1 MiB by default) and Kafka's default
`message.max.bytes` with room for the record overhead. A single event larger than this is
still sent alone (the decoder has already checked it against `max_message_bytes`).
"""

_PATH = re.compile(r" - at `(?P<path>[^`]*)`$")
_PATH_OF_REASON = {
    Reason.MISSING_ATTRIBUTION: "$.team",
    Reason.OCCURRED_IN_FUTURE: "$.occurred_at",
    Reason.OCCURRED_TOO_OLD: "$.occurred_at",
    Reason.UNSUPPORTED_VERSION: "$.schema_version",
    Reason.UNKNOWN_EVENT_TYPE: "$.event_type",
}


class InvalidEvent(ValueError):
    """The worker would reject this event; it was not sent.

    `reason` is the machine-readable reject reason (`pipeline.contract.reasons.Reason`),
    `path` the JSON path of the offending field (`$` for the whole event), `detail` the
    decoder's explanation and `event` the event as it would have been sent.
    """

    def __init__(self, reason: Reason | str, detail: str, event: Any = None) -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.event = event
        match = _PATH.search(detail)
        self.path = match["path"] if match else _PATH_OF_REASON.get(self.reason, "$")
        text = detail[: match.start()] if match else detail
        super().__init__(f"invalid event: {self.reason.value} at {self.path}: {text}")


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge some events (or no broker answered at all).

    `events` holds the events concerned (dicts, as sent) so they can be emitted again:
    a retry is safe because the warehouse deduplicates by `event_id`. Events that timed out
    may still arrive later. `errors` holds the underlying Kafka exceptions.
    """

    def __init__(
        self,
        message: str,
        events: Sequence[dict[str, Any]] = (),
        errors: Sequence[BaseException] = (),
    ) -> None:
        super().__init__(message)
        self.events = list(events)
        self.errors = list(errors)


def rfc3339(value: datetime | str | None = None) -> str:
    """RFC 3339 text of `value` (default: now). Aware datetimes are converted to UTC (`Z`).

    A naive datetime keeps no offset, so validation rejects it: the SDK never guesses a zone.
    Strings are returned unchanged.
    """
    if value is None:
        value = datetime.now(UTC)
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        return value.isoformat()
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def pack_messages(
    items: Iterable[tuple[str, bytes]],
    max_events: int,
    max_bytes: int = MESSAGE_TARGET_BYTES,
) -> list[tuple[str, bytes]]:
    """Group encoded events (key, JSON bytes) into JSON-array messages sharing one key.

    Events keep their order within a key; a message holds at most `max_events` events and at
    most `max_bytes` bytes unless a single event is larger on its own.
    """
    groups: dict[str, list[list[bytes]]] = {}
    sizes: dict[str, int] = {}
    for key, raw in items:
        batches = groups.setdefault(key, [[]])
        current = batches[-1]
        size = sizes.get(key, 1)
        if current and (len(current) >= max_events or size + len(raw) + 1 > max_bytes):
            current = []
            batches.append(current)
            size = 1
        current.append(raw)
        sizes[key] = size + len(raw) + 1
    return [(key, b"[" + b",".join(b) + b"]") for key, batches in groups.items() for b in batches]


def _envelope(
    event_type: str,
    *,
    capability: str,
    data: dict[str, Any],
    team: str | None,
    service: str | None,
    user: str | None,
    occurred_at: datetime | str | None,
    event_id: str | uuid.UUID | None,
    source: str | None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(event_id or uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": rfc3339(occurred_at),
        "capability": capability,
    }
    optional = {"source": source, "team": team, "service": service, "user": user}
    event.update({k: v for k, v in optional.items() if v is not None})
    event["data"] = data
    return event


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def api_call(
    *,
    capability: str,
    api: str,
    operation: str,
    status_code: int,
    latency_ms: float,
    team: str | None = None,
    service: str | None = None,
    user: str | None = None,
    outcome: Mapping[str, Any] | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """An `api_call` event dict (docs/events.md); `occurred_at` defaults to now.

    `outcome` is the optional business decision, e.g.
    `{"name": "risk_decision", "decision": "approve", "value": 249.9, "unit": "EUR"}`.
    """
    data = _without_none(
        {
            "api": api,
            "operation": operation,
            "status_code": status_code,
            "latency_ms": latency_ms,
            "outcome": dict(outcome) if outcome is not None else None,
        }
    )
    return _envelope(
        "api_call",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


def deploy(
    *,
    deployment_id: str,
    service: str,
    environment: str,
    status: str,
    team: str | None = None,
    commits: Iterable[Mapping[str, Any] | tuple[str, datetime | str]] = (),
    started_at: datetime | str | None = None,
    capability: str = "deploy-pipeline",
    user: str | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A `deploy` event dict, sent when the deployment ended (`status`: succeeded, failed,
    rolled_back). `commits` are `{"sha", "committed_at"}` mappings or `(sha, committed_at)`
    pairs. The envelope's `service` is the deployed service."""
    commit_list = [
        {"sha": c[0], "committed_at": rfc3339(c[1])}
        if isinstance(c, tuple)
        else {**c, "committed_at": rfc3339(c["committed_at"])}
        for c in commits
    ]
    data = _without_none(
        {
            "deployment_id": deployment_id,
            "service": service,
            "environment": environment,
            "status": status,
            "started_at": rfc3339(started_at) if started_at is not None else None,
        }
    )
    if commit_list:
        data["commits"] = commit_list
    return _envelope(
        "deploy",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


def model_training(
    *,
    run_id: str,
    model: str,
    status: str,
    duration_s: float,
    gpu_hours: float | None = None,
    registered_model: str | None = None,
    team: str | None = None,
    service: str | None = None,
    capability: str = "ml-training",
    user: str | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A `model_training` event dict, sent when the run ended (`status`: succeeded, failed,
    cancelled)."""
    data = _without_none(
        {
            "run_id": run_id,
            "model": model,
            "status": status,
            "duration_s": duration_s,
            "gpu_hours": gpu_hours,
            "registered_model": registered_model,
        }
    )
    return _envelope(
        "model_training",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


def incident(
    *,
    incident_id: str,
    service: str,
    severity: str,
    status: str,
    opened_at: datetime | str,
    resolved_at: datetime | str | None = None,
    caused_by_deployment: str | None = None,
    team: str | None = None,
    capability: str = "incident-response",
    user: str | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """An `incident` event dict (`severity` sev1..sev4, `status` opened or resolved); the
    envelope's `service` is the affected service."""
    data = _without_none(
        {
            "incident_id": incident_id,
            "service": service,
            "severity": severity,
            "status": status,
            "opened_at": rfc3339(opened_at),
            "resolved_at": rfc3339(resolved_at) if resolved_at is not None else None,
            "caused_by_deployment": caused_by_deployment,
        }
    )
    return _envelope(
        "incident",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


@dataclass
class _Group:
    """Events of one key waiting to be sent as one JSON-array message."""

    started: float
    items: list[bytes] = field(default_factory=list)
    size: int = 1  # bytes of the JSON array: "[" + items joined by "," + "]"

    def value(self) -> bytes:
        return b"[" + b",".join(self.items) + b"]"


@dataclass
class _Sent:
    future: Any  # kafka.producer.future.FutureRecordMetadata
    value: bytes


class UptakeClient:
    """Validates, batches and sends usage events to the Uptake events topic.

    `bootstrap_servers`: "host:port[,host:port]" or a list. `source` fills the `source` of
    events that have none. `timeout_s` bounds connecting, each blocking send and the default
    `flush()`. `limits` are the decoder's clock and size rules (the worker's defaults).
    `producer_config` overrides kafka-python producer settings. `compression` is the codec of
    the record batches (none, gzip, snappy, lz4, zstd; the default of UPTAKE_KAFKA_COMPRESSION,
    which services usually pass on: `compression=Settings.from_env().kafka_compression`).

    The constructor connects: it raises `DeliveryError` if no broker answers within
    `timeout_s`. Use it as a context manager, or call `close()`; events still buffered when
    the interpreter exits are flushed by an `atexit` hook.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str = "uptake.events",
        *,
        batch_events: int = 100,
        linger_ms: int = 50,
        source: str | None = None,
        timeout_s: float = 30.0,
        limits: Limits | None = None,
        producer_config: Mapping[str, Any] | None = None,
        compression: str = DEFAULT_KAFKA_COMPRESSION,
    ) -> None:
        if batch_events < 1:
            raise ValueError("batch_events must be at least 1")
        if linger_ms < 0:
            raise ValueError("linger_ms must not be negative")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be greater than 0")
        self.topic = topic
        self.source = source
        self.batch_events = batch_events
        self.linger_s = linger_ms / 1000
        self.timeout_s = timeout_s
        self._decoder = BatchDecoder(limits)
        self._max_bytes = min(MESSAGE_TARGET_BYTES, self._decoder.limits.max_message_bytes)
        self._send_lock = threading.Lock()  # guards _groups; orders sends
        self._lock = threading.Lock()  # guards _sent and _failed
        self._groups: dict[str, _Group] = {}
        self._sent: list[_Sent] = []
        self._failed: list[tuple[bytes, BaseException]] = []
        self._closed = False
        bootstrap = (
            bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
        )
        timeout_ms = int(timeout_s * 1000)
        config: dict[str, Any] = {
            "client_id": "uptake-sdk",
            "linger_ms": min(linger_ms, 20),
            "bootstrap_timeout_ms": timeout_ms,
            "max_block_ms": timeout_ms,
            "request_timeout_ms": timeout_ms,
            "delivery_timeout_ms": timeout_ms + 1000,
        }
        config.update(producer_config or {})
        try:
            self._producer = make_producer(bootstrap, compression=compression, **config)
        except KafkaUnavailable as exc:
            raise DeliveryError(f"{exc} No event can be delivered.", errors=[exc]) from exc
        self._bootstrap = bootstrap
        self._stop = threading.Event()
        self._linger_thread = threading.Thread(
            target=self._linger_loop, name="uptake-sdk-linger", daemon=True
        )
        self._linger_thread.start()
        atexit.register(self._flush_at_exit)  # after the producer's own hook, so it runs first

    # -- public API -----------------------------------------------------------------------

    def emit(self, event: Mapping[str, Any] | msgspec.Struct) -> None:
        """Validate `event` and queue it for sending; raises `InvalidEvent` if the worker would
        reject it. Never blocks on Kafka unless a full group meets a broker without metadata
        (then for `timeout_s` at most; the failure is reported by the next `flush()`)."""
        if self._closed:
            raise RuntimeError("this UptakeClient is closed")
        record = self._complete(event)
        raw = self._validate(record)
        key = record.get("team") or record.get("service")
        assert isinstance(key, str)  # attribution was validated
        with self._send_lock:
            if self._closed:
                raise RuntimeError("this UptakeClient is closed")
            group = self._groups.get(key)
            if group is not None and group.size + len(raw) + 1 > self._max_bytes:
                self._send(key, self._groups.pop(key))
                group = None
            if group is None:
                group = self._groups[key] = _Group(time.monotonic())
            group.items.append(raw)
            group.size += len(raw) + 1
            if len(group.items) >= self.batch_events:
                self._send(key, self._groups.pop(key))

    def flush(self, timeout: float | None = None) -> None:
        """Send every buffered event and wait until Kafka acknowledged all events emitted so far.

        Raises `DeliveryError` with the events Kafka did not acknowledge within `timeout`
        seconds (default `timeout_s`) or refused, including failures of earlier background
        sends. After it returns (or raises) those events are no longer tracked.
        """
        timeout = self.timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._send_groups(lambda group: True)
        with self._lock:  # judge what was sent until now; later sends are for the next flush
            sent, self._sent = self._sent, []
            failed, self._failed = self._failed, []
        timed_out: BaseException | None = None
        try:
            self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            timed_out = exc
        for item in sent:
            if not item.future.is_done:
                failed.append((item.value, timed_out or TimeoutError("not acknowledged in time")))
            elif item.future.failed():
                failed.append((item.value, item.future.exception))
        if failed:
            events = [e for value, _ in failed for e in msgspec.json.decode(value)]
            errors = [error for _, error in failed]
            raise DeliveryError(
                f"Kafka at {self._bootstrap} did not acknowledge {len(events)} event(s) "
                f"in {len(failed)} message(s) to {self.topic}: {errors[0]!r}. "
                "Emitting them again is safe (the warehouse deduplicates by event_id).",
                events,
                errors,
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush (see `flush()`, which may raise `DeliveryError`), then release the producer.
        Idempotent; a closed client refuses `emit()`."""
        with self._send_lock:  # from here on, emit() refuses: nothing is left behind
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout)
        finally:
            self._stop.set()
            atexit.unregister(self._flush_at_exit)
            with contextlib.suppress(KafkaError):  # after a failed flush
                self._producer.close(timeout=1)

    def __enter__(self) -> UptakeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Builders, also reachable from the class: `UptakeClient.api_call(...)`.
    api_call = staticmethod(api_call)
    deploy = staticmethod(deploy)
    model_training = staticmethod(model_training)
    incident = staticmethod(incident)

    # -- internals ------------------------------------------------------------------------

    def _complete(self, event: Mapping[str, Any] | msgspec.Struct) -> dict[str, Any]:
        """A copy of `event` as a dict, with the defaults filled in."""
        if isinstance(event, msgspec.Struct):
            record = msgspec.to_builtins(event)
        elif isinstance(event, Mapping):
            record = dict(event)
        else:
            raise TypeError(f"an event is a dict or an Envelope struct, not {type(event).__name__}")
        if not isinstance(record, dict):  # pragma: no cover - to_builtins of a struct is a dict
            raise TypeError("an event must encode to a JSON object")
        if record.get("event_id") is None:
            record["event_id"] = str(uuid.uuid4())
        if record.get("occurred_at") is None:
            record["occurred_at"] = rfc3339()
        elif isinstance(record["occurred_at"], datetime):
            record["occurred_at"] = rfc3339(record["occurred_at"])
        if record.get("schema_version") is None:
            record["schema_version"] = 1
        if record.get("source") is None and self.source is not None:
            record["source"] = self.source
        return record

    def _validate(self, record: dict[str, Any]) -> bytes:
        """The event's JSON bytes if the worker would accept it, else `InvalidEvent`."""
        try:
            raw = msgspec.json.encode(record)
        except (TypeError, ValueError) as exc:
            raise InvalidEvent(
                Reason.NOT_JSON, f"the event cannot be written as JSON: {exc}", record
            ) from exc
        decoded = self._decoder.decode([SourceMessage(self.topic, -1, -1, raw)])
        if decoded.rejections:
            rejection = decoded.rejections[0]
            raise InvalidEvent(rejection.reason, rejection.detail, record)
        return raw

    def _send(self, key: str, group: _Group) -> None:
        """Hand one group to the producer; called with `_send_lock` held, so the messages of a
        key reach the producer in the order their events were emitted."""
        value = group.value()
        try:
            future = self._producer.send(self.topic, key=key.encode(), value=value)
        except KafkaError as exc:  # no metadata within max_block_ms, producer closed, ...
            with self._lock:
                self._failed.append((value, exc))
            return
        with self._lock:
            if len(self._sent) >= 1000:  # forget acknowledged sends; keep failures for flush()
                self._sent = [s for s in self._sent if not s.future.succeeded()]
            self._sent.append(_Sent(future, value))

    def _send_groups(self, due: Callable[[_Group], bool]) -> None:
        with self._send_lock:
            for key in [key for key, group in self._groups.items() if due(group)]:
                self._send(key, self._groups.pop(key))

    def _is_due(self, group: _Group) -> bool:
        return group.started <= time.monotonic() - self.linger_s

    def _linger_loop(self) -> None:
        """Background thread: send groups older than `linger_s`."""
        interval = max(self.linger_s, 0.005)
        while not self._stop.wait(interval):
            self._send_groups(self._is_due)

    def _flush_at_exit(self) -> None:
        """`atexit` hook: deliver what is left; report (never raise) what Kafka refused."""
        try:
            self.close()
        except DeliveryError as exc:
            log.error("uptake: %s", exc)
            print(f"uptake: {exc}", file=sys.stderr)
