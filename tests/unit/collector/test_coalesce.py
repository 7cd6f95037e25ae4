"""The collector's coalescer: per-key merging within bounds, order, each request's outcome from
its own messages' acknowledgements, and no answer before the acknowledgement (with a negative
control). Kafka is replaced by a recording gateway here; tests/integration/collector/
test_coalescing.py runs the same against the real broker."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import pytest

from pipeline.collector.coalesce import Coalescer, Part, event_count, merge
from pipeline.collector.producer import ProduceFailed
from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.kafka.topics import KafkaUnavailable
from pipeline.sdk import pack_messages
from tests.integration.collector.test_collector import event as api_event


def event(team: str, n: int) -> bytes:
    return msgspec.json.encode(api_event(team, latency_ms=float(n), source="api-gateway"))


def request(team: str, n: int) -> list[tuple[str, bytes]]:
    """The messages the collector builds for a one-event request."""
    return pack_messages([(team, event(team, n))], 500)


class RecordingGateway:
    """Stands in for `KafkaGateway`: records what is sent, acknowledges once `acks` is set,
    fails the messages of the keys in `failing`, or is unreachable."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[str, bytes]]] = []
        self.alone: list[list[tuple[str, bytes]]] = []
        self.acks = threading.Event()
        self.acks.set()
        self.failing: set[str] = set()
        self.unreachable = False
        self.acked_at: list[float] = []

    def send_each(self, messages: Sequence[tuple[str, bytes]]) -> list[ProduceFailed | None]:
        if self.unreachable:
            raise KafkaUnavailable("no broker answers at 127.0.0.1:1")
        self.sent.append(list(messages))
        assert self.acks.wait(10)
        self.acked_at.append(time.monotonic())
        return [ProduceFailed(f"refused {k}") if k in self.failing else None for k, _ in messages]

    def produce(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.alone.append(list(messages))


def run_concurrently(
    coalescer: Coalescer, requests: list[list[tuple[str, bytes]]]
) -> list[BaseException | None]:
    async def main() -> list[BaseException | None]:
        results = await asyncio.gather(
            *(coalescer.produce(r) for r in requests), return_exceptions=True
        )
        return [r if isinstance(r, BaseException) else None for r in results]

    return asyncio.run(main())


def coalescer(
    gateway: RecordingGateway, linger_s: float = 0.01, max_events: int = 500, **kw: Any
) -> Coalescer:
    return Coalescer(
        gateway,
        ThreadPoolExecutor(4),
        linger_s=linger_s,
        max_events=max_events,
        max_bytes=kw.get("max_bytes", 512 * 1024),
    )


def decoded_ids(value: bytes) -> list[str]:
    batch = BatchDecoder().decode([SourceMessage("t", 0, 0, value)])
    assert batch.rejections == []
    return [str(e.event_id) for e in batch.events]


# --- merge (pure) ------------------------------------------------------------------------------


def test_merge_groups_per_key_in_order_and_decodes_like_the_separate_messages() -> None:
    teams = ["checkout", "search", "checkout", "payments", "search", "checkout"]
    parts = [Part(i, key, value, 1) for i, t in enumerate(teams) for key, value in request(t, i)]
    merged = merge(parts, max_events=500, max_bytes=512 * 1024)
    assert [m.key for m in merged] == ["checkout", "search", "payments"]
    assert [sorted(m.requests) for m in merged] == [[0, 2, 5], [1, 4], [3]]
    for m in merged:  # the worker's decoder sees the same events, in arrival order
        separate = [decoded_ids(p.value)[0] for p in parts if p.key == m.key]
        assert decoded_ids(m.value) == separate
        assert event_count(m.value) == m.events == len(separate)


def test_merge_respects_the_event_and_byte_bounds() -> None:
    parts = [Part(i, key, value, 1) for i in range(12) for key, value in request("checkout", i)]
    by_events = merge(parts, max_events=5, max_bytes=512 * 1024)
    assert [m.events for m in by_events] == [5, 5, 2]
    size = len(parts[0].value)
    by_bytes = merge(parts, max_events=500, max_bytes=3 * size)
    assert all(len(m.value) <= 3 * size for m in by_bytes)
    assert [m.events for m in by_bytes] == [3, 3, 3, 3]
    assert [i for m in by_bytes for i in decoded_ids(m.value)] == [
        decoded_ids(p.value)[0] for p in parts
    ]


def test_a_message_over_a_bound_or_not_an_array_is_sent_alone_unchanged() -> None:
    big = Part(0, "k", b"[" + b",".join(event("k", n) for n in range(3)) + b"]", 3)
    odd = Part(1, "k", b'{"not": "an array"}', 0)
    small = Part(2, "k", request("k", 9)[0][1], 1)
    merged = merge([small, big, odd, small], max_events=2, max_bytes=512 * 1024)
    assert [m.value for m in merged] == [small.value, big.value, odd.value, small.value]
    assert event_count(odd.value) == 0


# --- the coalescer -----------------------------------------------------------------------------


def test_concurrent_one_event_requests_become_one_message_per_key() -> None:
    gateway = RecordingGateway()
    requests = [request("checkout" if i % 3 else "search", i) for i in range(30)]
    assert run_concurrently(coalescer(gateway), requests) == [None] * 30
    first, rest = gateway.sent  # the first went at once (idle), the others gathered meanwhile
    assert first == requests[0]
    assert sorted(key for key, _ in rest) == ["checkout", "search"]
    for key, value in rest:
        expected = [decoded_ids(v)[0] for r in requests[1:] for k, v in r if k == key]
        assert decoded_ids(value) == expected


def test_a_window_is_sent_once_it_holds_max_events_the_rest_after_the_linger() -> None:
    gateway = RecordingGateway()
    started = time.monotonic()
    requests = [request("checkout", i) for i in range(12)]
    assert run_concurrently(coalescer(gateway, linger_s=0.5, max_events=5), requests) == [None] * 12
    # The first finds the collector idle and goes at once; the others gather meanwhile.
    assert [[event_count(v) for _, v in s] for s in gateway.sent] == [[1], [5], [5], [1]]
    waited = [t - started for t in gateway.acked_at]
    assert max(waited[:3]) < 0.4  # alone while idle, or full: sent without waiting the linger
    assert waited[3] >= 0.5  # the remainder waited for its linger


def test_an_idle_collector_sends_at_once_a_busy_one_within_the_linger() -> None:
    gateway = RecordingGateway()
    subject = coalescer(gateway, linger_s=0.05)
    started = time.monotonic()
    assert run_concurrently(subject, [request("k", 1)]) == [None]
    assert time.monotonic() - started < 0.04  # idle: no linger
    gateway.acks.clear()

    async def busy() -> float:
        first = asyncio.create_task(subject.produce(request("k", 2)))
        await asyncio.sleep(0.01)  # the first is in flight, its ack held
        began = time.monotonic()
        second = asyncio.create_task(subject.produce(request("k", 3)))
        while len(gateway.sent) < 3 and time.monotonic() - began < 5:
            await asyncio.sleep(0.002)
        waited = time.monotonic() - began
        gateway.acks.set()
        await asyncio.gather(first, second)
        return waited

    waited = asyncio.run(busy())
    assert 0.05 <= waited < 1.0  # gathered for the linger, no longer
    assert len(gateway.sent) == 3


def test_each_request_gets_the_outcome_of_its_own_messages() -> None:
    gateway = RecordingGateway()
    gateway.failing = {"search"}
    both = request("checkout", 98) + request("search", 99)
    requests = [request("checkout", 0), request("search", 1), request("checkout", 2), both]
    outcomes = run_concurrently(coalescer(gateway), requests)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ProduceFailed) and "refused search" in str(outcomes[1])
    assert isinstance(outcomes[3], ProduceFailed)  # one of its two messages failed


def test_an_unreachable_kafka_fails_every_request_of_the_window() -> None:
    gateway = RecordingGateway()
    gateway.unreachable = True
    outcomes = run_concurrently(coalescer(gateway), [request("a", 0), request("b", 1)])
    assert all(isinstance(o, KafkaUnavailable) for o in outcomes)


def test_linger_zero_produces_each_request_alone() -> None:
    gateway = RecordingGateway()
    requests = [request("checkout", i) for i in range(5)]
    assert run_concurrently(coalescer(gateway, linger_s=0), requests) == [None] * 5
    assert gateway.sent == [] and sorted(gateway.alone) == sorted(requests)


# --- never answered before the acknowledgement, with a negative control ------------------------


class AnswersOnSend(Coalescer):
    """A broken coalescer: answers its requests as soon as the window is handed to Kafka."""

    async def _deliver(self, window: Any) -> None:
        for waiter in window.waiters:
            waiter.set_result(None)
        await super()._deliver(window)


def answered_before_ack(make: Callable[[RecordingGateway], Coalescer]) -> bool:
    """Hold Kafka's acks after the window was sent; True if any request finished meanwhile."""
    gateway = RecordingGateway()
    gateway.acks.clear()
    subject = make(gateway)

    async def main() -> bool:
        tasks = [asyncio.create_task(subject.produce(request("k", i))) for i in range(10)]
        deadline = time.monotonic() + 5
        while not gateway.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert gateway.sent, "the window was never sent"
        await asyncio.sleep(0.1)
        early = any(t.done() for t in tasks)
        gateway.acks.set()
        await asyncio.gather(*tasks)
        assert all(t.done() for t in tasks)
        return early

    return asyncio.run(main())


def test_no_request_is_answered_before_kafka_acknowledged_it() -> None:
    assert not answered_before_ack(lambda g: coalescer(g))


def test_negative_control_a_coalescer_answering_on_send_is_caught() -> None:
    def broken(g: RecordingGateway) -> Coalescer:
        return AnswersOnSend(g, ThreadPoolExecutor(4), linger_s=0.01, max_events=500,
                             max_bytes=512 * 1024)  # fmt: skip

    assert answered_before_ack(broken)


@pytest.mark.parametrize("linger_s", [0.01, 0])
def test_a_request_cancelled_while_waiting_does_not_cancel_the_others(linger_s: float) -> None:
    gateway = RecordingGateway()
    subject = coalescer(gateway, linger_s=linger_s)

    async def main() -> None:
        first = asyncio.create_task(subject.produce(request("k", 0)))
        second = asyncio.create_task(subject.produce(request("k", 1)))
        await asyncio.sleep(0)
        first.cancel()
        await second
        assert second.result() is None

    asyncio.run(main())
    sent = [v for s in gateway.sent for _, v in s] + [v for s in gateway.alone for _, v in s]
    assert sum(event_count(v) for v in sent) >= 1
