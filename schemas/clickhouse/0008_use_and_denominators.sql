-- One definition of use and one denominator (docs/analysts.md, "Use and denominators").
--
-- Use: an event counts as use of its capability when its event type is one of the capability's
-- event_types in capability_catalog and, for api_call, its data.api is one of the catalog's
-- apis (any API when apis is empty; any type for an undeclared capability): the rule of
-- pipeline/catalog/capabilities.py (Capability.counts_as_use), applied when the views are read,
-- so a catalog change applies to the whole history kept. The rollups (0003) do not keep the
-- API, hence usage_api_day. It is fed from the events written after this migration: to count
-- older events, run once with the worker stopped
--   INSERT INTO usage_api_day SELECT team, capability, event_type,
--     if(event_type = 'api_call', JSONExtractString(data, 'api'), ''), toDate(occurred_at),
--     count(), min(occurred_at), max(occurred_at) FROM events GROUP BY 1, 2, 3, 4, 5
-- (api_call rows leave `events` after 90 days).
--
-- Denominator: a capability's target teams as they were on each day: the catalog's target
-- list (today's, groups expanded when written) restricted to the leaf teams the team catalog
-- says existed that day; every leaf team of that day when the list is empty.

CREATE TABLE IF NOT EXISTS usage_api_day
(
    team LowCardinality(String),
    capability LowCardinality(String),
    event_type LowCardinality(String),
    api LowCardinality(String) COMMENT 'data.api of api_call events; empty for other types',
    day Date COMMENT 'UTC day of occurred_at',
    events SimpleAggregateFunction(sum, UInt64),
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (capability, team, event_type, api, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_api_day_mv TO usage_api_day AS
SELECT
    team,
    capability,
    event_type,
    if(event_type = 'api_call', JSONExtractString(data, 'api'), '') AS api,
    toDate(occurred_at, 'UTC') AS day,
    count() AS events,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen
FROM events
GROUP BY team, capability, event_type, api, day;

CREATE VIEW IF NOT EXISTS capability_use_days
(
    team String,
    capability String,
    day Date,
    events UInt64 COMMENT 'events that count as use',
    first_seen DateTime64(3, 'UTC')
)
AS
SELECT
    u.team AS team,
    u.capability AS capability,
    u.day AS day,
    sum(u.events) AS events,
    min(u.first_seen) AS first_seen
FROM usage_api_day AS u
LEFT JOIN (SELECT name, event_types, apis FROM capability_catalog FINAL) AS c
    ON c.name = u.capability
WHERE (empty(c.event_types) OR has(c.event_types, u.event_type))
  AND (u.event_type != 'api_call' OR empty(c.apis) OR has(c.apis, u.api))
GROUP BY team, capability, day
COMMENT 'The days each team used each capability, by the catalog''s event_types and apis';

CREATE VIEW IF NOT EXISTS catalog_team_days
(
    team String COMMENT 'a leaf team (a group that is never a parent)',
    day Date
)
AS
WITH
    (SELECT min(day) FROM usage_api_day) AS first_day,
    (SELECT max(day) FROM usage_api_day) AS last_day,
    rows AS
    (
        SELECT name, valid_from, valid_to
        FROM team_catalog FINAL
        WHERE kind = 'team' AND retracted = 0
          AND name NOT IN (SELECT parent FROM team_catalog FINAL WHERE kind = 'team' AND parent != '')
    )
SELECT DISTINCT
    name AS team,
    arrayJoin(
        arrayMap(
            i -> greatest(toDate(valid_from), first_day) + i,
            range(toUInt32(greatest(0, dateDiff('day',
                greatest(toDate(valid_from), first_day),
                least(toDate(valid_to - toIntervalMillisecond(1)), last_day)) + 1)))
        )
    ) AS day
FROM rows
COMMENT 'The leaf teams the team catalog says existed on each day of the data';

CREATE VIEW IF NOT EXISTS capability_targets_daily
(
    capability String,
    day Date,
    target_teams Array(String) COMMENT 'the target teams that existed that day',
    targets UInt64 COMMENT 'the denominator of that day''s adoption and active rates'
)
AS
SELECT
    c.name AS capability,
    d.day AS day,
    if(empty(c.target_teams), d.teams, arrayFilter(t -> has(d.teams, t), c.target_teams))
        AS target_teams,
    length(target_teams) AS targets
FROM (SELECT name, target_teams FROM capability_catalog FINAL WHERE declared = 1) AS c
CROSS JOIN (SELECT day, groupArray(team) AS teams FROM catalog_team_days GROUP BY day) AS d
COMMENT 'Each declared capability''s target teams as they were on each day';

CREATE VIEW IF NOT EXISTS adoption_rates_daily
(
    capability String,
    day Date,
    target_teams UInt64 COMMENT 'the target teams that existed that day (the denominator)',
    adopted_target_teams UInt64 COMMENT 'of them, teams with a first use on or before the day',
    active_target_teams_28d UInt64 COMMENT 'of them, teams that used it in the 28 days ending that day',
    adoption_rate Nullable(Float64) COMMENT 'cumulative: adopted_target_teams / target_teams',
    active_rate_28d Nullable(Float64) COMMENT 'active_target_teams_28d / target_teams: falls after churn'
)
AS
WITH
    firsts AS
    (
        SELECT capability, mapFromArrays(groupArray(team), groupArray(first_day)) AS first_use
        FROM (SELECT capability, team, min(day) AS first_day FROM capability_use_days GROUP BY capability, team)
        GROUP BY capability
    ),
    active AS
    (
        SELECT capability, day + n AS on_day, groupUniqArray(team) AS teams
        FROM capability_use_days
        ARRAY JOIN range(28) AS n
        GROUP BY capability, on_day
    )
SELECT
    t.capability AS capability,
    t.day AS day,
    t.targets AS target_teams,
    arrayCount(x -> mapContains(f.first_use, x) AND f.first_use[x] <= t.day, t.target_teams)
        AS adopted_target_teams,
    arrayCount(x -> has(a.teams, x), t.target_teams) AS active_target_teams_28d,
    if(t.targets = 0, NULL, adopted_target_teams / t.targets) AS adoption_rate,
    if(t.targets = 0, NULL, active_target_teams_28d / t.targets) AS active_rate_28d
FROM capability_targets_daily AS t
LEFT JOIN firsts AS f ON f.capability = t.capability
LEFT JOIN active AS a ON a.capability = t.capability AND a.on_day = t.day
COMMENT 'Per capability and day: cumulative adoption and the 28-day active rate, both over the target teams of that day';
