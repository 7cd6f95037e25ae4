"""The one registry of Uptake's Prometheus metrics: name, type and unit of each.

Names start with `uptake_`, use base units and end in `_total` for counters. Labels stay
bounded: event type, reason, table, partition, capability, warehouse kind — never a team, user,
service or event id (per-team detail lives in ClickHouse; the only exception are the opt-in,
capped per-team adoption gauges of `pipeline/observability/adoption.py`).
`docs/operations.md` explains each metric and what to do when it looks wrong;
`tests/unit/observability/test_metric_names.py` keeps the two in step.

Metrics whose values are computed when Prometheus scrapes (not by the code that does the work)
are registered by their owners: the adoption gauges (`pipeline.observability.adoption`, read from
ClickHouse in the background) and the HTTP collector's request metrics
(`pipeline.collector.metrics`). The process collectors below give the standard `process_*` and
`python_*` series under their usual names, so stock dashboards work.
"""

from __future__ import annotations

import math
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

import pipeline

REGISTRY = CollectorRegistry(auto_describe=True)

# process_* (CPU seconds, resident memory bytes, open fds, start time), python_gc_* and
# python_info, as the default registry would have them.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Counter, Kafka messages: every message the worker took from Kafka (one event or an array).
MESSAGES_CONSUMED = Counter(
    "uptake_messages_consumed", "Kafka messages taken by the worker.", registry=REGISTRY
)
# Counter, events: every event the worker took from Kafka (a message that cannot be split into
# events counts as one). consumed = accepted + rejected, always.
EVENTS_CONSUMED = Counter("uptake_events_consumed", "Events taken from Kafka.", registry=REGISTRY)
# Counter, events, by event_type.
EVENTS_ACCEPTED = Counter(
    "uptake_events_accepted",
    "Events that passed validation and were written to ClickHouse.",
    ["event_type"],
    registry=REGISTRY,
)
# Counter, events, by reason code (pipeline/contract/reasons.py).
EVENTS_REJECTED = Counter(
    "uptake_events_rejected",
    "Events rejected, by machine-readable reason.",
    ["reason"],
    registry=REGISTRY,
)
# Counter, events: rejected events published to the dead-letter topic. The sink publishes the
# rejections it writes to rejected_events right before that insert; counted once the batch is
# written (a retried insert may publish one again, same key: the DLQ is at-least-once).
DEAD_LETTERS = Counter(
    "uptake_dead_letters_written",
    "Rejected events written to the dead-letter topic.",
    registry=REGISTRY,
)
# Counter, messages, by step: messages a step of the ingest chain raised on unexpectedly (a bug,
# not bad input); each is dead-lettered with reason internal_error and its batch goes on.
INGEST_STEP_ERRORS = Counter(
    "uptake_ingest_step_errors",
    "Messages on which an ingest step (decode, pseudonymise, resolve_teams) raised an "
    "unexpected exception; each was rejected as internal_error and dead-lettered.",
    ["step"],
    registry=REGISTRY,
)
# Counter, rows, by table: rows a replay would have written twice and the sink skipped.
REPLAYED_ROWS_SKIPPED = Counter(
    "uptake_sink_replayed_rows_skipped",
    "Rows at or below a table's stored offset watermark, skipped as replays.",
    ["table"],
    registry=REGISTRY,
)
DUPLICATE_EVENTS_SKIPPED = Counter(
    "uptake_sink_duplicate_events_skipped",
    "Accepted events not inserted because the sink wrote the same event_id recently "
    "(an emitter or producer re-send arriving as a new Kafka record).",
    registry=REGISTRY,
)
# Gauge, seconds: how old a re-sent event (same event_id, a new Kafka record) can be and still be
# skipped by the sink's recent-id window (UPTAKE_DEDUP_WINDOW ids); older re-sends count twice in
# the rollups (docs/guarantees.md, "Re-sends and the id window"). Set at each write.
DEDUP_HORIZON = Gauge(
    "uptake_sink_dedup_horizon_seconds",
    "Age of the oldest event id in the sink's recent-id window: re-sends older than this are "
    "not recognised and would count twice in the rollups.",
    registry=REGISTRY,
)
# Counter, activity records: (team, capability, UTC day) records the lifecycle agent applied.
LIFECYCLE_ACTIVITY_RECORDS = Counter(
    "uptake_lifecycle_activity_records",
    "Activity records (team, capability, day) applied by the adoption lifecycle.",
    registry=REGISTRY,
)
# Counter, milestone rows, by milestone (first_use, activated, churned, reactivated) and action
# (publish, retract): rows written to adoption_milestones and the milestones topic.
LIFECYCLE_MILESTONES = Counter(
    "uptake_lifecycle_milestones_written",
    "Adoption milestone rows written, by milestone and action (publish or retract).",
    ["milestone", "action"],
    registry=REGISTRY,
)
# Histogram, seconds, by table: one column-oriented INSERT, retries excluded.
INSERT_DURATION = Histogram(
    "uptake_clickhouse_insert_duration_seconds",
    "Duration of one ClickHouse insert.",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
# Counter, rows, by table.
INSERT_ROWS = Counter(
    "uptake_clickhouse_inserted_rows", "Rows written to ClickHouse.", ["table"], registry=REGISTRY
)
# Histogram, rows, by table: rows of one successful insert (one insert per table per batch).
INSERT_BATCH_ROWS = Histogram(
    "uptake_clickhouse_insert_rows",
    "Rows written by one ClickHouse insert.",
    ["table"],
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000),
    registry=REGISTRY,
)
# Counter, inserts, by table: failed attempts. Every failed attempt is retried with backoff, so
# this is also the number of retries; there is no separate retries counter.
INSERT_ERRORS = Counter(
    "uptake_clickhouse_insert_errors",
    "ClickHouse inserts that failed and will be retried.",
    ["table"],
    registry=REGISTRY,
)
# Histogram, events per batch.
BATCH_EVENTS = Histogram(
    "uptake_batch_events",
    "Events per worker batch.",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000),
    registry=REGISTRY,
)
# Gauge, seconds since the epoch: occurred_at of the newest event written.
NEWEST_EVENT = Gauge(
    "uptake_newest_event_timestamp_seconds",
    "occurred_at of the newest event written to ClickHouse (unix seconds).",
    registry=REGISTRY,
)
# Gauge, seconds since the epoch: when the last batch was committed to ClickHouse.
LAST_BATCH = Gauge(
    "uptake_last_batch_timestamp_seconds",
    "When the worker last finished a batch (unix seconds).",
    registry=REGISTRY,
)
# Histogram, seconds: processing time minus occurred_at, per event.
EVENT_DELAY = Histogram(
    "uptake_event_delay_seconds",
    "Time from occurred_at to the event being written to ClickHouse.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400),
    registry=REGISTRY,
)
# Gauge, seconds: now minus NEWEST_EVENT, computed at scrape time; NaN before the first event.
EVENT_FRESHNESS = Gauge(
    "uptake_event_freshness_seconds",
    "Age of the newest event written to ClickHouse: now - its occurred_at.",
    registry=REGISTRY,
)


def _freshness() -> float:
    newest = NEWEST_EVENT._value.get()
    return time.time() - newest if newest > 0 else math.nan


EVENT_FRESHNESS.set_function(_freshness)

# Gauge, messages, by partition of the events topic: log end offset minus the consumer group's
# committed offset (messages not yet written to ClickHouse), for the partitions this worker owns;
# sampled every few seconds by pipeline.observability.consumer_lag.
CONSUMER_LAG = Gauge(
    "uptake_consumer_lag_messages",
    "Messages in a partition of the events topic not yet written and committed by this worker.",
    ["partition"],
    registry=REGISTRY,
)
# Gauge, Kafka offset, by topic and partition: the first offset of a record batch the worker
# cannot decode (damaged, or compressed with a codec whose library is missing). Set when the
# worker meets it; the worker then exits with status 65 after UPTAKE_UNDECODABLE_EXIT_DELAY_S
# (pipeline/kafka/undecodable.py). Absent while every batch decodes.
UNDECODABLE_BATCH_OFFSET = Gauge(
    "uptake_undecodable_batch_offset",
    "First offset of a Kafka record batch the worker cannot decode (it stops there).",
    ["topic", "partition"],
    registry=REGISTRY,
)
# Histogram, seconds: one Kafka offset commit that committed something (faust's sensor hook).
KAFKA_COMMIT_DURATION = Histogram(
    "uptake_kafka_commit_duration_seconds",
    "Duration of one Kafka offset commit of the worker's consumer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    registry=REGISTRY,
)
# Counter, rebalances: consumer-group rebalances this worker took part in.
KAFKA_REBALANCES = Counter(
    "uptake_kafka_rebalances", "Consumer-group rebalances seen by the worker.", registry=REGISTRY
)
# Counter, occurrences: the worker's batcher (or faust's buffer) was full, so fetching paused
# (backpressure: the worker is slower than Kafka delivers, e.g. while an insert is retried).
STREAM_BUFFER_FULL = Counter(
    "uptake_stream_buffer_full",
    "Times the worker's stream buffer was full and fetching from Kafka paused.",
    registry=REGISTRY,
)

# Gauge, seconds since the epoch: when the adoption gauges were last read from ClickHouse.
ADOPTION_REFRESHED = Gauge(
    "uptake_adoption_refresh_timestamp_seconds",
    "When the adoption gauges were last read from ClickHouse successfully (unix seconds).",
    registry=REGISTRY,
)
# Gauge, seconds: how long the last successful read of the adoption gauges took.
ADOPTION_REFRESH_DURATION = Gauge(
    "uptake_adoption_refresh_duration_seconds",
    "Duration of the last successful read of the adoption gauges from ClickHouse.",
    registry=REGISTRY,
)
# Counter, refreshes: reads of the adoption gauges that failed (the previous values stay).
ADOPTION_REFRESH_ERRORS = Counter(
    "uptake_adoption_refresh_errors",
    "Reads of the adoption gauges from ClickHouse that failed.",
    registry=REGISTRY,
)

# Counter, warnings, by kind (pipeline.catalog.errors.WARNING_KINDS, a closed set): parts of the
# team catalog left out at a load or reload (a reference to an entity the catalog does not hold,
# a missing Location target, ...); the rest of the catalog is used. Counted again at every load
# that still finds them.
CATALOG_WARNINGS = Counter(
    "uptake_catalog_warnings",
    "Parts of the team catalog left out at a load or reload, by kind of warning.",
    ["kind"],
    registry=REGISTRY,
)

# Info: version and warehouse kind of this process.
BUILD_INFO = Info("uptake_build", "Version of Uptake and kind of warehouse.", registry=REGISTRY)


def set_build_info(warehouse_kind: str) -> None:
    """Fill `uptake_build_info`: the version of Uptake and the kind of warehouse it writes to."""
    BUILD_INFO.info({"version": pipeline.__version__, "warehouse_kind": warehouse_kind})


# Every process that serves this registry shows its version; the worker sets its warehouse kind.
set_build_info("none")
