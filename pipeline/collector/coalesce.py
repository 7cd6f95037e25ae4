"""Coalesce the Kafka messages of concurrent requests into fewer, larger messages.

A worker pays per Kafka message, and one-event requests are what most emitters send; so the
collector gathers the messages of the requests that arrive within `linger_s` (a window) and
produces one message per key for them all. The contract of `Coalescer.produce`:

- It returns only after Kafka acknowledged every coalesced message carrying one of the
  request's events, and raises `KafkaUnavailable` or `ProduceFailed` if one of them was not
  acknowledged: the same errors, hence answers, as producing the request alone. A request never
  learns the outcome of a message that carries none of its events.
- A window opens with the first request after the previous one was sent and is sent after
  `linger_s`, or at once when it holds `max_events` events or `max_bytes` bytes, or when no
  earlier window is still waiting for Kafka (an idle collector adds no delay: requests gather
  only while Kafka is busy with earlier ones, and never longer than `linger_s`).
- A coalesced message keeps the key of its events (team, else service), so each event lands on
  the partition it would have alone; events keep their order of arrival within a key; a message
  holds at most `max_events` events and `max_bytes` bytes (a single request's message larger
  than that is sent alone, unchanged). The value stays a JSON array of events, the contract's
  message format (`pipeline.contract.decode`).
- It never blocks the event loop: the blocking producer runs in the collector's thread pool.
  With `linger_s == 0` every request is produced alone, as before coalescing existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from pipeline.collector.producer import ProduceFailed

_raw_items = msgspec.json.Decoder(list[msgspec.Raw])


class Gateway(Protocol):
    """What the coalescer needs of `KafkaGateway` (blocking; called from the thread pool)."""

    def produce(self, messages: Sequence[tuple[str, bytes]]) -> None: ...

    def send_each(self, messages: Sequence[tuple[str, bytes]]) -> list[ProduceFailed | None]: ...


@dataclass(frozen=True)
class Part:
    """One message a request asked for: its key, its JSON-array value and its event count."""

    request: int
    key: str
    value: bytes
    events: int


@dataclass
class Merged:
    """A message to produce and the requests whose events it carries."""

    key: str
    items: list[bytes] = field(default_factory=list)
    """The JSON-array values merged into it, in order."""
    events: int = 0
    size: int = 1  # the closing bracket; each item adds its length (its bracket or comma)
    requests: set[int] = field(default_factory=set)

    @property
    def value(self) -> bytes:
        if len(self.items) == 1:
            return self.items[0]
        return b"[" + b",".join(item.strip()[1:-1] for item in self.items) + b"]"


def event_count(value: bytes) -> int:
    """Events in a JSON-array message; 0 if it is not one (then it is never merged)."""
    try:
        return len(_raw_items.decode(value))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return 0


def merge(parts: Sequence[Part], max_events: int, max_bytes: int) -> list[Merged]:
    """Group `parts` per key, in order, into messages of at most `max_events` events and
    `max_bytes` bytes; a part over either bound on its own, or not a non-empty array, stays
    alone. Pure."""
    done: list[Merged] = []
    open_: dict[str, Merged] = {}
    for part in parts:
        size = len(part.value.strip()) - 1  # without its closing bracket
        alone = part.events == 0 or part.events > max_events or size + 1 > max_bytes
        current = open_.get(part.key)
        if current is not None and (
            alone or current.events + part.events > max_events or current.size + size > max_bytes
        ):
            done.append(open_.pop(part.key))
            current = None
        if alone:
            done.append(Merged(part.key, [part.value], part.events, size + 1, {part.request}))
            continue
        if current is None:
            current = open_[part.key] = Merged(part.key)
        current.items.append(part.value)
        current.events += part.events
        current.size += size
        current.requests.add(part.request)
    done.extend(open_.values())
    return done


def deliver(
    gateway: Gateway, parts: Sequence[Part], requests: int, max_events: int, max_bytes: int
) -> list[Exception | None]:
    """Merge the parts of `requests` requests (numbered from 0), produce them, and return each
    request's outcome: None if Kafka acknowledged all of its messages, else the first error
    among them. Blocking."""
    merged = merge(parts, max_events, max_bytes)
    outcomes: list[Exception | None] = [None] * requests
    try:
        sent = gateway.send_each([(m.key, m.value) for m in merged])
    except Exception as exc:  # KafkaUnavailable: nothing was sent, every request gets it
        return [exc] * requests
    for message, outcome in zip(merged, sent, strict=True):
        if outcome is not None:
            for request in message.requests:
                outcomes[request] = outcomes[request] or outcome
    return outcomes


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass
class _Window:
    parts: list[Part] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    events: int = 0
    size: int = 0
    timer: asyncio.TimerHandle | None = None


class Coalescer:
    """Gathers concurrent requests' messages and produces them together (module docstring).

    Use it from one event loop only; `produce` is the only entry point.
    """

    def __init__(
        self,
        gateway: Gateway,
        executor: Executor,
        *,
        linger_s: float,
        max_events: int,
        max_bytes: int,
    ) -> None:
        self.gateway = gateway
        self.executor = executor
        self.linger_s = linger_s
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._window: _Window | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def produce(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Return once Kafka acknowledged this request's events; raise as `KafkaGateway.produce`."""
        loop = asyncio.get_running_loop()
        if self.linger_s <= 0:
            await loop.run_in_executor(self.executor, self.gateway.produce, messages)
            return
        window = self._window
        if window is None:
            window = self._window = _Window()
            window.timer = loop.call_later(self.linger_s, self._send, window)
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(_retrieve)  # a cancelled request's failure is not "unretrieved"
        request = len(window.waiters)
        window.waiters.append(waiter)
        for key, value in messages:
            part = Part(request, key, value, event_count(value))
            window.parts.append(part)
            window.events += part.events
            window.size += len(value)
        idle = not self._sending  # nothing in flight to gather with: waiting would only delay
        if idle or window.events >= self.max_events or window.size >= self.max_bytes:
            self._send(window)
        # A cancelled request must not cancel the delivery of the others: shield the waiter.
        await asyncio.shield(waiter)

    def _send(self, window: _Window) -> None:
        if self._window is window:
            self._window = None
        if window.timer is not None:
            window.timer.cancel()
            window.timer = None
        task = asyncio.get_running_loop().create_task(self._deliver(window))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, window: _Window) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(
                self.executor,
                deliver,
                self.gateway,
                window.parts,
                len(window.waiters),
                self.max_events,
                self.max_bytes,
            )
        except (Exception, asyncio.CancelledError) as exc:  # e.g. the pool shut down
            # No request may pass as acknowledged.
            outcomes = [ProduceFailed(f"the collector could not produce: {exc!r}")] * len(
                window.waiters
            )
        for waiter, outcome in zip(window.waiters, outcomes, strict=True):
            if waiter.done():
                continue
            if outcome is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(outcome)
