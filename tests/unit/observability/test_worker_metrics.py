"""The worker's own metrics without a broker: record(), freshness, consumer lag, faust's sensor."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import faust
import pytest
from prometheus_client import CollectorRegistry, Gauge

from pipeline.config.settings import SettingsError
from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.ingest.steps import Progress, record
from pipeline.observability import metrics
from pipeline.observability.config import ObservabilitySettings
from pipeline.observability.consumer_lag import ConsumerLagSampler, committed_offsets
from pipeline.observability.faust_sensor import UptakeMonitor

GOOD = (
    b'{"event_id":"00000000-0000-0000-0000-0000000000%02d","event_type":"api_call",'
    b'"schema_version":1,"occurred_at":"%s","source":"t","team":"payments",'
    b'"capability":"api-gateway","data":{"api":"a","operation":"GET /","status_code":200,'
    b'"latency_ms":1}}'
)


def value(metric: Any, *labels: str) -> float:
    target = metric.labels(*labels) if labels else metric
    return float(target._value.get())


def test_record_counts_messages_dead_letters_and_rows_per_insert() -> None:
    occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)).encode()
    messages = [
        SourceMessage("t", 0, 0, GOOD % (1, occurred)),
        SourceMessage("t", 0, 1, b"not json"),
        SourceMessage("t", 0, 2, b"[]"),
    ]
    batch = BatchDecoder().decode(messages)
    assert (len(batch.events), len(batch.rejections)) == (1, 2)
    # The newest occurred_at is a process-wide maximum: an earlier test's newer event would hide
    # this one, so the gauge starts from nothing here.
    metrics.NEWEST_EVENT.set(0)
    before = {
        "messages": value(metrics.MESSAGES_CONSUMED),
        "dead": value(metrics.DEAD_LETTERS),
        "inserts": metrics.INSERT_BATCH_ROWS.labels("events")._sum.get(),
    }
    record(
        batch,
        Progress(),
        messages=len(messages),
        written={"events": 1, "rejected_events": 2},
        dead_lettered=True,
    )
    assert value(metrics.MESSAGES_CONSUMED) == before["messages"] + 3
    assert value(metrics.DEAD_LETTERS) == before["dead"] + 2
    assert metrics.INSERT_BATCH_ROWS.labels("events")._sum.get() == before["inserts"] + 1
    # Freshness is computed at scrape time from the newest occurred_at.
    assert 55 <= metrics._freshness() <= 120

    # Without a dead-letter publisher nothing counts as dead-lettered; no insert, no observation.
    record(batch, Progress(), written={"events": 0})
    assert value(metrics.DEAD_LETTERS) == before["dead"] + 2
    # A replay whose rejections were stored already publishes (and counts) none of them.
    record(batch, Progress(), written={"events": 0, "rejected_events": 0}, dead_lettered=True)
    assert value(metrics.DEAD_LETTERS) == before["dead"] + 2
    assert metrics.INSERT_BATCH_ROWS.labels("events")._sum.get() == before["inserts"] + 1


def test_freshness_is_nan_before_the_first_event(monkeypatch: pytest.MonkeyPatch) -> None:
    gauge = Gauge("x_newest", "x", registry=CollectorRegistry())
    monkeypatch.setattr(metrics, "NEWEST_EVENT", gauge)
    assert math.isnan(metrics._freshness())
    gauge.set(time.time() - 30)
    assert 29 <= metrics._freshness() <= 31


class TP(NamedTuple):
    topic: str
    partition: int


class FakeConsumer:
    """faust's consumer as the lag sampler sees it."""

    def __init__(self, ends: dict[TP, int], committed: dict[TP, int | None]) -> None:
        self.ends = ends
        self._committed_offset = committed
        self.owned = set(ends)
        self.broker_answers = True

    def assignment(self) -> set[TP]:
        return set(self.owned)

    def highwater(self, tp: TP) -> int | None:
        return 5  # stale, cached from the last fetch

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        if not self.broker_answers:
            raise TimeoutError("no answer")
        return {tp: self.ends[tp] for tp in partitions}

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        return {tp: 2 for tp in partitions}


def test_consumer_lag_is_log_end_minus_committed_per_owned_partition() -> None:
    gauge = Gauge("x_lag", "x", ["partition"], registry=CollectorRegistry())
    p0, p1, p2, other = TP("events", 0), TP("events", 1), TP("events", 2), TP("dlq", 0)
    consumer = FakeConsumer({p0: 100, p1: 40, p2: 10, other: 999}, {p0: 60, p1: 40, p2: None})
    sampler = ConsumerLagSampler(lambda: consumer, "events", gauge=gauge)

    # p2 never committed: measured from the earliest offset (2).
    assert asyncio.run(sampler.sample()) == {0: 40, 1: 0, 2: 8}
    assert gauge.labels("0")._value.get() == 40

    consumer.owned = {p0}  # a rebalance took p1 and p2 away
    consumer.broker_answers = False  # and the broker is slow: the cached highwater is used
    assert asyncio.run(sampler.sample()) == {0: 0}
    exported = {s.labels["partition"] for m in gauge.collect() for s in m.samples}
    assert exported == {"0"}, "partitions the worker lost keep no series"


def test_consumer_lag_sampling_never_raises() -> None:
    class Starting:
        def assignment(self) -> set[TP]:
            raise RuntimeError("Consumer thread not yet started")

    sampler = ConsumerLagSampler(lambda: Starting(), "events")  # type: ignore[arg-type, return-value]
    assert asyncio.run(sampler.sample()) == {}


def test_faust_keeps_committed_offsets_where_the_sampler_reads_them() -> None:
    """A negative control for a faust upgrade that renames the private attribute."""
    app = faust.App("uptake-test-lag", broker="kafka://127.0.0.1:1", web_enabled=False)
    consumer = app.consumer
    assert isinstance(committed_offsets(consumer), Mapping)
    assert hasattr(consumer, "_committed_offset")
    assert callable(consumer.highwater) and callable(consumer.highwaters)


def test_the_faust_sensor_times_real_commits_and_counts_rebalances() -> None:
    monitor = UptakeMonitor()
    commits = metrics.KAFKA_COMMIT_DURATION._sum.get()
    count = sum(b.get() for b in metrics.KAFKA_COMMIT_DURATION._buckets)

    state = monitor.on_commit_initiated(None)
    monitor.on_commit_completed(None, state)  # nothing was committed: not observed
    assert sum(b.get() for b in metrics.KAFKA_COMMIT_DURATION._buckets) == count

    state = monitor.on_commit_initiated(None)
    monitor.on_tp_commit({TP("events", 0): 10})
    monitor.on_commit_completed(None, state)
    assert sum(b.get() for b in metrics.KAFKA_COMMIT_DURATION._buckets) == count + 1
    assert metrics.KAFKA_COMMIT_DURATION._sum.get() >= commits

    rebalances = value(metrics.KAFKA_REBALANCES)
    monitor.on_rebalance_start(faust.App("uptake-test-sensor", web_enabled=False))
    assert value(metrics.KAFKA_REBALANCES) == rebalances + 1
    full = value(metrics.STREAM_BUFFER_FULL)
    monitor.on_topic_buffer_full(TP("events", 0))
    assert value(metrics.STREAM_BUFFER_FULL) == full + 1


def test_observability_settings_from_the_environment() -> None:
    assert ObservabilitySettings.from_env({}) == ObservabilitySettings(60.0, 0)
    settings = ObservabilitySettings.from_env(
        {"UPTAKE_ADOPTION_GAUGES_REFRESH_S": "0", "UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES": "500"}
    )
    assert not settings.adoption_enabled and settings.adoption_per_team_max_series == 500
    for env, message in [
        ({"UPTAKE_ADOPTION_GAUGES_REFRESH_S": "soon"}, "not a valid float"),
        ({"UPTAKE_ADOPTION_GAUGES_REFRESH_S": "0.1"}, "at least 1 second"),
        ({"UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES": "-1"}, "0 \\(off\\)"),
        ({"UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES": "1.5"}, "not a valid int"),
    ]:
        with pytest.raises(SettingsError, match=message):
            ObservabilitySettings.from_env(env)
