"""Decode and validate a batch of Kafka messages with one reused msgspec decoder.

Contract of the step: pure and synchronous (no I/O, never blocks), never raises for bad input.
Every event in every message ends up in exactly one of `DecodedBatch.events` or
`DecodedBatch.rejections`, so `consumed == accepted + rejected` holds per batch. A message that
cannot be split into events (not JSON, too large, not an object or array) counts as one event.
The slow path (integral floats, CloudEvents, `not_json`): docs/design.md#the-decoders-slow-path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec

from . import cloudevents
from .events import (
    EVENT_CLASSES,
    NAME_PATTERN,
    NAME_RULE,
    SUPPORTED_VERSIONS,
    Envelope,
    Event,
    FeedbackEvent,
    event_type_of,
    name_problem,
)
from .reasons import Reason

_Window = tuple[datetime, datetime]


class SourceMessage(NamedTuple):
    """A Kafka message as the decoder sees it: where it came from, its raw bytes and its
    headers ((name, bytes) pairs or a dict; only CloudEvents binary mode reads them)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Iterable[tuple[str, Any]] | dict[str, Any] | None = None


@dataclass(slots=True)
class Rejection:
    """One rejected event: why, with the original bytes and where it came from."""

    reason: Reason
    detail: str
    raw: bytes
    topic: str
    partition: int
    offset: int
    index: int  # position of the event inside its message (0 for single-event messages)
    event_type: str = ""


@dataclass(slots=True)
class DecodedBatch:
    """Accepted events with their source coordinates (parallel lists), and the rejections."""

    events: list[Envelope] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    user_keys: list[str] = field(default_factory=list)  # set by the enrich step
    teams: list[str] = field(default_factory=list)  # resolved teams, set by the enrich step

    @property
    def consumed(self) -> int:
        return len(self.events) + len(self.rejections)


LIVE_TOO_OLD_HINT = (
    "UPTAKE_MAX_LATENESS_S sets the limit; load older events with `uptake backfill` "
    "(docs/events.md#late-events-and-backfill)"
)


@dataclass(frozen=True)
class Limits:
    """The clock and size rules of the worker; `too_old_hint` ends an `occurred_at_too_old`
    detail (the live topic points at `uptake backfill`, the backfill topic at its own limit)."""

    max_message_bytes: int = 1024 * 1024
    max_future_skew: timedelta = timedelta(minutes=5)
    max_lateness: timedelta = timedelta(days=7)
    too_old_hint: str = LIVE_TOO_OLD_HINT


_TOO_DEEP = "the JSON is nested too deeply to be an event - at `$`"
_PATH = re.compile(r" - at `(?P<path>[^`]*)`$")
_INT_GOT_FLOAT = "Expected `int`, got `float`"
_NAME_ERROR = f"Expected `str` matching regex {NAME_PATTERN!r}"
_MAX_EXACT_INT = 2**53
"""Floats up to this magnitude are exact integers when integral; larger ones stay floats."""


def _utf8_problem(value: bytes) -> str | None:
    """Why `value` is not UTF-8 (Python's strict codec: no surrogates), or None if it is."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"JSON is not valid UTF-8: {exc.reason} at byte {exc.start}"
    return None


class BatchDecoder:
    """Turns raw Kafka messages into validated events and rejections with reasons."""

    def __init__(
        self, limits: Limits | None = None, now: Callable[[], datetime] | None = None
    ) -> None:
        self.limits = limits or Limits()
        self._now = now or (lambda: datetime.now(UTC))
        self._message = msgspec.json.Decoder(list[Event] | Event)
        self._event = msgspec.json.Decoder(Event)
        self._raw_items = msgspec.json.Decoder(list[msgspec.Raw])
        # Generic JSON; floats come back as ints when integral, else as their original text.
        self._any = msgspec.json.Decoder(float_hook=_integral_float_as_int)

    def decode(self, messages: Sequence[SourceMessage]) -> DecodedBatch:
        batch = DecodedBatch()
        now = self._now()
        newest, oldest = now + self.limits.max_future_skew, now - self.limits.max_lateness
        max_bytes = self.limits.max_message_bytes
        decode = self._message.decode
        for message in messages:
            value = message.value or b""
            if len(value) > max_bytes:
                self._reject(
                    batch,
                    message,
                    0,
                    value,
                    Reason.TOO_LARGE,
                    f"message is {len(value)} bytes, the limit is {max_bytes}",
                )
                continue
            headers = message.headers
            if headers and cloudevents.is_kafka_binary(
                pairs := headers.items() if isinstance(headers, dict) else headers
            ):  # binary mode: judged as its structured form
                structured = cloudevents.from_kafka_binary(pairs, value)
                self._decode_guarded(batch, message, structured, newest, oldest)
                continue
            try:
                decoded = decode(value)
            except msgspec.ValidationError:
                self._decode_guarded(batch, message, value, newest, oldest)
                continue
            except RecursionError:
                self._reject(batch, message, 0, value, Reason.SCHEMA_VIOLATION, _TOO_DEEP)
                continue
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                # Invalid UTF-8 inside a string is judged event by event. msgspec reports it
                # as UnicodeDecodeError before 0.23 and as DecodeError since, so the bytes
                # decide, not the exception's type.
                if _utf8_problem(value) is not None:
                    self._decode_guarded(batch, message, value, newest, oldest)
                else:
                    self._reject(batch, message, 0, value, Reason.NOT_JSON, str(exc))
                continue
            events = decoded if isinstance(decoded, list) else [decoded]
            if not events:
                self._reject(
                    batch, message, 0, value, Reason.EMPTY_BATCH, "the array has no events"
                )
            elif any(self._violation(event, newest, oldest) for event in events):
                # Rare: split the message so each rejection keeps its own original bytes.
                self._decode_guarded(batch, message, value, newest, oldest)
            else:
                self._accept(batch, message, events)
        return batch

    @staticmethod
    def _accept(batch: DecodedBatch, message: SourceMessage, events: Sequence[Envelope]) -> None:
        batch.events.extend(events)
        count = len(events)
        batch.partitions.extend([message.partition] * count)
        batch.offsets.extend([message.offset] * count)
        batch.topics.extend([message.topic] * count)

    def _violation(
        self, event: Envelope, newest: datetime, oldest: datetime
    ) -> tuple[Reason, str] | None:
        """Rules a type cannot express; None when the event satisfies all of them."""
        event_type = event_type_of(event)
        if event.schema_version not in SUPPORTED_VERSIONS[event_type]:
            known = sorted(SUPPORTED_VERSIONS[event_type])
            return (
                Reason.UNSUPPORTED_VERSION,
                f"schema_version {event.schema_version} of {event_type}; known: {known}",
            )
        if not event.team and not event.service:
            return Reason.MISSING_ATTRIBUTION, "give at least one of team or service"
        if isinstance(event, FeedbackEvent) and (problem := event.data.score_problem()):
            return Reason.SCHEMA_VIOLATION, problem
        if event.occurred_at > newest:
            return (
                Reason.OCCURRED_IN_FUTURE,
                f"occurred_at {event.occurred_at.isoformat()} is after {newest.isoformat()}",
            )
        if event.occurred_at < oldest:
            return (
                Reason.OCCURRED_TOO_OLD,
                f"occurred_at {event.occurred_at.isoformat()} is before {oldest.isoformat()}, "
                f"more than {_age(self.limits.max_lateness)} ago; {self.limits.too_old_hint}",
            )
        return None

    def _decode_guarded(
        self,
        batch: DecodedBatch,
        message: SourceMessage,
        value: bytes,
        newest: datetime,
        oldest: datetime,
    ) -> None:
        """`_decode_slowly`, but a message it cannot split is rejected whole, never raised.

        Whatever the slow path added for this message before it failed is taken back, so the
        message still counts exactly once (e.g. a truncated array `[{...}, {...`).
        """
        marks = (len(batch.events), len(batch.rejections))
        try:
            self._decode_slowly(batch, message, value, (newest, oldest))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            del batch.events[marks[0] :], batch.partitions[marks[0] :]
            del batch.offsets[marks[0] :], batch.topics[marks[0] :]
            del batch.rejections[marks[1] :]
            if isinstance(exc, RecursionError):
                reason, detail = Reason.SCHEMA_VIOLATION, _TOO_DEEP
            else:
                reason, detail = Reason.NOT_JSON, _utf8_problem(value) or str(exc)
            self._reject(batch, message, 0, value, reason, detail)

    def _decode_slowly(
        self, batch: DecodedBatch, message: SourceMessage, value: bytes, window: _Window
    ) -> None:
        """Some event of the message is invalid: split it and judge each event on its own.

        `window`: (newest, oldest) occurred_at the batch accepts."""
        newest, oldest = window
        items: list[bytes]
        if value.lstrip()[:1] == b"[":
            items = [bytes(raw) for raw in self._raw_items.decode(value)]
            if not items:  # pragma: no cover - an empty array decodes on the fast path
                self._reject(batch, message, 0, value, Reason.EMPTY_BATCH, "no events")
        else:
            items = [value]
        for index, item in enumerate(items):
            if cloudevents.MARK in item and self._judge_cloudevent(
                batch, message, index, item, newest, oldest
            ):
                continue
            try:
                decoded = self._decode_event(item)
                if isinstance(decoded, tuple):
                    reason, detail, event_type = self._classify(*decoded)
                    # The rejection keeps the original bytes, never the rewritten ones.
                    self._reject(batch, message, index, item, reason, detail, event_type)
                    continue
            except (msgspec.DecodeError, UnicodeDecodeError):
                # The array split into valid JSON items, so only invalid UTF-8 inside one of
                # its strings fails here; anything else rejects the whole message.
                utf8 = _utf8_problem(item)
                if utf8 is None:
                    raise
                self._reject(batch, message, index, item, Reason.NOT_JSON, utf8)
                continue
            violation = self._violation(decoded, newest, oldest)
            if violation is None:
                self._accept(batch, message, [decoded])
            else:
                reason, detail = violation
                self._reject(batch, message, index, item, reason, detail, event_type_of(decoded))

    def _judge_cloudevent(
        self,
        batch: DecodedBatch,
        message: SourceMessage,
        index: int,
        item: bytes,
        newest: datetime,
        oldest: datetime,
    ) -> bool:
        """Accept or reject `item` as a structured CloudEvent; False when it is not one (the
        native path then judges it). Rejections keep `item`, paths point into it."""
        try:
            obj = self._any.decode(item)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return False  # the native path names the problem
        if not cloudevents.is_cloudevent(obj):
            return False
        native = cloudevents.to_native(obj, self._any.decode)
        if isinstance(native, cloudevents.Problem):
            reason, detail, event_type = native
            self._reject(batch, message, index, item, reason, detail, event_type)
            return True
        named = cloudevents.parse_type(obj["type"])
        event_type = named[0] if named else ""
        try:
            decoded = self._decode_event(native)
        except RecursionError:
            self._reject(batch, message, index, item, Reason.SCHEMA_VIOLATION, _TOO_DEEP)
            return True
        if isinstance(decoded, tuple):
            detail = cloudevents.detail_for(self._with_path(decoded[1]))
            self._reject(batch, message, index, item, Reason.SCHEMA_VIOLATION, detail, event_type)
            return True
        violation = self._violation(decoded, newest, oldest)
        if violation is None:
            self._accept(batch, message, [decoded])
        else:
            reason, detail = violation
            detail = cloudevents.violation_detail(reason, detail)
            self._reject(batch, message, index, item, reason, detail, event_type)
        return True

    @staticmethod
    def _with_path(error: str) -> str:
        return error if _PATH.search(error) else f"{error} - at `$`"

    def _decode_event(self, item: bytes) -> Envelope | tuple[bytes, str]:
        """The typed event in `item`, or the bytes that were judged and msgspec's error.

        An event that fails with "Expected `int`, got `float`" gets a second chance with its
        integral floats written as integers (JSON Schema counts `201.0` as an integer); a
        second failure is then reported for the rewritten bytes (e.g. 201.5 stays a float).
        """
        result = self._typed(item)
        if not isinstance(result, tuple) or not result[1].startswith(_INT_GOT_FLOAT):
            return result
        rewritten = self._integral_floats_as_ints(item)
        return result if rewritten is None else self._typed(rewritten)

    def _typed(self, item: bytes) -> Envelope | tuple[bytes, str]:
        """The typed event in `item`, or `item` and msgspec's error (a name's as the name rule)."""
        try:
            return self._event.decode(item)
        except msgspec.ValidationError as exc:
            error = str(exc)
        if error.startswith(_NAME_ERROR):
            return item, self._name_detail(item, error)
        return item, error

    def _name_detail(self, item: bytes, error: str) -> str:
        """msgspec's "does not match <pattern>" as the name rule, with the character found."""
        match = _PATH.search(error)
        path = match["path"] if match else "$"
        node: Any = self._any.decode(item)  # it decoded as JSON a moment ago
        for key in path.removeprefix("$.").split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return f"{name_problem(node) or NAME_RULE} - at `{path}`"

    def _integral_floats_as_ints(self, item: bytes) -> bytes | None:
        """`item` with every integral float within ±2**53 re-encoded as a JSON integer.

        Safe for `float` fields, which take integers too; beyond 2**53 a float may not be the
        integer that was written, so it stays a float, byte for byte (so does `1e400`). None if
        `item` is not JSON.
        """
        try:
            return msgspec.json.encode(self._any.decode(item))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None

    def _classify(self, item: bytes, error: str) -> tuple[Reason, str, str]:
        """Name the reason an event failed validation, from its generic JSON shape."""
        try:
            obj = self._any.decode(item)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # Typed decoding stopped at a wrong type before the syntax error or invalid UTF-8.
            return Reason.NOT_JSON, _utf8_problem(item) or str(exc), ""
        if not isinstance(obj, dict):
            return Reason.SCHEMA_VIOLATION, f"{error}: an event is a JSON object", ""
        event_type = obj.get("event_type")
        if not isinstance(event_type, str):
            detail = "event_type is required and must be a string - at `$.event_type`"
            return Reason.SCHEMA_VIOLATION, detail, ""
        if event_type not in EVENT_CLASSES:
            known = ", ".join(EVENT_CLASSES)
            return Reason.UNKNOWN_EVENT_TYPE, f"{event_type!r} is not one of {known}", ""
        version = obj.get("schema_version")
        is_int = isinstance(version, int) and not isinstance(version, bool)
        if is_int and version not in SUPPORTED_VERSIONS[event_type]:
            known_versions = sorted(SUPPORTED_VERSIONS[event_type])
            return (
                Reason.UNSUPPORTED_VERSION,
                f"schema_version {version} of {event_type}; known: {known_versions}",
                event_type,
            )
        match = _PATH.search(error)
        detail = error if match else f"{error} - at `$`"
        return Reason.SCHEMA_VIOLATION, detail, event_type

    @staticmethod
    def _reject(
        batch: DecodedBatch,
        message: SourceMessage,
        index: int,
        raw: bytes,
        reason: Reason,
        detail: str,
        event_type: str = "",
    ) -> None:
        batch.rejections.append(
            Rejection(
                reason,
                detail,
                raw,
                message.topic,
                message.partition,
                message.offset,
                index,
                event_type,
            )
        )


def _age(span: timedelta) -> str:
    """`7 days`, `36 hours`, `90 seconds`: a limit as a person reads it."""
    seconds = span.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if (seconds >= size and seconds % size == 0) or unit == "second":
            count = seconds / size
            return f"{count:g} {unit}{'' if count == 1 else 's'}"
    raise AssertionError("unreachable")  # pragma: no cover


def _integral_float_as_int(text: str) -> int | msgspec.Raw:
    """A JSON float (its text) as an int when integral within ±2**53, else unchanged."""
    value = float(text)  # JSON grammar guarantees a parsable number; huge ones become inf
    if value.is_integer() and -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT:
        return int(value)
    return msgspec.Raw(text.encode())
