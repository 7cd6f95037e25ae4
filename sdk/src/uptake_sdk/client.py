"""`UptakeClient`: validate, queue and send usage events without getting in the host's way.

Contract (docs/sdk.md has the table):

- The constructor never touches the network (unless `strict=True`, see below). With
  `disabled=True` or `UPTAKE_SDK_DISABLED=1` every method is a no-op: no thread, no socket.
- `emit()` validates the event with the worker's own decoder, then appends it to a bounded
  in-memory queue (`max_queue_events`, `max_queue_bytes`) under one lock and returns; it never
  waits for the network. When the queue is full the *new* event is dropped (drop newest: what
  is queued keeps its order and its place) and counted.
- One background thread sends: events are grouped per Kafka key (team, else service) into
  JSON-array messages of at most `batch_events` events; a group leaves when full or
  `linger_ms` old. A failed send is retried with exponential backoff and full jitter
  (`retry_initial_s` doubling up to `retry_max_s`; a 429/503 `Retry-After` is honoured). With
  `spool_dir`, a batch that failed is written to disk and sent from there, also by the next
  process; without it the batch waits in memory (still inside the queue's bounds).
- Problems never raise into the host: invalid events, failed sends and drops go to
  `on_error(error)` (an `UptakeError`) and to the counters of `stats()`. An exception raised by
  `on_error` is logged and ignored.
- `flush(timeout)` and `close(timeout)` return within `timeout` (default `timeout_s`); the
  `atexit` hook closes within `exit_timeout_s`. What `close()` could not deliver is spooled, or
  else dropped and counted.
- `strict=True` (tests, scripts, `pipeline.sdk`): the constructor connects (Kafka) and raises
  `DeliveryError` when no broker answers, `emit()` raises `InvalidEvent`, and `flush()` /
  `close()` raise `DeliveryError` naming the events not delivered in time.
- Thread-safe: share one client per process.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from ._contract.decode import BatchDecoder, Limits, SourceMessage
from ._contract.reasons import Reason
from .errors import DeliveryError, InvalidEvent, UptakeError
from .events import (
    MESSAGE_TARGET_BYTES,
    api_call,
    deploy,
    feedback,
    incident,
    model_training,
    rfc3339,
)
from .spool import Spool
from .transport import HttpTransport, KafkaTransport, Message, Transport, TransportError

__all__ = ["DISABLED_ENV", "Stats", "UptakeClient"]

log = logging.getLogger("uptake_sdk")
log.addHandler(logging.NullHandler())  # a library: the host decides where logs go

DISABLED_ENV = "UPTAKE_SDK_DISABLED"
_TRUE = {"1", "true", "yes", "on"}
_SEND_MAX_EVENTS = 500  # one send: at most this many events (and MESSAGE_TARGET_BYTES) ...
_SEND_MAX_MESSAGES = 50  # ... in at most this many messages


@dataclass
class Stats:
    """Counters since the client was created (a snapshot from `stats()`)."""

    queued: int = 0  # valid events taken by emit()
    delivered: int = 0  # acknowledged by Kafka / answered 200 or 207 (accepted) by the collector
    invalid: int = 0  # refused by validation, never queued
    dropped_queue_full: int = 0  # emit() found the queue full (the new event was dropped)
    dropped_refused: int = 0  # the receiver refused them for good (4xx, 207/422 rejects)
    dropped_undelivered: int = 0  # still undelivered when close() gave up, and not spooled
    dropped_spool_full: int = 0  # a failed batch found the spool full
    send_failures: int = 0  # failed send attempts (each is retried)
    spooled: int = 0  # events written to the disk spool
    in_queue: int = 0  # events in memory now (queued, not delivered)

    @property
    def dropped(self) -> int:
        return (
            self.dropped_queue_full
            + self.dropped_refused
            + self.dropped_undelivered
            + self.dropped_spool_full
        )


@dataclass
class _Group:
    """Events of one key on their way to one JSON-array message."""

    key: str
    started: float
    items: list[bytes] = field(default_factory=list)
    size: int = 1  # bytes of the JSON array: "[" + items joined by "," + "]"

    def message(self) -> Message:
        return self.key, b"[" + b",".join(self.items) + b"]"


def _disabled_by_env() -> bool:
    return os.environ.get(DISABLED_ENV, "").strip().lower() in _TRUE


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class UptakeClient:
    """Sends usage events to Uptake through Kafka or the HTTP collector.

    Kafka: `UptakeClient("kafka-1:9092", source="svc")` (`topic`, `compression`,
    `producer_config` for kafka-python settings such as SASL/TLS). HTTP:
    `UptakeClient(url="https://collector:8080", token="...", source="svc")`.
    See the module docstring for the failure behaviour and docs/sdk.md for every option.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        topic: str = "uptake.events",
        *,
        url: str | None = None,
        token: str | None = None,
        source: str | None = None,
        batch_events: int = 100,
        linger_ms: int = 50,
        max_queue_events: int = 10_000,
        max_queue_bytes: int = 16 * 1024 * 1024,
        on_error: Callable[[UptakeError], None] | None = None,
        strict: bool = False,
        disabled: bool | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        timeout_s: float = 10.0,
        exit_timeout_s: float = 5.0,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
        limits: Limits | None = None,
        compression: str = "lz4",
        producer_config: Mapping[str, Any] | None = None,
        producer_factory: Callable[..., Any] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.disabled = _disabled_by_env() if disabled is None else disabled
        if self.disabled:
            # Every call is a no-op bound on the instance: no validation, no lock, no thread.
            self.emit = _noop  # type: ignore[method-assign]
            self.flush = lambda timeout=None: True  # type: ignore[method-assign]
            self.close = _noop  # type: ignore[method-assign]
            self.source = source
            return
        if batch_events < 1:
            raise ValueError("batch_events must be at least 1")
        if linger_ms < 0:
            raise ValueError("linger_ms must not be negative")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be greater than 0")
        if transport is None:
            if url is not None:
                if bootstrap_servers is not None:
                    raise ValueError("give either bootstrap_servers (Kafka) or url (HTTP)")
                if not token:
                    raise ValueError("the HTTP transport needs the source's bearer token")
                transport = HttpTransport(url, token, timeout_s=timeout_s)
            elif bootstrap_servers is not None:
                bootstrap = (
                    bootstrap_servers
                    if isinstance(bootstrap_servers, str)
                    else ",".join(bootstrap_servers)
                )
                transport = KafkaTransport(
                    bootstrap,
                    topic,
                    timeout_s=timeout_s,
                    compression=compression,
                    producer_config=producer_config,
                    producer_factory=producer_factory,
                )
            else:
                raise ValueError("give bootstrap_servers (Kafka) or url and token (HTTP)")
        self.topic = topic
        self.source = source
        self.strict = strict
        self.batch_events = batch_events
        self.linger_s = linger_ms / 1000
        self.timeout_s = timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.max_queue_events = max_queue_events
        self.max_queue_bytes = max_queue_bytes
        self.on_error = on_error
        self._transport = transport
        self._decoder = BatchDecoder(limits)
        self._max_bytes = min(MESSAGE_TARGET_BYTES, self._decoder.limits.max_message_bytes)
        self._spool = Spool(spool_dir, spool_max_bytes) if spool_dir is not None else None

        self._cond = threading.Condition()  # guards everything below
        self._groups: dict[str, _Group] = {}
        self._ready: deque[Message] = deque()
        self._inflight: list[Message] = []
        self._events = 0  # events in _groups, _ready and _inflight
        self._bytes = 0
        self._stats = Stats()
        self._errors: list[BaseException] = []  # send failures since the last flush (strict)
        self._flush_requested = 0
        self._closed = False
        self._stop = False
        self._retry_at = 0.0
        self._attempt = 0
        self._opened = strict
        if strict:
            try:
                transport.open()
            except TransportError as exc:
                raise DeliveryError(f"{exc} No event can be delivered.", errors=[exc]) from exc
        self._thread = threading.Thread(target=self._run, name="uptake-sdk-sender", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- public API -----------------------------------------------------------------------

    def emit(self, event: Mapping[str, Any] | msgspec.Struct) -> None:
        """Validate `event` and queue it; returns at once (see the module docstring)."""
        try:
            record = self._complete(event)
            raw = self._validate(record)
        except InvalidEvent as exc:
            with self._cond:
                self._stats.invalid += 1
            self._report(exc)
            return
        key = record.get("team") or record.get("service")
        assert isinstance(key, str)  # attribution was validated
        size = len(raw) + 1
        with self._cond:
            if self._closed:
                closed = True
            elif (
                self._events + 1 > self.max_queue_events
                or self._bytes + size > self.max_queue_bytes
            ):
                self._stats.dropped_queue_full += 1
                closed = False
            else:
                self._append(key, raw, size)
                return
        if closed:
            if self.strict:
                raise RuntimeError("this UptakeClient is closed")
            self._report(DeliveryError("emit() after close(): event dropped", dropped=True,
                                       reason="closed", count=1))  # fmt: skip
            return
        self._report(
            DeliveryError(
                f"the queue is full ({self.max_queue_events} events / {self.max_queue_bytes} "
                "bytes): the new event was dropped",
                [record],
                dropped=True,
                reason="queue_full",
            )
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued (and spooled) and wait, at most `timeout` seconds (default
        `timeout_s`), until it was delivered. True when nothing is left; strict clients raise
        `DeliveryError` instead of returning False."""
        timeout = self.timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_requested += 1
            self._retry_at = 0.0  # a flush is a reason to try now
            self._cond.notify_all()
            try:
                while not self._drained() and not self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, 0.05))
                done = self._drained()
                errors, self._errors = self._errors, []
                pending: list[Message] = []
                if not done and self.strict:
                    # as the first SDK did: the events named by the error are no longer tracked
                    pending = self._take_all()
                    self._stats.dropped_undelivered += _count(pending)
            finally:
                self._flush_requested -= 1
        if not done and self.strict:
            raise self._undelivered(pending, errors)
        return done

    def close(self, timeout: float | None = None) -> None:
        """Flush within `timeout`, then stop the sender. What is left is spooled, or dropped and
        reported. Idempotent; a closed client drops (strict: refuses) further events."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._at_exit)
        error: DeliveryError | None = None
        try:
            self.flush(timeout)
        except DeliveryError as exc:
            error = exc
        with self._cond:
            self._stop = True
            left = self._take_all()
            self._cond.notify_all()
        self._thread.join(timeout=0.5)
        if not self._thread.is_alive():
            self._transport.close()
        if left:
            count = sum(len(msgspec.json.decode(v)) for _, v in left)
            if self._spool is not None and self._spool.put(left):
                with self._cond:
                    self._stats.spooled += count
                log.warning("uptake: %d undelivered event(s) spooled to %s", count,
                            self._spool.folder)  # fmt: skip
                error = None
            else:
                with self._cond:
                    self._stats.dropped_undelivered += count
                dropped = error or self._undelivered(left, [])
                dropped.dropped, dropped.reason = True, "undelivered_at_close"
                if not self.strict:
                    self._report(dropped)
                error = dropped if self.strict else None
        if error is not None:
            raise error

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        with self._cond:
            snapshot = dataclasses.replace(self._stats)
            snapshot.in_queue = self._events
            return snapshot

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

    def feedback(
        self,
        *,
        capability: str,
        scale: str,
        score: int,
        comment: str | None = None,
        user: str | None = None,
        team: str | None = None,
        service: str | None = None,
        occurred_at: datetime | str | None = None,
    ) -> str:
        """Send a developer's rating of `capability` (unlike the builders above, this emits):
        `score` on `scale` (`csat` 1-5 or `nps` 0-10), an optional `comment` (at most 1,000
        characters), `user` the respondent. Returns the event id; validation and delivery
        failures behave as for `emit`."""
        event = feedback(
            capability=capability,
            scale=scale,
            score=score,
            comment=comment,
            user=user,
            team=team,
            service=service,
            occurred_at=occurred_at,
        )
        self.emit(event)
        return str(event["event_id"])

    # -- validation -----------------------------------------------------------------------

    def _complete(self, event: Mapping[str, Any] | msgspec.Struct) -> dict[str, Any]:
        """A copy of `event` as a dict, with the defaults filled in."""
        if isinstance(event, msgspec.Struct):
            record = msgspec.to_builtins(event)
        elif isinstance(event, Mapping):
            record = dict(event)
        else:
            raise InvalidEvent(
                Reason.SCHEMA_VIOLATION,
                f"an event is a dict or a contract struct, not {type(event).__name__}",
            )
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

    # -- the queue (callers hold self._cond) ------------------------------------------------

    def _append(self, key: str, raw: bytes, size: int) -> None:
        group = self._groups.get(key)
        if group is not None and group.size + size > self._max_bytes:
            self._ready.append(self._groups.pop(key).message())
            group = None
        if group is None:
            group = self._groups[key] = _Group(key, time.monotonic())
            self._cond.notify_all()  # the sender learns when this group is due
        group.items.append(raw)
        group.size += size
        self._events += 1
        self._bytes += size
        self._stats.queued += 1
        if len(group.items) >= self.batch_events:
            self._ready.append(self._groups.pop(key).message())
            self._cond.notify_all()

    def _drained(self) -> bool:
        spooled = self._spool is not None and bool(self._spool.files())
        return self._events == 0 and not spooled

    def _pending_messages(self) -> list[Message]:
        return [*self._inflight, *self._ready, *(g.message() for g in self._groups.values())]

    def _take_all(self) -> list[Message]:
        left = self._pending_messages()
        self._inflight, self._groups = [], {}
        self._ready.clear()
        self._events = self._bytes = 0
        return left

    def _move_due_groups(self, now: float) -> None:
        everything = self._flush_requested > 0 or self._closed
        due = [k for k, g in self._groups.items() if everything or g.started <= now - self.linger_s]
        for key in due:
            self._ready.append(self._groups.pop(key).message())

    def _next_due(self) -> float | None:
        if not self._groups:
            return None
        return min(g.started for g in self._groups.values()) + self.linger_s

    # -- the sender thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                batch, from_spool = self._wait_for_batch()
                if batch is None:
                    return
            try:
                if not self._opened:
                    self._transport.open()
                    self._opened = True
                    # kafka-python registers its own exit hook when a producer is created;
                    # ours must run before it (atexit is last in, first out).
                    if not self._closed:
                        atexit.unregister(self._at_exit)
                        atexit.register(self._at_exit)
                refused = self._transport.send(batch)
            except TransportError as exc:
                self._failed(batch, from_spool, exc)
                continue
            except Exception as exc:
                self._failed(batch, from_spool, TransportError(repr(exc)))
                continue
            self._delivered(batch, from_spool, refused)

    def _wait_for_batch(self) -> tuple[list[Message] | None, Path | None]:
        while True:
            if self._stop:
                return None, None
            now = time.monotonic()
            if now < self._retry_at:
                self._cond.wait(self._retry_at - now)
                continue
            if self._inflight:
                return self._inflight, None
            if self._spool is not None:
                files = self._spool.files()
                if files:
                    return Spool.read(files[0]), files[0]
            self._move_due_groups(now)
            if self._ready:
                batch: list[Message] = []
                events = size = 0
                while self._ready and len(batch) < _SEND_MAX_MESSAGES:
                    value = self._ready[0][1]
                    n = value.count(b'"event_id"')  # an upper bound is enough here
                    full = events + n > _SEND_MAX_EVENTS or size + len(value) > MESSAGE_TARGET_BYTES
                    if batch and full:
                        break
                    batch.append(self._ready.popleft())
                    events += n
                    size += len(value)
                self._inflight = batch
                return batch, None
            due = self._next_due()
            self._cond.wait(None if due is None else max(due - now, 0.001))

    def _delivered(self, batch: list[Message], from_spool: Path | None, refused: int) -> None:
        count = _count(batch)
        with self._cond:
            if self._stop or (from_spool is None and batch is not self._inflight):
                return  # given up meanwhile (close, or a strict flush reported it)
            if from_spool is not None:
                from_spool.unlink(missing_ok=True)
            else:
                self._forget_inflight(batch, count)
            self._stats.delivered += count - refused
            self._stats.dropped_refused += refused
            if self._attempt:
                log.info("uptake: sending works again after %d failed attempt(s)", self._attempt)
            self._attempt = 0
            self._cond.notify_all()
        if refused:
            self._report(DeliveryError(f"the collector refused {refused} event(s)",
                                       dropped=True, reason="refused", count=refused))  # fmt: skip

    def _failed(self, batch: list[Message], from_spool: Path | None, exc: TransportError) -> None:
        count = _count(batch)
        with self._cond:
            if self._stop or (from_spool is None and batch is not self._inflight):
                return  # given up meanwhile (close, or a strict flush reported it)
            self._stats.send_failures += 1
            self._errors = [*self._errors[-9:], exc]
            to_spool = not exc.permanent and from_spool is None and self._spool is not None
            if exc.permanent:
                if from_spool is not None:
                    from_spool.unlink(missing_ok=True)
                else:
                    self._forget_inflight(batch, count)
                self._stats.dropped_refused += count
            else:
                if self._attempt == 0:
                    log.warning("uptake: sending failed, retrying with backoff: %s", exc)
                self._attempt += 1
                backoff = min(self.retry_max_s, self.retry_initial_s * 2 ** min(self._attempt, 30))
                delay = random.uniform(0, backoff)  # full jitter
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.retry_max_s))
                self._retry_at = time.monotonic() + delay
            self._cond.notify_all()
        spooled = False
        if to_spool:
            assert self._spool is not None
            spooled = self._spool.put(batch)  # disk I/O outside the lock: emit() never waits
            with self._cond:
                if batch is self._inflight:  # else close() took it meanwhile (and spools it)
                    self._forget_inflight(batch, count)
                    if spooled:
                        self._stats.spooled += count
                    else:
                        self._stats.dropped_spool_full += count
                self._cond.notify_all()
        if exc.permanent or (to_spool and not spooled):
            events = [e for _, v in batch for e in msgspec.json.decode(v)]
            reason = "refused" if exc.permanent else "spool_full"
            self._report(DeliveryError(f"{count} event(s) dropped: {exc}", events, [exc],
                                       dropped=True, reason=reason))  # fmt: skip
        else:
            self._report(DeliveryError(f"sending {count} event(s) failed, will retry: {exc}",
                                       errors=[exc], count=count))  # fmt: skip

    def _forget_inflight(self, batch: list[Message], count: int) -> None:
        """The in-flight batch left memory (delivered, refused or spooled); holds the lock."""
        self._inflight = []
        self._events -= count
        self._bytes -= sum(len(v) for _, v in batch)

    # -- reporting --------------------------------------------------------------------------

    def _report(self, error: UptakeError) -> None:
        if self.strict and isinstance(error, InvalidEvent):
            raise error
        if self.on_error is None:
            return
        try:
            self.on_error(error)
        except Exception:
            log.exception("uptake: the on_error callback raised")

    def _undelivered(self, pending: list[Message], errors: list[BaseException]) -> DeliveryError:
        events = [e for _, v in pending for e in msgspec.json.decode(v)]
        errors = errors or [TimeoutError("not delivered in time")]
        return DeliveryError(
            f"{self._transport_name()} did not acknowledge {len(events)} event(s) in "
            f"{len(pending)} message(s): {errors[-1]!r}. Emitting them again is safe "
            "(the warehouse deduplicates by event_id).",
            events,
            errors,
        )

    def _transport_name(self) -> str:
        if isinstance(self._transport, KafkaTransport):
            return f"Kafka at {self._transport.bootstrap} ({self.topic})"
        if isinstance(self._transport, HttpTransport):
            return f"the collector at {self._transport.url}"
        return type(self._transport).__name__

    def _at_exit(self) -> None:
        """`atexit` hook: deliver what is left within `exit_timeout_s`; never raises."""
        try:
            self.close(self.exit_timeout_s)
        except DeliveryError as exc:
            log.error("uptake: %s", exc)
        except Exception:
            log.exception("uptake: closing at exit failed")


def _count(batch: Sequence[Message]) -> int:
    return sum(len(msgspec.json.decode(v)) for _, v in batch)
