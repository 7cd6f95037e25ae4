-- Adoption lifecycle per team × capability (docs/lifecycle.md).
--
-- The worker's lifecycle agent (pipeline/lifecycle/) keeps the state in a faust table and
-- writes milestones and the current lifecycle here. Milestones are computed in event time from
-- the set of days a team used a capability, so a replay writes the same rows again: they fold
-- by key. Query both tables with FINAL (or through the views below).

-- One row per milestone. A late event can show that a milestone written earlier did not
-- happen (a churn it fills in, a first use it precedes): the worker then writes the same key
-- with retracted = 1, which FINAL drops. detected_at is when the worker (last) wrote the row.
CREATE TABLE IF NOT EXISTS adoption_milestones
(
    team LowCardinality(String) COMMENT 'the resolved team (events.team)',
    capability LowCardinality(String),
    milestone LowCardinality(String) COMMENT 'first_use | activated | churned | reactivated',
    occurred_at Date COMMENT 'the UTC event-time day of the milestone (a churn: the last of the idle days)',
    episode UInt16 COMMENT '1 for the first adoption, +1 with every reactivation',
    retracted UInt8 COMMENT '1: no longer holds after late events; hidden by FINAL',
    detected_at DateTime64(3, 'UTC') COMMENT 'when the worker wrote the row (the row version)'
)
ENGINE = ReplacingMergeTree(detected_at, retracted)
ORDER BY (team, capability, milestone, occurred_at);

-- The current lifecycle, one row per team × capability (the newest row wins).
CREATE TABLE IF NOT EXISTS adoption_lifecycle
(
    team LowCardinality(String),
    capability LowCardinality(String),
    state LowCardinality(String) COMMENT 'the latest milestone: first_use | activated | churned | reactivated',
    state_since Date COMMENT 'the day of that milestone',
    first_use Date,
    activated_at Date COMMENT 'the first activation; 1970-01-01: never activated',
    churned_at Date COMMENT 'the latest churn; 1970-01-01: never churned',
    last_active Date,
    episode UInt16 COMMENT '1 for the first adoption, +1 with every reactivation',
    active_days UInt32 COMMENT 'distinct active days since the first use',
    updated_at DateTime64(3, 'UTC') COMMENT 'when the worker wrote the row (the row version)'
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (team, capability);

-- The days each team used each capability, from every event written to `events` (a replay
-- folds: the key is the whole row). "Active in the last 7 / 28 days" is counted from these.
CREATE TABLE IF NOT EXISTS adoption_active_days
(
    team LowCardinality(String),
    capability LowCardinality(String),
    day Date COMMENT 'UTC day of occurred_at'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (team, capability, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS adoption_active_days_mv TO adoption_active_days AS
SELECT team, capability, toDate(occurred_at, 'UTC') AS day
FROM events
GROUP BY team, capability, day;

-- Milestones that hold now (retracted ones left out).
CREATE VIEW IF NOT EXISTS adoption_milestones_current AS
SELECT team, capability, milestone, occurred_at, episode, detected_at
FROM adoption_milestones FINAL
WHERE retracted = 0;

-- The lifecycle with activity in the last 7 and 28 days, counted in event time: as_of is the
-- newest day with any activity, so a replay or a backfill shows the same numbers.
CREATE VIEW IF NOT EXISTS adoption_lifecycle_current AS
WITH (SELECT max(day) FROM adoption_active_days) AS as_of
SELECT
    l.team AS team,
    l.capability AS capability,
    l.state AS state,
    l.state_since AS state_since,
    l.first_use AS first_use,
    l.activated_at AS activated_at,
    l.activated_at != toDate('1970-01-01') AS ever_activated,
    l.churned_at AS churned_at,
    l.last_active AS last_active,
    l.episode AS episode,
    l.active_days AS active_days,
    a.active_days_7 AS active_days_7,
    a.active_days_28 AS active_days_28,
    a.active_days_7 > 0 AS active_7d,
    a.active_days_28 > 0 AS active_28d,
    as_of
FROM (SELECT * FROM adoption_lifecycle FINAL) AS l
LEFT JOIN
(
    SELECT
        team,
        capability,
        uniqExactIf(day, day > as_of - 7) AS active_days_7,
        uniqExact(day) AS active_days_28
    FROM adoption_active_days
    WHERE day > as_of - 28
    GROUP BY team, capability
) AS a USING (team, capability);

-- Per capability: how many teams reached each stage, and where they are now.
CREATE VIEW IF NOT EXISTS adoption_funnel AS
SELECT
    capability,
    count() AS teams_used,
    countIf(ever_activated) AS teams_activated,
    countIf(active_28d) AS teams_active_28d,
    countIf(active_7d) AS teams_active_7d,
    countIf(state = 'churned') AS teams_churned_now,
    countIf(episode > 1) AS teams_reactivated,
    any(as_of) AS as_of
FROM adoption_lifecycle_current
GROUP BY capability;
