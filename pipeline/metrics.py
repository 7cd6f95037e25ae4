"""The one registry of Uptake's Prometheus metrics: name, type and unit of each.

Names start with `uptake_`, use base units and end in `_total` for counters. Labels stay
bounded: event type, reason, table, warehouse kind — never a team, user, service or event id
(per-team detail lives in ClickHouse). `docs/operations.md` explains each metric.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

import pipeline

REGISTRY = CollectorRegistry(auto_describe=True)

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
# Counter, rows, by table: rows a replay would have written twice and the sink skipped.
REPLAYED_ROWS_SKIPPED = Counter(
    "uptake_sink_replayed_rows_skipped",
    "Rows at or below a table's stored offset watermark, skipped as replays.",
    ["table"],
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
# Counter, inserts, by table: failed attempts (each is retried with backoff).
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
# Info: version and warehouse kind of this process.
BUILD_INFO = Info("uptake_build", "Version of Uptake and kind of warehouse.", registry=REGISTRY)


def set_build_info(warehouse_kind: str) -> None:
    BUILD_INFO.info({"version": pipeline.__version__, "warehouse_kind": warehouse_kind})
