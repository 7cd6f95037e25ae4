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
  (tests/support/collector.py). A 503 answer is kept and the request re-sent after the load.

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
  (NO_MERGES_SQL in tests/support/worker.py), so the ReplacingMergeTree cannot fold away a row
  written twice by two inserts before the comparison. (Equal keys inside one insert fold at
  once; only the sink's inserted-row count above shows those.)

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
batch it had already sent expires (KAFKA_PYTHON_WEDGE, tests/support/load.py). `make_producer`
therefore builds a non-idempotent producer with one request in flight (per-partition order
kept); a retry that duplicates a record is an emitter re-send folded by event_id. The emitter
would still replace a client that fails GRACE_S after the broker is back (and restart the
collector) and count it in the summary line; the test fails if that happens
(ClientDidNotRecover).

The harness is in tests/support: the load (load.py), the outages (outages.py), the supervised
worker (worker.py), the topic reader (topics.py) and the checker `diff_with_truth` (truth.py);
this module holds the run and the tests that judge it.

Runtime: about 2 minutes on 2 cores (each SIGKILLed start waits ~15 s for KRaft to expire the
old broker registration; a stuck producer would cost GRACE_S more).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from pipeline.collector.app import STATE, create_app
from pipeline.collector.auth import TokenTable, hash_token
from pipeline.collector.config import CollectorConfig
from pipeline.devtools.broker import LocalBroker
from pipeline.observability.metrics import REGISTRY
from tests.conftest import wait_until
from tests.support.collector import Collector, FakeClock, serve_in_thread
from tests.support.load import (
    GRACE_S,
    KEPT_ALIVE,
    SDK_TIMEOUT_S,
    Answer,
    ClientDidNotRecover,
    Posters,
    SdkLoad,
    endless_events,
)
from tests.support.metrics import scrape
from tests.support.outages import Outages, Recovery, Window, outage
from tests.support.ports import free_ports
from tests.support.topics import Cell, Landed, landed_events, topic_cells
from tests.support.truth import (
    CELLS_SQL,
    DOUBLED_SQL,
    IDS_SQL,
    cells,
    diff_with_truth,
    emitter_resends,
)
from tests.support.worker import SupervisedWorker, make_pipeline, wait_caught_up

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

needs_java = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None,
    reason="needs java and mvn on PATH (Debian: openjdk-17-jre-headless, maven)",
)


CYCLES = int(os.environ.get("UPTAKE_RELIABILITY_BROKER_CYCLES", "1"))
OUTAGES = ("stop", "hang-kill") * CYCLES
STEADY_S = 4.0  # load before, between and after the outages
COLLECTOR_TIMEOUT_S = 2.0  # how long the collector waits for Kafka before answering 503
SOURCE = "uptake-simulator"  # the simulated events' source, so the token may speak for it
TOKEN = "reliability-token-0123456789abcdef"
DELETED_ROWS = 5


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
        landed_before_resend = landed_events(broker.bootstrap, topic)
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
        KEPT_ALIVE.extend(getattr(app[STATE].gateway, "_producer", None) for app in apps)
        for server in servers:
            server.stop()
        worker_exit = worker.stop()
        broker.start(timeout=120, progress=lambda _: None)

    landed = landed_events(broker.bootstrap, topic)
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
