-- Typed columns in `events`: the materialized views aggregate them without parsing JSON
-- (issue #15 item 3; docs/analysts.md lists the columns, docs/benchmarks.md "Typed columns"
-- measures the insert rate).
--
-- Each column holds the body field of the same name (`api` is data.api, `outcome_name` is
-- data.outcome.name, `commit_times` the parsed data.commits[].committed_at) for the event types
-- that have it, and the type's default (empty, 0, NULL, []) for the others. The worker's sink
-- sends every column from the decoded event (pipeline/sink/clickhouse.py), so its inserts parse
-- no JSON. Each DEFAULT computes the same value from `data`, for writers that only send `data`
-- (an INSERT ... SELECT, older workers) and for the rows stored before this migration: a part
-- without the column computes it when read, and a merge writes it. Existing parts are not
-- rewritten here (that would be a mutation of the whole table); to store the values at once,
-- run `ALTER TABLE events MATERIALIZE COLUMN <name>` per column. The times are Nullable like
-- the facts' (a missing started_at is not 1970).
--
-- Every view that parsed `data` is replaced by one reading the columns, with the same target
-- and the same content (0003 rollups and facts, 0008 usage_api_day, 0009 usage_user_day, 0015
-- feedback_responses). Apply it with the workers stopped, as every migration: an insert between
-- a DROP VIEW and its CREATE would not reach that view's target.

ALTER TABLE events
    ADD COLUMN IF NOT EXISTS api LowCardinality(String)
        DEFAULT JSONExtractString(data, 'api') COMMENT 'api_call: data.api',
    ADD COLUMN IF NOT EXISTS status_code UInt16
        DEFAULT toUInt16(JSONExtractInt(data, 'status_code')) COMMENT 'api_call: data.status_code',
    ADD COLUMN IF NOT EXISTS latency_ms Float64
        DEFAULT JSONExtractFloat(data, 'latency_ms') COMMENT 'api_call: data.latency_ms',
    ADD COLUMN IF NOT EXISTS outcome_name LowCardinality(String)
        DEFAULT JSONExtractString(data, 'outcome', 'name')
        COMMENT 'api_call: data.outcome.name (empty without an outcome)',
    ADD COLUMN IF NOT EXISTS outcome_decision LowCardinality(String)
        DEFAULT JSONExtractString(data, 'outcome', 'decision') COMMENT 'api_call: data.outcome.decision',
    ADD COLUMN IF NOT EXISTS outcome_value Float64
        DEFAULT JSONExtractFloat(data, 'outcome', 'value') COMMENT 'api_call: data.outcome.value',
    ADD COLUMN IF NOT EXISTS status LowCardinality(String)
        DEFAULT JSONExtractString(data, 'status')
        COMMENT 'deploy, model_training, incident: data.status',
    ADD COLUMN IF NOT EXISTS environment LowCardinality(String)
        DEFAULT JSONExtractString(data, 'environment') COMMENT 'deploy: data.environment',
    ADD COLUMN IF NOT EXISTS deployment_id String
        DEFAULT JSONExtractString(data, 'deployment_id') COMMENT 'deploy: data.deployment_id',
    ADD COLUMN IF NOT EXISTS started_at Nullable(DateTime64(3, 'UTC'))
        DEFAULT parseDateTime64BestEffortOrNull(JSONExtractString(data, 'started_at'), 3, 'UTC')
        COMMENT 'deploy: data.started_at (NULL when absent)',
    ADD COLUMN IF NOT EXISTS commit_times Array(DateTime64(3, 'UTC'))
        DEFAULT arrayMap(
            t -> assumeNotNull(t),
            arrayFilter(
                t -> t IS NOT NULL,
                arrayMap(
                    c -> parseDateTime64BestEffortOrNull(c, 3, 'UTC'),
                    JSONExtract(data, 'commits', 'Array(Tuple(committed_at String))').committed_at
                )
            )
        )
        COMMENT 'deploy: data.commits[].committed_at, in the order sent',
    ADD COLUMN IF NOT EXISTS run_id String
        DEFAULT JSONExtractString(data, 'run_id') COMMENT 'model_training: data.run_id',
    ADD COLUMN IF NOT EXISTS model String
        DEFAULT JSONExtractString(data, 'model') COMMENT 'model_training: data.model',
    ADD COLUMN IF NOT EXISTS duration_s Float64
        DEFAULT JSONExtractFloat(data, 'duration_s') COMMENT 'model_training: data.duration_s',
    ADD COLUMN IF NOT EXISTS gpu_hours Float64
        DEFAULT JSONExtractFloat(data, 'gpu_hours') COMMENT 'model_training: data.gpu_hours',
    ADD COLUMN IF NOT EXISTS registered_model String
        DEFAULT JSONExtractString(data, 'registered_model')
        COMMENT 'model_training: data.registered_model (empty: none)',
    ADD COLUMN IF NOT EXISTS incident_id String
        DEFAULT JSONExtractString(data, 'incident_id') COMMENT 'incident: data.incident_id',
    ADD COLUMN IF NOT EXISTS severity LowCardinality(String)
        DEFAULT JSONExtractString(data, 'severity') COMMENT 'incident: data.severity',
    ADD COLUMN IF NOT EXISTS opened_at Nullable(DateTime64(3, 'UTC'))
        DEFAULT parseDateTime64BestEffortOrNull(JSONExtractString(data, 'opened_at'), 3, 'UTC')
        COMMENT 'incident: data.opened_at',
    ADD COLUMN IF NOT EXISTS resolved_at Nullable(DateTime64(3, 'UTC'))
        DEFAULT parseDateTime64BestEffortOrNull(JSONExtractString(data, 'resolved_at'), 3, 'UTC')
        COMMENT 'incident: data.resolved_at (NULL while not resolved)',
    ADD COLUMN IF NOT EXISTS caused_by_deployment String
        DEFAULT JSONExtractString(data, 'caused_by_deployment')
        COMMENT 'incident: data.caused_by_deployment (empty: none)',
    ADD COLUMN IF NOT EXISTS scale LowCardinality(String)
        DEFAULT JSONExtractString(data, 'scale') COMMENT 'feedback: data.scale (csat | nps)',
    ADD COLUMN IF NOT EXISTS score UInt8
        DEFAULT toUInt8(JSONExtractUInt(data, 'score')) COMMENT 'feedback: data.score',
    ADD COLUMN IF NOT EXISTS comment String
        DEFAULT JSONExtractString(data, 'comment') COMMENT 'feedback: data.comment (empty: none)';

DROP VIEW IF EXISTS usage_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_minute_mv TO usage_minute AS
SELECT
    event_type,
    capability,
    team,
    toStartOfMinute(occurred_at) AS bucket,
    count() AS events,
    uniqExactStateIf(user_key, user_key != '') AS users,
    countIf(
        (event_type = 'api_call' AND status_code >= 500)
        OR (event_type = 'deploy' AND status IN ('failed', 'rolled_back'))
        OR (event_type = 'model_training' AND status = 'failed')
    ) AS errors,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen,
    quantilesDDStateIf(0.01, 0.5, 0.95, 0.99)(row_latency_ms, event_type = 'api_call') AS latency_ms,
    sumIf(row_latency_ms, event_type = 'api_call') AS latency_ms_sum,
    sumMapIf(map(status, toUInt64(1)), event_type != 'api_call' AND status != '') AS statuses,
    countIf(event_type = 'deploy' AND environment = 'production') AS production_deploys,
    countIf(
        event_type = 'deploy' AND environment = 'production'
        AND status IN ('failed', 'rolled_back')
    ) AS production_failures,
    countIf(event_type = 'model_training' AND registered_model != '') AS models_registered,
    sumIf(row_gpu_hours, event_type = 'model_training') AS gpu_hours,
    countIf(elapsed_s IS NOT NULL) AS durations,
    sum(ifNull(elapsed_s, 0)) AS duration_s_sum,
    sumMapIf(
        map(concat(outcome_name, '/', outcome_decision), toUInt64(1)),
        event_type = 'api_call' AND outcome_name != ''
    ) AS outcome_count,
    sumMapIf(
        map(concat(outcome_name, '/', outcome_decision), row_outcome_value),
        event_type = 'api_call' AND outcome_name != ''
    ) AS outcome_value
FROM
(
    SELECT
        event_type,
        capability,
        team,
        occurred_at,
        user_key,
        status_code,
        -- Renamed: an output alias of the same name would hide the column in its aggregate.
        latency_ms AS row_latency_ms,
        status,
        environment,
        gpu_hours AS row_gpu_hours,
        registered_model,
        outcome_name,
        outcome_decision,
        outcome_value AS row_outcome_value,
        multiIf(
            event_type = 'model_training', duration_s,
            event_type = 'deploy', dateDiff('millisecond', started_at, occurred_at) / 1000.0,
            event_type = 'incident', dateDiff('millisecond', opened_at, resolved_at) / 1000.0,
            NULL
        ) AS elapsed_s
    FROM events
)
GROUP BY event_type, capability, team, bucket;

DROP VIEW IF EXISTS deployments_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS deployments_mv TO deployments AS
SELECT
    deployment_id,
    team,
    service,
    capability,
    environment,
    status,
    occurred_at AS deployed_at,
    started_at,
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
FROM events
WHERE event_type = 'deploy';

DROP VIEW IF EXISTS model_trainings_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS model_trainings_mv TO model_trainings AS
SELECT
    run_id,
    team,
    service,
    capability,
    model,
    status,
    occurred_at - toIntervalMillisecond(toInt64(round(duration_s * 1000))) AS started_at,
    occurred_at AS finished_at,
    duration_s,
    gpu_hours,
    registered_model,
    user_key,
    event_id
FROM events
WHERE event_type = 'model_training';

DROP VIEW IF EXISTS incidents_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS incidents_mv TO incidents AS
SELECT
    incident_id,
    team,
    service,
    capability,
    severity,
    status,
    ifNull(events.opened_at, occurred_at) AS opened_at,
    events.resolved_at AS resolved_at,
    if(
        events.resolved_at IS NULL,
        NULL,
        greatest(0, dateDiff('millisecond', ifNull(events.opened_at, occurred_at),
                             events.resolved_at) / 1000.0)
    ) AS time_to_restore_s,
    caused_by_deployment,
    occurred_at AS reported_at,
    event_id
FROM events
WHERE event_type = 'incident';

DROP VIEW IF EXISTS usage_api_day_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_api_day_mv TO usage_api_day AS
SELECT
    team,
    capability,
    event_type,
    if(event_type = 'api_call', events.api, '') AS api,
    toDate(occurred_at, 'UTC') AS day,
    count() AS events,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen
FROM events
GROUP BY team, capability, event_type, api, day;

DROP VIEW IF EXISTS usage_user_day_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_user_day_mv TO usage_user_day AS
SELECT
    user_key,
    capability,
    event_type,
    if(event_type = 'api_call', events.api, '') AS api,
    toDate(occurred_at, 'UTC') AS day
FROM events
WHERE user_key != ''
GROUP BY user_key, capability, event_type, api, day;

CREATE OR REPLACE VIEW feedback_responses
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    month Date COMMENT 'first day of the UTC month of occurred_at',
    capability String COMMENT 'the capability rated',
    team String,
    service String,
    user_key String COMMENT 'the respondent: keyed BLAKE2b-128 of the user id, never the raw id; empty when the event named no user',
    scale String COMMENT 'csat (1-5) or nps (0-10)',
    score UInt8,
    comment String COMMENT 'free text, at most 1,000 characters; empty when none was given',
    source String
)
AS
SELECT
    event_id,
    occurred_at,
    toStartOfMonth(occurred_at) AS month,
    capability,
    team,
    service,
    user_key,
    scale,
    score,
    comment,
    source
FROM events FINAL
WHERE event_type = 'feedback'
COMMENT 'Every developer feedback response, one row per event, with its pseudonymous respondent and comment';
