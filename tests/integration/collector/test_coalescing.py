"""Coalescing against the real broker: N concurrent one-event requests become far fewer Kafka
messages, every event lands exactly once under its own key, and each response comes only
after Kafka acknowledged the message carrying its event. With coalescing off (linger 0) the
same requests give N messages: the control that shows the count assertion can fail."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import aiohttp
import msgspec
import pytest

from pipeline.collector.handling import STATE
from pipeline.collector.producer import KafkaGateway, ProduceFailed
from tests.integration.collector import test_collector
from tests.integration.collector.test_collector import AUTH, event
from tests.support.collector import Collector

pytestmark = pytest.mark.integration

REQUESTS = 120
TEAMS = ("checkout", "search", "payments")


class AckClock:
    """Wraps the collector's gateway: when Kafka acknowledged each event (by event id)."""

    def __init__(self, gateway: KafkaGateway) -> None:
        self.gateway = gateway
        self.acked_at: dict[str, float] = {}
        self.lock = threading.Lock()

    def _record(self, messages: Sequence[tuple[str, bytes]], outcomes: Sequence[object]) -> None:
        now = time.monotonic()
        with self.lock:
            for (_, value), outcome in zip(messages, outcomes, strict=True):
                if outcome is None:
                    for event in msgspec.json.decode(value):
                        self.acked_at.setdefault(event["event_id"], now)

    def send_each(self, messages: Sequence[tuple[str, bytes]]) -> list[ProduceFailed | None]:
        outcomes = self.gateway.send_each(messages)
        self._record(messages, outcomes)
        return outcomes

    def produce(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.gateway.produce(messages)
        self._record(messages, [None] * len(messages))


collector = test_collector.collector  # the fixture: a collector on its own topic


@pytest.fixture
def served(
    collector: Callable[..., Collector], request: pytest.FixtureRequest
) -> tuple[Collector, AckClock, float]:
    """A collector (own topic, 3 partitions) with the linger of the test's parameter (ms),
    its Kafka gateway wrapped in an `AckClock`."""
    server = collector(coalesce_linger_ms=request.param)
    state = server.app[STATE]
    acks = AckClock(state.gateway)
    state.coalescer.gateway = acks
    return server, acks, request.param


def one_event(i: int) -> dict[str, object]:
    return event(TEAMS[i % len(TEAMS)], latency_ms=float(i))


async def post_all(url: str, events: list[dict[str, object]]) -> dict[str, tuple[int, float]]:
    """POST each event in its own request, all at once: event id -> (status, answered at)."""
    answered: dict[str, tuple[int, float]] = {}
    async with aiohttp.ClientSession(headers=AUTH) as session:

        async def post(event: dict[str, object]) -> None:
            async with session.post(url + "/v1/events", json=event) as response:
                answered[str(event["event_id"])] = (response.status, time.monotonic())
                await response.read()

        await asyncio.gather(*(post(e) for e in events))
    return answered


@pytest.mark.parametrize("served", [20.0, 0.0], indirect=True, ids=["coalescing", "off"])
def test_concurrent_requests_share_messages_each_answered_after_its_ack(
    served: tuple[Collector, AckClock, float],
) -> None:
    server, acks, linger_ms = served
    events = [one_event(i) for i in range(REQUESTS)]
    answered = asyncio.run(post_all(server.url, events))
    assert {status for status, _ in answered.values()} == {200}

    messages = server.landed()
    landed = [e["event_id"] for _, batch in messages for e in batch]
    assert sorted(landed) == sorted(answered)  # every event exactly once
    for key, batch in messages:
        assert {e["team"] for e in batch} == {key}  # keys (hence partitions) as without it
    for event_id, (_, at) in answered.items():
        assert acks.acked_at[event_id] <= at, f"{event_id} answered before Kafka acked it"

    if linger_ms:
        assert len(messages) <= REQUESTS // 4, f"{len(messages)} messages for {REQUESTS} requests"
    else:  # the control: one message per request
        assert len(messages) == REQUESTS
