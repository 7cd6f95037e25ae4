"""Broker restart during load: producers buffer or fail loudly, the worker resumes.

One run (the module fixture `restart_run`), judged by the tests below. Our own Kafka broker
(devtools.broker.LocalBroker on free ports; the session broker is never touched) is taken down
and started again on the same home and storage while both producers send simulated events to
one topic and the real worker subprocess consumes it into its own warehouse:

- the SDK: a thread emits ~300 events per round with `UptakeClient` and calls `flush()`,
  about 3,000 events/s. A round whose flush returned confirmed its events; a round that raised
  `DeliveryError` names the events Kafka did not take (`.events`); the emitter keeps those and
  re-sends them once the broker is back, after the load.
- the collector: four HTTP clients post 25 events per request to an in-process collector
  (tests/collector harness). A 503 answer is kept and the request re-sent after the load.

Outages (UPTAKE_RELIABILITY_BROKER_CYCLES, default 1, times each): "stop", a graceful stop;
"hang-kill", the JVM stalls (SIGSTOP) for HANG_S, so requests are in flight and unanswered,
then is SIGKILLed. The broker stays down DOWN_S, then starts again.

What must hold afterwards:

- fail loudly, never silently: every emitted event was confirmed or named in a DeliveryError,
  promptly; every confirmed event is on the topic. While the broker is down every request is
  answered 503 with Retry-After, never 2xx; every event answered 200 is on the topic; the
  collector counts exactly the 200'd events accepted and the 503'd ones undelivered.
- the worker resumes: it runs through every outage without exiting and exits 0 on SIGTERM;
  its sink inserted exactly one row per distinct event on the topic
  (uptake_clickhouse_inserted_rows_total) and skipped exactly the re-sent records
  (uptake_sink_duplicate_events_skipped_total).
- the warehouse holds exactly the confirmed + re-sent events: `diff_with_truth` per team and
  event type finds nothing missing, extra or double counted, and the stored event ids are
  exactly the ground truth's. Background merges are switched off in this test's warehouse
  (NO_MERGES_SQL), so the ReplacingMergeTree cannot fold away a row written twice by two
  inserts before the comparison. (Equal keys inside one insert fold at once; only the sink's
  inserted-row count above shows those.)

Delivery is at-least-once from the emitter plus dedup on `event_id`. A DeliveryError or a 503
is ambiguous (a request may have landed although its acknowledgement was lost), so a re-sent
event can be on the topic twice, at two offsets. The sink's event-id window skips the second
record (and the `events` ReplacingMergeTree, whose key ends with event_id, would fold it
anyway; docs/guarantees.md). So `diff_with_truth` compares distinct
event ids with the truth, counts such emitter re-sends separately (allowed), and calls "double
counted" only a Kafka record (partition, offset, event) stored more than once, which the
pipeline itself must never do.

Negative controls: the same `diff_with_truth` reports the events lost to the outages missing
when the emitter drops its DeliveryErrors and the HTTP clients take 503 for success (the topic
before the re-sends), and reports rows deleted from the real warehouse; a unit test shows each
kind of difference it reports.

Bug this test found, fixed: kafka-python 3.0.12's idempotent producer never sends again once a
batch it had already sent expires (KAFKA_PYTHON_WEDGE below). `make_producer` therefore builds a
non-idempotent producer with one request in flight (per-partition order kept); a retry that
duplicates a record is an emitter re-send folded by event_id. The emitter would still replace a
client that fails GRACE_S after the broker is back (and restart the collector) and count it in
the summary line; the test fails if that happens (ClientDidNotRecover).

Runtime: about 2 minutes on 2 cores (each SIGKILLed start waits ~15 s for KRaft to expire the
old broker registration; each stuck producer costs GRACE_S until the bug is fixed).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from pipeline.collector.app import STATE, create_app
from pipeline.collector.auth import TokenTable, hash_token
from pipeline.collector.config import CollectorConfig
from pipeline.devtools.broker import LocalBroker
from pipeline.devtools.simulate.org import Organisation, generate
from pipeline.kafka.topics import ensure_topics
from pipeline.observability.metrics import REGISTRY
from pipeline.sdk import DeliveryError, UptakeClient
from tests.conftest import Pipeline, free_port, wait_until
from tests.support.collector import Collector, FakeClock, Reply, serve_in_thread
from tests.support.metrics import scrape

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

needs_java = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="needs java and mvn on PATH (Debian: openjdk-17-jre-headless, maven)",
)

CYCLES = int(os.environ.get("UPTAKE_RELIABILITY_BROKER_CYCLES", "1"))
OUTAGES = ("stop", "hang-kill") * CYCLES
DOWN_S = 5.0  # the broker stays down this long, plus the time it takes to start
HANG_S = 1.0  # "hang-kill": the JVM is stopped (SIGSTOP) this long before its SIGKILL
STEADY_S = 4.0  # load before, between and after the outages
GRACE_S = 20.0  # a producer must work again this long after the broker answers
SDK_TIMEOUT_S = 2.0  # UptakeClient timeout_s: flush waits this long (delivery timeout: +1 s)
ROUND_EVENTS = 300
ROUND_INTERVAL_S = 0.1  # ~3,000 events/s
COLLECTOR_TIMEOUT_S = 2.0  # how long the collector waits for Kafka before answering 503
POSTERS = 4
POST_EVENTS = 25
SOURCE = "uptake-simulator"  # the simulated events' source, so the token may speak for it
TOKEN = "reliability-token-0123456789abcdef"
DELETED_ROWS = 5
CHUNK_EVENTS = 20_000

CELLS_SQL = (
    "SELECT team, event_type, count() AS n, uniqExact(event_id) AS ids, "
    "uniqExact(_partition, _offset, event_id) AS copies FROM events GROUP BY team, event_type"
)
IDS_SQL = "SELECT DISTINCT toString(event_id) AS id FROM events"
DOUBLED_SQL = (  # Kafka messages whose events were stored more than once
    "SELECT _partition AS partition, _offset AS offset, count() AS n, "
    "uniqExact(event_id) AS ids, groupUniqArray(toString(ingested_at)) AS written_at "
    "FROM events GROUP BY _partition, _offset HAVING n > ids ORDER BY partition, offset"
)
NO_MERGES_SQL = (
    "ALTER TABLE events MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1, "
    "max_bytes_to_merge_at_min_space_in_pool = 1"
)

KAFKA_PYTHON_WEDGE = (
    "kafka-python 3.0.12 idempotent producer (enable_idempotence=True, which make_producer "
    "no longer sets) never sends again after a batch it had already sent expires: "
    "TransactionManager.reset_producer_id() leaves the state READY and "
    "init_producer_id() only acts from UNINITIALIZED, so no new producer id is ever requested"
)

Cell = tuple[str, str]

# Producers the run no longer uses, kept referenced until the interpreter exits. A wedged
# kafka-python producer (KAFKA_PYTHON_WEDGE) cannot be closed: close() raises from its flush, and
# so does its __del__. Run by the garbage collector inside one of pytest's ast.parse calls (report
# formatting, assertion rewriting), that __del__ makes CPython 3.11 fail the whole session with
# "SystemError: AST constructor recursion depth mismatch", so it must not run mid-session.
_KEPT_ALIVE: list[object] = []


class ClientDidNotRecover(Exception):
    """A producer still fails GRACE_S after the broker is back (as KAFKA_PYTHON_WEDGE did)."""


# --------------------------------------------------------------------------------------------
# the checker


def diff_with_truth(
    rows: Sequence[Mapping[str, Any]], truth: Mapping[Cell, int]
) -> dict[str, dict[Cell, int]]:
    """What differs between stored events and the ground truth; `{}` when they agree.

    `rows` has one row per (team, event_type) with `n` (rows stored), `ids` (distinct
    event ids) and `copies` (distinct (partition, offset, event_id): Kafka records stored), as
    CELLS_SQL or `topic_cells` give them. `truth` counts distinct events per (team, event_type).
    Keys of the result, each only when non-empty:

    - `missing`: events of the truth not stored (per cell, truth minus distinct ids);
    - `extra`: more distinct events stored than the truth has;
    - `double_counted`: rows beyond one per Kafka record, i.e. the pipeline wrote a record twice.

    One event_id in two Kafka records (an emitter re-send after an ambiguous failure) is not a
    difference: `events` folds it by event_id (see `emitter_resends`).
    """
    ids: Counter[Cell] = Counter()
    double: Counter[Cell] = Counter()
    for row in rows:
        cell = (str(row["team"]), str(row["event_type"]))
        ids[cell] += int(row["ids"])
        double[cell] += int(row["n"]) - int(row["copies"])
    expected = Counter({cell: n for cell, n in truth.items() if n})
    diff: dict[str, dict[Cell, int]] = {}
    if expected - ids:
        diff["missing"] = dict(expected - ids)
    if ids - expected:
        diff["extra"] = dict(ids - expected)
    if +double:
        diff["double_counted"] = dict(+double)
    return diff


def emitter_resends(rows: Sequence[Mapping[str, Any]]) -> int:
    """Kafka records that repeat an event_id already stored from another record."""
    return sum(int(r["copies"]) - int(r["ids"]) for r in rows)


def cells(events: Iterable[Cell]) -> Counter[Cell]:
    return Counter(events)


# --------------------------------------------------------------------------------------------
# Kafka helpers


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that were free on 127.0.0.1 a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class Landed:
    """One event on the topic, with the coordinates of its Kafka record."""

    partition: int
    offset: int
    event_id: str
    cell: Cell


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Landed]:
    """Every event of every message on `topic`, read to the end offsets."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="reliability-reader"
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[Landed] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                for r in records:
                    for e in msgspec.json.decode(r.value):
                        cell = (e["team"], e["event_type"])
                        out.append(Landed(r.partition, r.offset, e["event_id"], cell))
        return out
    finally:
        consumer.close()


def topic_cells(landed: Sequence[Landed]) -> list[dict[str, Any]]:
    """The per-cell aggregates of CELLS_SQL, computed from the topic itself."""
    n: Counter[Cell] = Counter()
    ids: dict[Cell, set[str]] = {}
    for item in landed:
        n[item.cell] += 1
        ids.setdefault(item.cell, set()).add(item.event_id)
    return [
        {"team": c[0], "event_type": c[1], "n": n[c], "ids": len(ids[c]), "copies": n[c]} for c in n
    ]


def committed_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Messages on `topic` not yet committed by `group`; None when Kafka does not answer."""
    consumer = None
    try:
        # Never subscribes, so it does not join the group: it only reads the committed offsets.
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        end = consumer.end_offsets(partitions)
        return sum(max(0, end[tp] - (consumer.committed(tp) or 0)) for tp in partitions)
    except KafkaError:
        return None
    finally:
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()


def endless_events(seed: int, teams: int) -> Iterator[dict[str, Any]]:
    """Simulated events without end: the whole adoption curve every CHUNK_EVENTS events, so
    even a short run covers many teams and event types (one long `generate` would not)."""
    org = Organisation.synthetic(seed, teams=teams)
    for chunk in itertools.count():
        yield from generate(org, CHUNK_EVENTS, seed * 10_000 + chunk, window=timedelta(days=1))


# --------------------------------------------------------------------------------------------
# broker, pipeline and worker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """Our own broker: the run stops, kills and restarts it."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("needs java and mvn on PATH (Debian: openjdk-17-jre-headless, maven)")
    port, controller_port = free_ports(2)
    b = LocalBroker(
        tmp_path_factory.mktemp("restart-kafka"), port=port, controller_port=controller_port
    )
    b.start(timeout=120, progress=lambda _: None)
    try:
        yield b
    finally:
        b.stop(timeout=10)


def make_pipeline(bootstrap: str, root: Path, server_url: str | None) -> Pipeline:
    """Like tests/conftest.py's `pipeline_env`, but on `bootstrap` (our broker); migrated."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("UPTAKE_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    warehouse = (
        f"{server_url}/t_{uuid.uuid4().hex[:12]}" if server_url else f"chdb://{root / 'warehouse'}"
    )
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "UPTAKE_CLICKHOUSE_URL": warehouse,
            "UPTAKE_HOME": str(root / "home"),
            "UPTAKE_EVENTS_TOPIC": f"restart.events.{suffix}",
            "UPTAKE_DLQ_TOPIC": f"restart.events.dlq.{suffix}",
            "UPTAKE_CONSUMER_GROUP": f"restart-worker-{suffix}",
            "UPTAKE_METRICS_PORT": str(free_port()),
            "UPTAKE_FLUSH_INTERVAL_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    home = root / "home"
    home.mkdir(parents=True)
    pipeline = Pipeline(env, home)
    pipeline.run("migrate")
    # No background merges in this test's warehouse: the ReplacingMergeTree would fold a row
    # the pipeline wrote twice, so count() could not show it. Now count() is what was written.
    pipeline.run("query", NO_MERGES_SQL)
    ensure_topics(bootstrap, {env["UPTAKE_EVENTS_TOPIC"]: 4, env["UPTAKE_DLQ_TOPIC"]: 1})
    return pipeline


class SupervisedWorker:
    """The worker subprocess; started again if it exits on its own (each restart counted)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.proc = pipeline.start_worker()
        self.restarts = 0
        self.exit_codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the worker answers /readyz: an outage must meet a running worker, not one
        still starting (that one exits and is counted as a restart)."""
        url = f"http://127.0.0.1:{self.pipeline.env['UPTAKE_METRICS_PORT']}/readyz"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
            assert time.monotonic() < deadline, f"the worker was not ready in {timeout} s"
            time.sleep(0.3)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            code = self.proc.poll()
            if code is not None:
                self.exit_codes.append(code)
                self.restarts += 1
                self.proc = self.pipeline.start_worker()

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (None if it had to be killed)."""
        self._stop.set()
        self._thread.join(5)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None


def wait_caught_up(pipeline: Pipeline, worker: SupervisedWorker, timeout: float = 120) -> None:
    """Until the worker committed the whole topic (it commits only after ClickHouse acked)."""
    env = pipeline.env
    args = (
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["UPTAKE_CONSUMER_GROUP"],
        env["UPTAKE_EVENTS_TOPIC"],
    )
    wait_until(
        lambda: committed_lag(*args) == 0,
        timeout=timeout,
        interval=1.0,
        what=f"the worker to commit the whole topic (restarts {worker.restarts}):\n"
        + pipeline.worker_log()[-3000:],
    )


@dataclass(frozen=True)
class Window:
    """One outage: the broker surely acknowledged nothing from `down_from` to `down_until`
    (when start() was called) and answered again at `back_at` (monotonic seconds)."""

    kind: str
    down_from: float
    down_until: float
    back_at: float

    @property
    def seconds(self) -> float:
        return self.back_at - self.down_from


@dataclass
class Outages:
    """What the main thread tells the load threads about the broker."""

    index: int = -1  # the current or last outage
    back_at: float | None = 0.0  # monotonic time the broker answered again; None while down
    windows: list[Window] = field(default_factory=list)


def outage(broker: LocalBroker, kind: str, state: Outages) -> Window:
    """Take the broker down, hold it down DOWN_S, start it again on the same home and storage.

    "stop": graceful (SIGTERM, controlled shutdown). "hang-kill": the JVM stalls (SIGSTOP) for
    HANG_S, so requests sent meanwhile are in flight, unanswered, when it is SIGKILLed.
    """
    state.index += 1
    state.back_at = None
    if kind == "stop":
        assert broker.stop(timeout=30)
        down_from = time.monotonic()
    else:
        pid = broker.status(timeout=1).pid
        assert pid is not None, "the broker is not running"
        os.kill(pid, signal.SIGSTOP)
        down_from = time.monotonic()
        time.sleep(HANG_S)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not broker.status(timeout=0.5).running, 10, what="the JVM to die")
    time.sleep(DOWN_S)
    down_until = time.monotonic()
    broker.start(timeout=120, progress=lambda _: None)
    state.back_at = time.monotonic()
    window = Window(kind, down_from, down_until, state.back_at)
    state.windows.append(window)
    return window


@dataclass
class Recovery:
    """How a producer came back after outage number `outage`."""

    outage: int
    by_itself: bool  # it worked again without being replaced (SDK client) or restarted
    after_s: float | None  # seconds after the broker answered again


# --------------------------------------------------------------------------------------------
# the SDK emitter


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
            _KEPT_ALIVE.append(client)  # with its producer, closed or not

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


# --------------------------------------------------------------------------------------------
# the HTTP clients of the collector


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


def collector_counter(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "uptake_collector_events_total", {"route": "events", "outcome": outcome}
    )
    return value or 0.0


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class RestartRun:
    """Everything the run observed; the tests below judge it."""

    outages: list[Window]
    sdk: SdkLoad
    sdk_resent: int
    posters: Posters
    collector_recoveries: list[Recovery]
    collector_restarts: int
    accepted_delta: float
    undelivered_delta: float
    landed_before_resend: list[Landed]
    landed: list[Landed]
    rows: list[dict[str, Any]]
    stored_ids: set[str]
    doubled: list[dict[str, Any]]
    rows_after_delete: list[dict[str, Any]]
    deleted: Counter[Cell]
    worker_restarts: int
    worker_exit: int | None
    worker_log: str
    inserted_rows: float | None
    replays_skipped: float | None
    resends_skipped: float | None
    seconds: float

    @property
    def truth_of(self) -> dict[str, Cell]:
        """Every event either producer sent: event_id -> (team, event_type)."""
        return {**self.sdk.emitted, **self.posters.posted}

    @property
    def truth(self) -> Counter[Cell]:
        return cells(self.truth_of.values())

    def during(self, window: Window) -> list[Answer]:
        """Requests sent and answered while the broker surely acknowledged nothing."""
        return [
            a
            for a in self.posters.answers
            if window.down_from < a.started and a.ended < window.down_until
        ]


@pytest.fixture(scope="module")
def restart_run(
    broker: LocalBroker,
    clickhouse_server_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> RestartRun:
    started = time.monotonic()
    broker.start(timeout=120, progress=lambda _: None)
    pipeline = make_pipeline(
        broker.bootstrap, tmp_path_factory.mktemp("broker-restart"), clickhouse_server_url
    )
    topic = pipeline.env["UPTAKE_EVENTS_TOPIC"]
    state = Outages()
    sdk = SdkLoad(broker.bootstrap, topic, endless_events(31, teams=10), state)

    tokens = TokenTable.from_mapping({SOURCE: hash_token(TOKEN)})
    config = CollectorConfig(
        host="127.0.0.1",
        port=0,
        kafka_bootstrap=broker.bootstrap,
        events_topic=topic,
        kafka_timeout_s=COLLECTOR_TIMEOUT_S,
        rate=0.0,
    )

    apps: list[web.Application] = []

    def new_collector() -> Collector:
        app = create_app(config, tokens, clock=FakeClock(), kafka_threads=8)
        apps.append(app)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        return serve_in_thread(app, topic, broker.bootstrap, FakeClock(), auth)

    servers = [new_collector()]
    posters = Posters(lambda: servers[-1], endless_events(32, teams=8))
    collector_recoveries: list[Recovery] = []
    accepted_before = collector_counter("accepted")
    undelivered_before = collector_counter("undelivered")
    worker = SupervisedWorker(pipeline)
    worker.wait_ready()
    inserted: float | None = None
    skipped: float | None = None
    resends: float | None = None
    try:
        sdk.start()
        posters.start()
        time.sleep(STEADY_S)
        for kind in OUTAGES:
            window = outage(broker, kind, state)
            try:
                wait_until(posters.answered_200_after(window.back_at), GRACE_S, what="a 200")
                after = posters.first_200_after(window.back_at)
                collector_recoveries.append(Recovery(state.index, True, after))
            except AssertionError:  # the workaround: restart the collector
                collector_recoveries.append(Recovery(state.index, False, None))
                servers.append(new_collector())
                restarted = time.monotonic()
                wait_until(posters.answered_200_after(restarted), 30, what="a 200 after a restart")
            wait_until(sdk.resumed_after(window.back_at), GRACE_S + 30, what="an SDK round")
            time.sleep(STEADY_S)
        posters.stop()
        sdk.stop_event.set()
        sdk.join(30)
        for error in (sdk.error, posters.error):
            if error is not None:
                raise error
        landed_before_resend = read_topic(broker.bootstrap, topic)
        sdk_resent = sdk.resend_spool()
        posters.resend_spool()
        accepted_delta = collector_counter("accepted") - accepted_before
        undelivered_delta = collector_counter("undelivered") - undelivered_before
        wait_caught_up(pipeline, worker)
        with contextlib.suppress(OSError):
            samples = scrape(pipeline.metrics_url)
            events_table = (("table", "events"),)
            inserted = samples.get(("uptake_clickhouse_inserted_rows_total", events_table))
            skipped = samples.get(("uptake_sink_replayed_rows_skipped_total", events_table), 0.0)
            resends = samples.get(("uptake_sink_duplicate_events_skipped_total", ()), 0.0)
    finally:
        posters.stop()
        sdk.stop_event.set()
        # KafkaGateway.close() lets go of its producer even when closing it fails: keep it.
        _KEPT_ALIVE.extend(getattr(app[STATE].gateway, "_producer", None) for app in apps)
        for server in servers:
            server.stop()
        worker_exit = worker.stop()
        broker.start(timeout=120, progress=lambda _: None)

    landed = read_topic(broker.bootstrap, topic)
    rows = pipeline.rows(CELLS_SQL)
    stored_ids = {r["id"] for r in pipeline.rows(IDS_SQL)}
    # Negative control on the real warehouse: delete a few rows, compare again.
    victims = sorted(stored_ids)[:DELETED_ROWS]
    cell_of = {item.event_id: item.cell for item in landed}
    quoted = ", ".join(f"'{v}'" for v in victims)
    pipeline.run("query", f"DELETE FROM events WHERE toString(event_id) IN ({quoted})")
    run = RestartRun(
        outages=list(state.windows),
        sdk=sdk,
        sdk_resent=sdk_resent,
        posters=posters,
        collector_recoveries=collector_recoveries,
        collector_restarts=len(servers) - 1,
        accepted_delta=accepted_delta,
        undelivered_delta=undelivered_delta,
        landed_before_resend=landed_before_resend,
        landed=landed,
        rows=rows,
        stored_ids=stored_ids,
        doubled=pipeline.rows(DOUBLED_SQL),
        rows_after_delete=pipeline.rows(CELLS_SQL),
        deleted=cells(cell_of[v] for v in victims),
        worker_restarts=worker.restarts,
        worker_exit=worker_exit,
        worker_log=pipeline.worker_log(),
        inserted_rows=inserted,
        replays_skipped=skipped,
        resends_skipped=resends,
        seconds=time.monotonic() - started,
    )
    print("\n" + summary(run))
    return run


def summary(run: RestartRun) -> str:
    """The figures of the run in one line (docs/reliability.md)."""
    diff = diff_with_truth(run.rows, run.truth)
    statuses = Counter(a.status for a in run.posters.answers)
    return (
        f"reliability: broker restart under load: {len(run.outages)} outages "
        f"({', '.join(f'{w.kind} {w.seconds:.1f}s' for w in run.outages)}) survived; "
        f"SDK {run.sdk.rounds} rounds, {len(run.sdk.emitted):,} events, "
        f"{run.sdk.delivery_errors} DeliveryErrors ({len(run.sdk.failed_ever):,} events, "
        f"{run.sdk_resent:,} re-sent), client recovered by itself after "
        f"{sum(r.by_itself for r in run.sdk.recoveries)} of {len(run.sdk.recoveries)} outages "
        f"({run.sdk.replaced} replaced); collector {len(run.posters.answers)} requests "
        f"{dict(sorted(statuses.items()))}, {len(run.posters.posted):,} events, "
        f"{sum(len(run.during(w)) for w in run.outages)} answered while down (all 503), "
        f"recovered by itself after {sum(r.by_itself for r in run.collector_recoveries)} of "
        f"{len(run.collector_recoveries)} ({run.collector_restarts} restarts); worker restarts "
        f"{run.worker_restarts} ({run.replays_skipped or 0:,.0f} replayed rows skipped); "
        f"{len(run.truth_of):,} events, lost {sum(diff.get('missing', {}).values())}, "
        f"double counted {sum(diff.get('double_counted', {}).values())}, "
        f"{emitter_resends(run.rows)} emitter re-sends folded; {run.seconds:.0f}s"
    )


# --------------------------------------------------------------------------------------------
# producers


@needs_java
def test_the_sdk_fails_loudly_and_confirmed_events_are_on_the_topic(
    restart_run: RestartRun,
) -> None:
    sdk = restart_run.sdk
    assert not sdk.anomalies, sdk.anomalies
    assert [w.kind for w in restart_run.outages] == list(OUTAGES)
    assert sdk.delivery_errors > 0, "no round failed: the outages were not felt"
    # Loudly and promptly: emit() may wait timeout_s for metadata, flush() waits timeout_s.
    assert sdk.slowest_round_s < 2 * SDK_TIMEOUT_S + 2, sdk.slowest_round_s
    # Every emitted event was either confirmed by flush() or named in a DeliveryError.
    assert set(sdk.emitted) == sdk.confirmed | sdk.failed_ever
    assert not sdk.spool, "failed events were never confirmed after re-sending"
    before_resend = {item.event_id for item in restart_run.landed_before_resend}
    confirmed_first_time = sdk.confirmed - sdk.failed_ever
    assert not confirmed_first_time - before_resend, "flush() returned for events Kafka lacks"
    assert set(sdk.emitted) <= {item.event_id for item in restart_run.landed}


@needs_java
def test_the_collector_answers_503_with_retry_after_while_kafka_is_down(
    restart_run: RestartRun,
) -> None:
    for window in restart_run.outages:
        during = restart_run.during(window)
        assert during, f"no request was answered while the broker was down ({window.kind})"
        assert all(a.status == 503 for a in during), Counter(a.status for a in during)
        assert all(a.error == "kafka_unavailable" for a in during)
        assert all(a.retry_after is not None and int(a.retry_after) > 0 for a in during)
    # Promptly: connecting waits kafka_timeout_s at most, the acknowledgement as long again.
    slowest = max(a.ended - a.started for a in restart_run.posters.answers)
    assert slowest < 2 * COLLECTOR_TIMEOUT_S + 2, slowest


@needs_java
def test_every_event_answered_200_is_on_the_topic_and_no_503_counts_as_accepted(
    restart_run: RestartRun,
) -> None:
    answers = restart_run.posters.answers
    assert {a.status for a in answers} <= {200, 503}, Counter(a.status for a in answers)
    first = [a for a in answers if not a.resend]
    assert any(a.status == 503 for a in first), "no request was refused"
    ok = {i for a in first if a.status == 200 for i in a.ids}
    assert ok <= {item.event_id for item in restart_run.landed_before_resend}
    # The collector's own counters: accepted exactly the events answered 200, every event
    # answered 503 counted undelivered (re-sent requests included).
    assert restart_run.accepted_delta == sum(len(a.ids) for a in answers if a.status == 200)
    assert restart_run.undelivered_delta == sum(len(a.ids) for a in answers if a.status == 503)
    assert not restart_run.posters.spool
    assert set(restart_run.posters.posted) <= {item.event_id for item in restart_run.landed}


@needs_java
def test_an_sdk_client_works_again_by_itself_after_the_broker_is_back(
    restart_run: RestartRun,
) -> None:
    recoveries = restart_run.sdk.recoveries
    assert [r.outage for r in recoveries] == list(range(len(OUTAGES))), recoveries
    stuck = [r for r in recoveries if not r.by_itself]
    if stuck:
        raise ClientDidNotRecover(f"still failing {GRACE_S:g}s after the broker was back: {stuck}")


@needs_java
def test_the_collector_answers_200_again_by_itself_after_the_broker_is_back(
    restart_run: RestartRun,
) -> None:
    recoveries = restart_run.collector_recoveries
    assert [r.outage for r in recoveries] == list(range(len(OUTAGES))), recoveries
    stuck = [r for r in recoveries if not r.by_itself]
    if stuck:
        raise ClientDidNotRecover(f"still 503 {GRACE_S:g}s after the broker was back: {stuck}")
    assert restart_run.collector_restarts == 0


# --------------------------------------------------------------------------------------------
# worker and warehouse


@needs_java
def test_the_worker_resumes_without_restarting(restart_run: RestartRun) -> None:
    tail = restart_run.worker_log[-3000:]
    assert restart_run.worker_restarts == 0, tail
    assert restart_run.worker_exit == 0, tail


@needs_java
def test_the_worker_inserts_each_event_once(restart_run: RestartRun) -> None:
    """Rows the sink inserted (its own counter) equal the distinct events on the topic, and the
    records it left out are exactly the emitter re-sends (a second record of an event_id).

    Stricter than the warehouse: `events` folds rows with equal sorting keys inside one insert
    block, so a record inserted twice in one batch leaves one row and only this count shows it.
    """
    inserted, records = restart_run.inserted_rows, len(restart_run.landed)
    distinct = len({item.event_id for item in restart_run.landed})
    assert inserted is not None, "the worker's /metrics did not answer"
    resends = restart_run.resends_skipped
    assert (inserted, resends) == (distinct, records - distinct), (
        f"the sink inserted {inserted:,.0f} rows and skipped {resends or 0:,.0f}"
        f" re-sent events for {records:,} event records of {distinct:,} distinct events "
        f"({restart_run.replays_skipped or 0:,.0f} replayed rows skipped); "
        f"worker log:\n{restart_run.worker_log[-3000:]}"
    )


@needs_java
def test_the_warehouse_holds_exactly_the_confirmed_and_resent_events(
    restart_run: RestartRun,
) -> None:
    truth_ids = set(restart_run.truth_of)
    assert {item.event_id for item in restart_run.landed} == truth_ids
    diff = diff_with_truth(restart_run.rows, restart_run.truth)
    assert diff == {}, f"messages stored more than once: {restart_run.doubled[:10]}"
    assert restart_run.stored_ids == truth_ids
    assert sum(int(r["ids"]) for r in restart_run.rows) == len(truth_ids)


@needs_java
def test_negative_control_events_not_resent_are_reported_missing(restart_run: RestartRun) -> None:
    """Had the emitter dropped its DeliveryErrors and the clients taken 503 for success, the
    same comparison (here with the topic before the re-sends) reports exactly those events."""
    landed = {item.event_id for item in restart_run.landed_before_resend}
    sdk_lost = restart_run.sdk.failed_ever - landed
    answers = restart_run.posters.answers
    refused = {i for a in answers if a.status == 503 and not a.resend for i in a.ids}
    collector_lost = refused - landed
    assert sdk_lost, "every event of a DeliveryError landed anyway"
    assert collector_lost, "every event answered 503 landed anyway"
    diff = diff_with_truth(topic_cells(restart_run.landed_before_resend), restart_run.truth)
    truth_of = restart_run.truth_of
    assert diff == {"missing": dict(cells(truth_of[i] for i in sdk_lost | collector_lost))}


@needs_java
def test_negative_control_rows_deleted_from_the_warehouse_are_reported_missing(
    restart_run: RestartRun,
) -> None:
    diff = diff_with_truth(restart_run.rows_after_delete, restart_run.truth)
    assert diff == {"missing": dict(restart_run.deleted)}
    assert sum(diff["missing"].values()) == DELETED_ROWS


# --------------------------------------------------------------------------------------------
# the checker itself


def test_diff_with_truth_reports_loss_surplus_and_double_counts_only() -> None:
    truth = Counter({("payments", "api_call"): 10, ("search", "deploy"): 3})

    def row(team: str, kind: str, n: int, ids: int, copies: int) -> dict[str, Any]:
        return {"team": team, "event_type": kind, "n": n, "ids": ids, "copies": copies}

    exact = [row("payments", "api_call", 10, 10, 10), row("search", "deploy", 3, 3, 3)]
    assert diff_with_truth(exact, truth) == {}
    # An event re-sent by its emitter (two records, one event_id) folds: no difference.
    resent = [row("payments", "api_call", 11, 10, 11), row("search", "deploy", 3, 3, 3)]
    assert diff_with_truth(resent, truth) == {}
    assert emitter_resends(resent) == 1
    lossy = [row("payments", "api_call", 8, 8, 8)]
    assert diff_with_truth(lossy, truth) == {
        "missing": {("payments", "api_call"): 2, ("search", "deploy"): 3}
    }
    doubled = [row("payments", "api_call", 12, 10, 10), row("search", "deploy", 3, 3, 3)]
    assert diff_with_truth(doubled, truth) == {"double_counted": {("payments", "api_call"): 2}}
    surplus = [*exact, row("risk", "api_call", 1, 1, 1)]
    assert diff_with_truth(surplus, truth) == {"extra": {("risk", "api_call"): 1}}
