"""Load generators for the reliability runs: simulated events without end, an SDK emitter thread
and HTTP clients of the collector, each keeping what was confirmed, refused and re-sent."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pipeline.devtools.simulate.org import Organisation, generate
from pipeline.sdk import DeliveryError, UptakeClient
from tests.support.collector import Collector, Reply
from tests.support.outages import Outages, Recovery
from tests.support.topics import Cell

GRACE_S = 20.0  # a producer must work again this long after the broker answers
SDK_TIMEOUT_S = 2.0  # UptakeClient timeout_s: flush waits this long (delivery timeout: +1 s)
ROUND_EVENTS = 300
ROUND_INTERVAL_S = 0.1  # ~3,000 events/s
POSTERS = 4
POST_EVENTS = 25
CHUNK_EVENTS = 20_000


KAFKA_PYTHON_WEDGE = (
    "kafka-python 3.0.12 idempotent producer (enable_idempotence=True, which make_producer "
    "no longer sets) never sends again after a batch it had already sent expires: "
    "TransactionManager.reset_producer_id() leaves the state READY and "
    "init_producer_id() only acts from UNINITIALIZED, so no new producer id is ever requested"
)


# Producers the run no longer uses, kept referenced until the interpreter exits. A wedged
# kafka-python producer (KAFKA_PYTHON_WEDGE) cannot be closed: close() raises from its flush, and
# so does its __del__. Run by the garbage collector inside one of pytest's ast.parse calls (report
# formatting, assertion rewriting), that __del__ makes CPython 3.11 fail the whole session with
# "SystemError: AST constructor recursion depth mismatch", so it must not run mid-session.
KEPT_ALIVE: list[object] = []


class ClientDidNotRecover(Exception):
    """A producer still fails GRACE_S after the broker is back (as KAFKA_PYTHON_WEDGE did)."""


def endless_events(seed: int, teams: int) -> Iterator[dict[str, Any]]:
    """Simulated events without end: the whole adoption curve every CHUNK_EVENTS events, so
    even a short run covers many teams and event types (one long `generate` would not)."""
    org = Organisation.synthetic(seed, teams=teams)
    for chunk in itertools.count():
        yield from generate(org, CHUNK_EVENTS, seed * 10_000 + chunk, window=timedelta(days=1))


class SdkLoad(threading.Thread):
    """Sends events with UptakeClient in rounds; keeps what was confirmed and what failed."""

    def __init__(
        self, bootstrap: str, topic: str, events: Iterator[dict[str, Any]], state: Outages
    ) -> None:
        super().__init__(name="sdk-load", daemon=True)
        self.bootstrap, self.topic, self.events, self.state = bootstrap, topic, events, state
        self.stop_event = threading.Event()
        self.emitted: dict[str, Cell] = {}
        self.confirmed: set[str] = set()
        self.spool: dict[str, dict[str, Any]] = {}  # failed, to re-send after the load
        self.failed_ever: set[str] = set()
        self.rounds = 0
        self.delivery_errors = 0
        self.replaced = 0  # clients replaced because they still failed GRACE_S after a restart
        self.slowest_round_s = 0.0  # longest emit + flush: failing loudly must not mean hanging
        self.recoveries: list[Recovery] = []
        self.last_success = 0.0
        self.anomalies: list[str] = []
        self.error: BaseException | None = None

    def resumed_after(self, moment: float) -> Callable[[], bool]:
        """A condition: a round was confirmed after `moment` (or the load ended)."""
        return lambda: self.last_success > moment or not self.is_alive()

    def open(self) -> UptakeClient | None:
        try:
            return UptakeClient(
                self.bootstrap, self.topic, batch_events=100, linger_ms=20, timeout_s=SDK_TIMEOUT_S
            )
        except DeliveryError:
            return None

    @staticmethod
    def discard(client: UptakeClient | None) -> None:
        if client is not None:
            with contextlib.suppress(DeliveryError):
                client.close(timeout=1)
            KEPT_ALIVE.append(client)  # with its producer, closed or not

    @staticmethod
    def deliver(client: UptakeClient, events: Sequence[dict[str, Any]]) -> list[str]:
        """Emit and flush; the ids Kafka did not acknowledge."""
        try:
            for event in events:
                client.emit(event)
            client.flush()
        except DeliveryError as exc:
            return [str(e["event_id"]) for e in exc.events]
        return []

    def run(self) -> None:
        client = self.open()
        failing_since: int | None = None  # outage index of the current failure streak
        replaced = False
        try:
            assert client is not None, "no broker at the start of the load"
            while not self.stop_event.is_set():
                started = time.monotonic()
                batch = [next(self.events) for _ in range(ROUND_EVENTS)]
                ids = {str(e["event_id"]) for e in batch}
                for e in batch:
                    self.emitted[str(e["event_id"])] = (e["team"], e["event_type"])
                if client is None:
                    client = self.open()
                failed = self.deliver(client, batch) if client is not None else list(ids)
                self.slowest_round_s = max(self.slowest_round_s, time.monotonic() - started)
                self.rounds += 1
                if not set(failed) <= ids:
                    self.anomalies.append(f"round {self.rounds}: failures of other rounds")
                self.confirmed |= ids - set(failed)
                back = self.state.back_at
                if failed:
                    self.delivery_errors += 1
                    self.failed_ever.update(failed)
                    by_id = {str(e["event_id"]): e for e in batch}
                    self.spool.update((i, by_id[i]) for i in failed if i in by_id)
                    if failing_since is None:
                        failing_since, replaced = self.state.index, False
                    if back is not None and time.monotonic() - back > GRACE_S and not replaced:
                        # Still failing GRACE_S after the broker came back: a new client.
                        self.discard(client)
                        client = self.open()
                        replaced = True
                        self.replaced += 1
                else:
                    self.last_success = time.monotonic()
                    if failing_since is not None:
                        after = self.last_success - back if back is not None else None
                        self.recoveries.append(Recovery(failing_since, not replaced, after))
                        failing_since = None
                time.sleep(max(0.0, started + ROUND_INTERVAL_S - time.monotonic()))
        except BaseException as exc:  # raised again by the run
            self.error = exc
        finally:
            self.discard(client)

    def resend_spool(self, timeout: float = 60.0) -> int:
        """Re-send every failed event until Kafka confirmed it; how many were re-sent."""
        resent = len(self.spool)
        deadline = time.monotonic() + timeout
        while self.spool:
            assert time.monotonic() < deadline, f"{len(self.spool)} events not re-sent"
            client = self.open()
            if client is None:
                time.sleep(1)
                continue
            try:
                failed = set(self.deliver(client, list(self.spool.values())))
            finally:
                self.discard(client)
            for event_id in set(self.spool) - failed:
                self.confirmed.add(event_id)
                del self.spool[event_id]
        return resent


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int
    retry_after: str | None
    error: str | None
    ids: tuple[str, ...]
    resend: bool  # a 503'd request sent again after the load


class Posters:
    """Threads posting simulated events to whichever collector `current` returns."""

    def __init__(self, current: Callable[[], Collector], events: Iterator[dict[str, Any]]) -> None:
        self.current = current
        self.events = events
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.answers: list[Answer] = []
        self.spool: list[list[dict[str, Any]]] = []  # 503'd requests, re-sent after the load
        self.posted: dict[str, Cell] = {}
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._run, name=f"poster-{i}", daemon=True)
            for i in range(POSTERS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(30)

    def post(self, batch: list[dict[str, Any]], resend: bool = False) -> Answer:
        started = time.monotonic()
        reply: Reply = self.current().post(batch)
        error = None
        if reply.status >= 400:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                error = reply.json["error"]
        answer = Answer(
            started,
            time.monotonic(),
            reply.status,
            reply.headers.get("Retry-After"),
            error,
            tuple(str(e["event_id"]) for e in batch),
            resend,
        )
        with self.lock:
            self.answers.append(answer)
        return answer

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                with self.lock:
                    batch = [next(self.events) for _ in range(POST_EVENTS)]
                    for e in batch:
                        self.posted[str(e["event_id"])] = (e["team"], e["event_type"])
                answer = self.post(batch)
                if answer.status == 503:
                    with self.lock:
                        self.spool.append(batch)
                elif answer.status != 200:
                    raise AssertionError(f"unexpected answer {answer}")
                time.sleep(0.1)
        except BaseException as exc:  # raised again by the run
            self.error = exc

    def answered_200_after(self, moment: float) -> Callable[[], bool]:
        """A condition: a request sent after `moment` was answered 200."""

        def condition() -> bool:
            with self.lock:
                return any(a.status == 200 and a.started > moment for a in self.answers)

        return condition

    def first_200_after(self, moment: float) -> float:
        """Seconds from `moment` to the first 200 of a request sent after it."""
        with self.lock:
            return min(
                a.ended - moment for a in self.answers if a.status == 200 and a.started > moment
            )

    def resend_spool(self, timeout: float = 60.0) -> None:
        """Re-send the 503'd requests (same event ids) until each is answered 200."""
        deadline = time.monotonic() + timeout
        while self.spool:
            assert time.monotonic() < deadline, f"{len(self.spool)} requests still refused"
            if self.post(self.spool[0], resend=True).status == 200:
                self.spool.pop(0)
            else:
                time.sleep(1)
