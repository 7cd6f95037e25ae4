-- Rollups per team x capability x event type x time bucket, and fact tables for the
-- low-volume events (deployments, model trainings, incidents). docs/analysts.md explains every
-- column; this file says how they are fed.
--
-- Everything here is fed by materialized views that run on each block inserted into `events`.
-- The sink inserts every accepted event into `events` exactly once (offset watermarks plus the
-- recent-id window, docs/guarantees.md), so each event is aggregated exactly once, whenever it
-- arrives: a late event lands in the bucket of its own `occurred_at`, and the engine merges it
-- with what the bucket already holds. `events.team` is the resolved team (0002).
--
-- The minute rollup reads `events` and parses the JSON body once per row; the hour rollup is
-- fed from the minute rollup's inserted blocks and the day rollup from the hour rollup's, by
-- merging aggregate states. That is cheaper than parsing the body three times and gives the
-- same figures: every state here merges exactly (sums, min/max, uniqExact sets, DDSketch
-- buckets). Minute rows expire after 30 days and hour rows after 400 days (TTL); the expiry of
-- a finer rollup never touches a coarser one.
--
-- api_call rows stay in `events` (the sink's replay protection reads its offsets, the adoption
-- gauges and drill-down queries read it, and a changed rollup definition can be rebuilt from
-- it), but only for 90 days: the TTL at the end deletes older api_call rows, while the rollups
-- keep their history. Deploys, trainings and incidents are kept: they are few and they feed the
-- facts.

-- A rollup. Aggregate columns only count the events they apply to (e.g. latency: api_call).
CREATE TABLE IF NOT EXISTS usage_minute
(
    event_type LowCardinality(String),
    capability LowCardinality(String),
    team LowCardinality(String),
    bucket DateTime('UTC') COMMENT 'start of the minute (UTC) the events occurred in',
    events SimpleAggregateFunction(sum, UInt64) COMMENT 'accepted events',
    users AggregateFunction(uniqExact, String) COMMENT 'distinct non-empty user_key: uniqExactMerge(users)',
    errors SimpleAggregateFunction(sum, UInt64) COMMENT 'api_call status_code >= 500, deploy failed or rolled_back, model_training failed',
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')) COMMENT 'earliest occurred_at',
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')) COMMENT 'latest occurred_at',
    latency_ms AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64) COMMENT 'api_call latency sketch, 1% relative accuracy: quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(latency_ms)',
    latency_ms_sum SimpleAggregateFunction(sum, Float64) COMMENT 'api_call latency total (mean = latency_ms_sum / events)',
    statuses SimpleAggregateFunction(sumMap, Map(String, UInt64)) COMMENT 'deploy, model_training and incident events per data.status',
    production_deploys SimpleAggregateFunction(sum, UInt64) COMMENT 'deploys with environment production',
    production_failures SimpleAggregateFunction(sum, UInt64) COMMENT 'production deploys failed or rolled_back',
    models_registered SimpleAggregateFunction(sum, UInt64) COMMENT 'model_training with a registered_model',
    gpu_hours SimpleAggregateFunction(sum, Float64) COMMENT 'model_training gpu_hours',
    durations SimpleAggregateFunction(sum, UInt64) COMMENT 'events with a duration (see duration_s_sum)',
    duration_s_sum SimpleAggregateFunction(sum, Float64) COMMENT 'model_training duration_s, deploy occurred_at - started_at, incident resolved_at - opened_at',
    outcome_count SimpleAggregateFunction(sumMap, Map(String, UInt64)) COMMENT 'api_call data.outcome per ''name/decision'' (decision may be empty)',
    outcome_value SimpleAggregateFunction(sumMap, Map(String, Float64)) COMMENT 'sum of data.outcome.value per ''name/decision'''
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (event_type, capability, team, bucket)
TTL bucket + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS usage_hour AS usage_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (event_type, capability, team, bucket)
TTL bucket + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS usage_day AS usage_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (event_type, capability, team, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_minute_mv TO usage_minute AS
SELECT
    event_type,
    capability,
    team,
    toStartOfMinute(occurred_at) AS bucket,
    count() AS events,
    uniqExactStateIf(user_key, user_key != '') AS users,
    countIf(
        (event_type = 'api_call' AND d.status_code >= 500)
        OR (event_type = 'deploy' AND d.status IN ('failed', 'rolled_back'))
        OR (event_type = 'model_training' AND d.status = 'failed')
    ) AS errors,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen,
    quantilesDDStateIf(0.01, 0.5, 0.95, 0.99)(d.latency_ms, event_type = 'api_call') AS latency_ms,
    sumIf(d.latency_ms, event_type = 'api_call') AS latency_ms_sum,
    sumMapIf(map(d.status, toUInt64(1)), event_type != 'api_call' AND d.status != '') AS statuses,
    countIf(event_type = 'deploy' AND d.environment = 'production') AS production_deploys,
    countIf(
        event_type = 'deploy' AND d.environment = 'production'
        AND d.status IN ('failed', 'rolled_back')
    ) AS production_failures,
    countIf(event_type = 'model_training' AND d.registered_model != '') AS models_registered,
    sumIf(d.gpu_hours, event_type = 'model_training') AS gpu_hours,
    countIf(duration_s IS NOT NULL) AS durations,
    sum(ifNull(duration_s, 0)) AS duration_s_sum,
    sumMapIf(
        map(concat(d.outcome.name, '/', d.outcome.decision), toUInt64(1)),
        event_type = 'api_call' AND d.outcome.name != ''
    ) AS outcome_count,
    sumMapIf(
        map(concat(d.outcome.name, '/', d.outcome.decision), d.outcome.value),
        event_type = 'api_call' AND d.outcome.name != ''
    ) AS outcome_value
FROM
(
    SELECT
        event_type,
        capability,
        team,
        occurred_at,
        user_key,
        -- One parse of the body per row: every field any type needs, defaults where absent.
        JSONExtract(
            data,
            'Tuple(status_code Int64, latency_ms Float64, status String, environment String,
                   started_at String, duration_s Float64, gpu_hours Float64,
                   registered_model String, opened_at String, resolved_at String,
                   outcome Tuple(name String, decision String, value Float64))'
        ) AS d,
        multiIf(
            event_type = 'model_training', d.duration_s,
            event_type = 'deploy',
            dateDiff('millisecond', parseDateTime64BestEffortOrNull(d.started_at, 3, 'UTC'),
                     occurred_at) / 1000.0,
            event_type = 'incident',
            dateDiff('millisecond', parseDateTime64BestEffortOrNull(d.opened_at, 3, 'UTC'),
                     parseDateTime64BestEffortOrNull(d.resolved_at, 3, 'UTC')) / 1000.0,
            NULL
        ) AS duration_s
    FROM events
)
GROUP BY event_type, capability, team, bucket;

-- Coarser rollups merge the states of the finer one's inserted block.
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hour_mv TO usage_hour AS
SELECT
    event_type,
    capability,
    team,
    toStartOfHour(bucket) AS bucket,
    sum(events) AS events,
    uniqExactMergeState(users) AS users,
    sum(errors) AS errors,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
    sum(latency_ms_sum) AS latency_ms_sum,
    sumMap(statuses) AS statuses,
    sum(production_deploys) AS production_deploys,
    sum(production_failures) AS production_failures,
    sum(models_registered) AS models_registered,
    sum(gpu_hours) AS gpu_hours,
    sum(durations) AS durations,
    sum(duration_s_sum) AS duration_s_sum,
    sumMap(outcome_count) AS outcome_count,
    sumMap(outcome_value) AS outcome_value
FROM usage_minute
GROUP BY event_type, capability, team, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_day_mv TO usage_day AS
SELECT
    event_type,
    capability,
    team,
    toStartOfDay(bucket) AS bucket,
    sum(events) AS events,
    uniqExactMergeState(users) AS users,
    sum(errors) AS errors,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
    sum(latency_ms_sum) AS latency_ms_sum,
    sumMap(statuses) AS statuses,
    sum(production_deploys) AS production_deploys,
    sum(production_failures) AS production_failures,
    sum(models_registered) AS models_registered,
    sum(gpu_hours) AS gpu_hours,
    sum(durations) AS durations,
    sum(duration_s_sum) AS duration_s_sum,
    sumMap(outcome_count) AS outcome_count,
    sumMap(outcome_value) AS outcome_value
FROM usage_hour
GROUP BY event_type, capability, team, bucket;

-- Facts: one row per event, ReplacingMergeTree on a key ending with event_id (an event the
-- sink somehow wrote twice folds into one row; read with FINAL for exact counts).
-- Nullable only where no default serves: a lead time of 0 for a deploy without commits, or a
-- time to restore of 0 for an incident still open, would bias every median.

CREATE TABLE IF NOT EXISTS deployments
(
    deployment_id String,
    team LowCardinality(String),
    service LowCardinality(String),
    capability LowCardinality(String) COMMENT 'deploy-pipeline, or the tool a team used before it',
    environment LowCardinality(String),
    status LowCardinality(String) COMMENT 'succeeded | failed | rolled_back',
    deployed_at DateTime64(3, 'UTC') COMMENT 'occurred_at: when the deployment ended',
    started_at Nullable(DateTime64(3, 'UTC')),
    commit_times Array(DateTime64(3, 'UTC')) COMMENT 'committed_at of every commit shipped',
    first_commit_at Nullable(DateTime64(3, 'UTC')) COMMENT 'earliest commit; NULL without commits',
    lead_time_s Nullable(Float64) COMMENT 'deployed_at - first_commit_at (>= 0); NULL without commits',
    commit_lead_times_s Array(Float64) COMMENT 'deployed_at - committed_at of every commit (>= 0): DORA lead time for changes',
    user_key String,
    event_id UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(deployed_at)
ORDER BY (environment, team, deployed_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS deployments_mv TO deployments AS
SELECT
    d.deployment_id AS deployment_id,
    team,
    service,
    capability,
    d.environment AS environment,
    d.status AS status,
    occurred_at AS deployed_at,
    parseDateTime64BestEffortOrNull(d.started_at, 3, 'UTC') AS started_at,
    commit_times,
    if(empty(commit_times), NULL, arrayMin(commit_times)) AS first_commit_at,
    if(
        empty(commit_times),
        NULL,
        greatest(0, dateDiff('millisecond', arrayMin(commit_times), occurred_at) / 1000.0)
    ) AS lead_time_s,
    arrayMap(t -> greatest(0, dateDiff('millisecond', t, occurred_at) / 1000.0), commit_times)
        AS commit_lead_times_s,
    user_key,
    event_id
FROM
(
    SELECT
        *,
        JSONExtract(
            data,
            'Tuple(deployment_id String, environment String, status String, started_at String,
                   commits Array(Tuple(committed_at String)))'
        ) AS d,
        arrayMap(
            t -> assumeNotNull(t),
            arrayFilter(
                t -> t IS NOT NULL,
                arrayMap(c -> parseDateTime64BestEffortOrNull(c.committed_at, 3, 'UTC'), d.commits)
            )
        ) AS commit_times
    FROM events
    WHERE event_type = 'deploy'
);

CREATE TABLE IF NOT EXISTS model_trainings
(
    run_id String,
    team LowCardinality(String),
    service LowCardinality(String),
    capability LowCardinality(String),
    model String,
    status LowCardinality(String) COMMENT 'succeeded | failed | cancelled',
    started_at DateTime64(3, 'UTC') COMMENT 'finished_at - duration_s',
    finished_at DateTime64(3, 'UTC') COMMENT 'occurred_at: when the run ended',
    duration_s Float64,
    gpu_hours Float64,
    registered_model String COMMENT 'registry name; empty when the run registered no model',
    user_key String,
    event_id UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(finished_at)
ORDER BY (team, finished_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS model_trainings_mv TO model_trainings AS
SELECT
    d.run_id AS run_id,
    team,
    service,
    capability,
    d.model AS model,
    d.status AS status,
    occurred_at - toIntervalMillisecond(toInt64(round(d.duration_s * 1000))) AS started_at,
    occurred_at AS finished_at,
    d.duration_s AS duration_s,
    d.gpu_hours AS gpu_hours,
    d.registered_model AS registered_model,
    user_key,
    event_id
FROM
(
    SELECT
        *,
        JSONExtract(
            data,
            'Tuple(run_id String, model String, status String, duration_s Float64,
                   gpu_hours Float64, registered_model String)'
        ) AS d
    FROM events
    WHERE event_type = 'model_training'
);

-- Incidents: one row per incident event (an incident is usually reported when opened and again
-- when resolved, with the same incident_id); view `incident_restores` (0004) folds them.
CREATE TABLE IF NOT EXISTS incidents
(
    incident_id String,
    team LowCardinality(String),
    service LowCardinality(String),
    capability LowCardinality(String),
    severity LowCardinality(String),
    status LowCardinality(String) COMMENT 'opened | resolved',
    opened_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    time_to_restore_s Nullable(Float64) COMMENT 'resolved_at - opened_at; NULL while not resolved',
    caused_by_deployment String,
    reported_at DateTime64(3, 'UTC') COMMENT 'occurred_at of the event',
    event_id UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(opened_at)
ORDER BY (team, opened_at, incident_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS incidents_mv TO incidents AS
SELECT
    d.incident_id AS incident_id,
    team,
    service,
    capability,
    d.severity AS severity,
    d.status AS status,
    ifNull(parseDateTime64BestEffortOrNull(d.opened_at, 3, 'UTC'), occurred_at) AS opened_at,
    parseDateTime64BestEffortOrNull(d.resolved_at, 3, 'UTC') AS resolved_at,
    if(
        resolved_at IS NULL,
        NULL,
        greatest(0, dateDiff('millisecond', opened_at, resolved_at) / 1000.0)
    ) AS time_to_restore_s,
    d.caused_by_deployment AS caused_by_deployment,
    occurred_at AS reported_at,
    event_id
FROM
(
    SELECT
        *,
        JSONExtract(
            data,
            'Tuple(incident_id String, severity String, status String, opened_at String,
                   resolved_at String, caused_by_deployment String)'
        ) AS d
    FROM events
    WHERE event_type = 'incident'
);

-- api_call rows older than 90 days leave `events`; the rollups keep their history. Existing
-- parts are not rewritten now (that would be a mutation of the whole table): merges apply it.
ALTER TABLE events
    MODIFY TTL toDateTime(occurred_at) + INTERVAL 90 DAY DELETE WHERE event_type = 'api_call'
    SETTINGS materialize_ttl_after_modify = 0;
