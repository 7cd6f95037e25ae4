-- Accepted platform events, one row per event, and rejected events with their reason.
--
-- Every row carries its source coordinates (_topic, _partition, _offset). The worker's sink
-- reads max(_offset) per partition when it starts and skips anything at or below it, which
-- makes replays after a crash, restart or rebalance write nothing twice (docs/guarantees.md).
-- ReplacingMergeTree on a key that ends with event_id also folds an event an emitter sent twice.

CREATE TABLE IF NOT EXISTS events
(
    event_id UUID,
    event_type LowCardinality(String),
    schema_version UInt16,
    occurred_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the worker wrote it',
    source LowCardinality(String),
    team LowCardinality(String),
    service LowCardinality(String),
    user_key String COMMENT 'keyed BLAKE2b-128 of the user id (pipeline/enrich/pseudonym.py); never the raw id',
    capability LowCardinality(String),
    data String COMMENT 'type-specific body as JSON',
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (event_type, team, capability, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS rejected_events
(
    rejected_at DateTime64(3, 'UTC') DEFAULT now64(3),
    reason LowCardinality(String),
    detail String,
    event_type LowCardinality(String),
    raw String COMMENT 'the original bytes of the event (or of the whole message)',
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64,
    _index UInt32 COMMENT 'position of the event inside its message'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (reason, rejected_at, _partition, _offset, _index)
TTL toDateTime(rejected_at) + INTERVAL 90 DAY;
