"""A warehouse outage under load shows in the worker's /metrics and fires the shipped alerts.

A real Prometheus (Debian's package) scrapes the real worker every second and evaluates every
second. It loads two rule sets:

- the shipped files `deploy/prometheus/rules/*.yml`, byte for byte;
- a copy of the shipped alerting rules in which only `for:` is shortened to SHORT_FOR and every
  alert carries the label `drill="short-for"`: the same expressions on the same recorded series,
  so they can reach *firing* inside a CI run instead of after 5-15 minutes.

A producer thread sends single-event messages (so the consumer lag in messages passes the
alert's 10,000 within seconds) stamped at send time, one in REJECT_EVERY not JSON. After a
healthy phase the outage begins: the worker's injected writer failure
(UPTAKE_CHAOS_FAIL_INSERTS_FILE: every insert fails while that file exists) makes every insert
fail, as a ClickHouse that went away would. The test then checks, from the worker's own
/metrics, that the insert errors rise, the newest event ages (freshness) and the last batch ages
while the committed lag grows; and, through Prometheus's HTTP API, that the shipped
UptakeClickHouseInsertErrors and UptakeConsumerLagGrowing become pending and their short-`for`
copies fire, and that no unrelated alert fires. The file is removed, the worker's next retry
succeeds; the lag alert resolves, and the warehouse holds exactly what was sent (events per team
x event type, no event id twice, rejects with distinct source coordinates).

Not checked here, by the shipped windows' design: UptakeClickHouseInsertsFailing needs 3 minutes
without a successful insert (`rate(...[3m])` of the inserted rows must reach 0) and
UptakeNoEventsConsumed 30 minutes without consumption; deploy/prometheus/tests covers both with
promtool. UptakeClickHouseInsertErrors stays firing up to 5 minutes after the last failed insert.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from pipeline.devtools.simulate.org import Organisation, generate
from pipeline.kafka.producer import make_producer
from tests.conftest import REPO, Pipeline, wait_until
from tests.support.metrics import scrape_totals as scrape
from tests.support.prometheus import Prometheus, running_prometheus

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

RULES = REPO / "deploy" / "prometheus" / "rules"
SHORT_FOR = "2s"
DRILL = "short-for"
MESSAGES_PER_S = 3000  # single-event messages: the lag alert counts messages (> 10,000)
REJECT_EVERY = 250  # one message in this many is not JSON (0.4 %, far below the 5 % alert)
# Alerts the outage must make fire (short-for copies) and pending (shipped rules).
OUTAGE_ALERTS = {"UptakeClickHouseInsertErrors", "UptakeConsumerLagGrowing"}
# Alerts an outage may also make pending or fire, depending on how long it lasts.
MAY_FIRE = {"UptakeClickHouseInsertsFailing", "UptakeNoEventsConsumed"}


# --------------------------------------------------------------------------------------------
# Prometheus


def short_for_rules(source: Path) -> dict[str, Any]:
    """The shipped alerting rules with every `for:` shortened and a `drill` label added."""
    rules = yaml.safe_load(source.read_text())
    for group in rules["groups"]:
        group["name"] = f"{group['name']}-{DRILL}"
        for rule in group["rules"]:
            assert "alert" in rule, f"{source} should hold alerting rules only: {rule}"
            if "for" in rule:
                rule["for"] = SHORT_FOR
            rule["labels"] = {**rule.get("labels", {}), "drill": DRILL}
    return dict(rules)


@pytest.fixture
def prometheus(pipeline_env: Pipeline, tmp_path: Path) -> Iterator[Prometheus]:
    drill_rules = tmp_path / "uptake-alerts-short-for.yml"
    drill_rules.write_text(yaml.safe_dump(short_for_rules(RULES / "uptake-alerts.yml")))
    rules = [RULES / "uptake-recording.yml", RULES / "uptake-alerts.yml", drill_rules]
    with running_prometheus(pipeline_env.env["UPTAKE_METRICS_PORT"], tmp_path, rules) as server:
        yield server


# --------------------------------------------------------------------------------------------
# load


class Load(threading.Thread):
    """Sends MESSAGES_PER_S single-event messages a second until stopped; keeps the truth."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="outage-load", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.stopped = threading.Event()
        self.events: Counter[tuple[str, str]] = Counter()  # (team, event_type) sent
        self.rejects = 0
        self.sent = 0  # messages
        self.error: BaseException | None = None

    def run(self) -> None:
        org = Organisation.synthetic(31, teams=6)
        source = generate(org, 1_000_000, 31, window=timedelta(hours=1))
        producer = make_producer(self.bootstrap, linger_ms=5)
        encode = msgspec.json.encode
        try:
            started = time.monotonic()
            while not self.stopped.is_set():
                due = int((time.monotonic() - started) * MESSAGES_PER_S)
                while self.sent < due:
                    self.sent += 1
                    if self.sent % REJECT_EVERY == 0:
                        producer.send(self.topic, key=b"junk", value=b"not json %d" % self.sent)
                        self.rejects += 1
                        continue
                    event = next(source)
                    event["occurred_at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
                    producer.send(self.topic, key=event["team"].encode(), value=encode(event))
                    self.events[event["team"], event["event_type"]] += 1
                time.sleep(0.005)
            producer.flush(timeout=60)
        except BaseException as exc:  # raised again by the test
            self.error = exc
        finally:
            producer.close(timeout=10)

    def stop(self) -> None:
        self.stopped.set()
        self.join(90)
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------------------------
# the worker's own /metrics


def test_warehouse_outage_shows_in_metrics_fires_alerts_and_loses_nothing(
    pipeline_env: Pipeline, prometheus: Prometheus, tmp_path: Path
) -> None:
    outage = tmp_path / "warehouse-down"
    pipeline_env.env["UPTAKE_CHAOS_FAIL_INSERTS_FILE"] = str(outage)
    pipeline_env.run("migrate")
    load = Load(
        pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"], pipeline_env.env["UPTAKE_EVENTS_TOPIC"]
    )
    worker = pipeline_env.start_worker()
    figures: dict[str, Any] = {}
    try:
        wait_until(
            lambda: worker.poll() is None and prometheus.value('up{job="uptake-worker"}') == 1,
            timeout=90,
            what=f"Prometheus to scrape the worker\n{pipeline_env.worker_log()}",
        )
        load.start()
        # Healthy: events flow, the lag is sampled, nothing is alerting.
        wait_until(
            lambda: (
                (prometheus.value("sum(uptake_clickhouse_inserted_rows_total)") or 0) > 0
                and prometheus.value("sum(uptake_consumer_lag_messages)") is not None
            ),
            timeout=60,
            what=f"the worker to write events\n{pipeline_env.worker_log()}",
        )
        wait_until(
            lambda: prometheus.alerts("firing", DRILL) == set(),
            timeout=20,
            what="no alert to fire while the pipeline is healthy",
        )

        # The warehouse goes away.
        outage.touch()
        began = time.monotonic()
        wait_until(
            lambda: "injected failure" in pipeline_env.worker_log(),
            timeout=30,
            what="the first failed insert",
        )
        first, first_at = scrape(pipeline_env.metrics_url), time.time()
        errors, lag, fresh = (
            "uptake_clickhouse_insert_errors_total",
            "uptake_consumer_lag_messages",  # sampled every ~5 s by the worker
            "uptake_event_freshness_seconds",
        )

        def grown() -> dict[str, float] | None:
            now = scrape(pipeline_env.metrics_url)
            rising = now[errors] > first[errors] and now[lag] > first[lag]
            return now if rising and now[fresh] - first[fresh] > 5 else None

        second = wait_until(grown, timeout=40, interval=1, what="the outage to show in /metrics")
        figures["insert_errors"] = (first[errors], second[errors])
        figures["lag"] = (first[lag], second[lag])
        # Nothing is written: the last batch and the newest event age with the clock.
        last_batch = "uptake_last_batch_timestamp_seconds"
        assert second[last_batch] == first[last_batch]
        assert second[fresh] - first[fresh] == pytest.approx(time.time() - first_at, abs=3)

        # Prometheus: the shipped rules go pending, their short-`for` copies fire.
        def outage_alerts_fire() -> bool:
            assert worker.poll() is None, pipeline_env.worker_log()
            return prometheus.alerts("firing", DRILL) >= OUTAGE_ALERTS

        wait_until(outage_alerts_fire, timeout=90, interval=1, what="the outage alerts to fire")
        figures["fired_after_s"] = round(time.monotonic() - began, 1)
        shipped = prometheus.alerts("pending") | prometheus.alerts("firing")
        assert shipped >= OUTAGE_ALERTS, shipped
        assert shipped <= OUTAGE_ALERTS | MAY_FIRE, shipped
        firing = prometheus.alerts("firing", DRILL)
        assert firing <= OUTAGE_ALERTS | MAY_FIRE, firing
        figures["firing"] = sorted(firing)
        figures["lag_at_alert"] = prometheus.value("sum(uptake_consumer_lag_messages)")
        # Prometheus sees no batch since the outage began (a batch in flight then may land;
        # the scrape and the rule evaluation lag by a second each).
        age = prometheus.value("time() - max(uptake_last_batch_timestamp_seconds)")
        outage_s = time.monotonic() - began
        assert outage_s > 5 and age is not None and age >= outage_s - 3, (age, outage_s)

        # The warehouse is back: the next retry writes, the backlog drains, the lag alert ends.
        outage.unlink()
        ended = time.monotonic()
        wait_until(
            lambda: second[last_batch] < scrape(pipeline_env.metrics_url)[last_batch],
            timeout=60,
            what="the first batch after the outage",
        )
        figures["outage_s"] = round(time.monotonic() - began, 1)
        figures["recovered_s_after_end"] = round(time.monotonic() - ended, 1)
        load.stop()
        wait_until(
            lambda: prometheus.value("sum(uptake_consumer_lag_messages)") == 0,
            timeout=60,
            what="the backlog to drain",
        )
        wait_until(
            lambda: "UptakeConsumerLagGrowing" not in prometheus.alerts("firing", DRILL),
            timeout=30,
            what="the lag alert to resolve",
        )
        consumed = load.sent
        wait_until(
            lambda: prometheus.value("sum(uptake_events_consumed_total)") == consumed,
            timeout=30,
            what=f"Prometheus to see all {consumed} events consumed",
        )
    finally:
        if load.is_alive():
            load.stop()
        outage.unlink(missing_ok=True)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    assert code == 0, pipeline_env.worker_log()[-3000:]

    rows = pipeline_env.rows(
        "SELECT reported_team AS team, event_type, count() AS n, uniqExact(event_id) AS ids "
        "FROM events GROUP BY team, event_type"
    )
    stored = Counter({(r["team"], r["event_type"]): int(r["ids"]) for r in rows})
    assert all(int(r["n"]) == int(r["ids"]) for r in rows), "an event id is stored twice"
    assert stored == load.events, {"lost": load.events - stored, "extra": stored - load.events}
    rejected = pipeline_env.rows(
        "SELECT count() AS n, uniqExact(_partition, _offset, _index) AS k FROM rejected_events"
    )[0]
    assert (int(rejected["n"]), int(rejected["k"])) == (load.rejects, load.rejects)
    print(
        f"\noutage: {figures}; {sum(load.events.values())} events + {load.rejects} rejects, "
        "lost 0, double counted 0"
    )
