-- Adoption by the seed's dimensions (docs/analysts.md, "Adoption by platform, group and
-- developer"): platform type (capability_catalog.platform), organisation unit (the Backstage
-- group hierarchy of team_catalog) and developer (the team catalog's memberships). All use the
-- definition of use and the daily denominator of 0008.

-- Every target team of every declared capability on every day, with its state that day.
CREATE VIEW IF NOT EXISTS adoption_target_days
(
    capability String,
    day Date,
    team String,
    adopted UInt8 COMMENT 'first use on or before the day',
    active_28d UInt8 COMMENT 'used it in the 28 days ending that day'
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
    team,
    mapContains(f.first_use, team) AND f.first_use[team] <= t.day AS adopted,
    has(a.teams, team) AS active_28d
FROM capability_targets_daily AS t
ARRAY JOIN t.target_teams AS team
LEFT JOIN firsts AS f ON f.capability = t.capability
LEFT JOIN active AS a ON a.capability = t.capability AND a.on_day = t.day
COMMENT 'Each declared capability''s target teams of each day, adopted or not and active in 28 days or not';

CREATE VIEW IF NOT EXISTS adoption_by_platform
(
    platform String COMMENT 'developer-infrastructure | data-ml | business-capability',
    day Date,
    capabilities UInt64,
    target_pairs UInt64 COMMENT 'target (team, capability) pairs of the platform''s capabilities that day',
    adopted_pairs UInt64,
    active_pairs_28d UInt64,
    adoption_rate Nullable(Float64) COMMENT 'adopted_pairs / target_pairs',
    active_rate_28d Nullable(Float64) COMMENT 'active_pairs_28d / target_pairs'
)
AS
SELECT
    c.platform AS platform,
    d.day AS day,
    uniqExact(d.capability) AS capabilities,
    count() AS target_pairs,
    countIf(d.adopted) AS adopted_pairs,
    countIf(d.active_28d) AS active_pairs_28d,
    if(target_pairs = 0, NULL, adopted_pairs / target_pairs) AS adoption_rate,
    if(target_pairs = 0, NULL, active_pairs_28d / target_pairs) AS active_rate_28d
FROM adoption_target_days AS d
INNER JOIN (SELECT name, platform FROM capability_catalog FINAL WHERE declared = 1) AS c
    ON c.name = d.capability
GROUP BY platform, day
COMMENT 'Adoption per platform type and day over the target (team, capability) pairs of its capabilities';

-- The groups above each team today (up to six levels).
CREATE VIEW IF NOT EXISTS team_groups
(
    team String,
    groups Array(String) COMMENT 'its parent group, that group''s parent, ... up to the root'
)
AS
WITH current AS
(
    SELECT name, parent
    FROM team_catalog FINAL
    WHERE kind = 'team' AND retracted = 0 AND valid_from <= now64(3) AND now64(3) < valid_to
)
SELECT
    c1.name AS team,
    arrayFilter(g -> g != '', [c1.parent, c2.parent, c3.parent, c4.parent, c5.parent, c6.parent])
        AS groups
FROM current AS c1
LEFT JOIN current AS c2 ON c2.name = c1.parent
LEFT JOIN current AS c3 ON c3.name = c2.parent
LEFT JOIN current AS c4 ON c4.name = c3.parent
LEFT JOIN current AS c5 ON c5.name = c4.parent
LEFT JOIN current AS c6 ON c6.name = c5.parent
COMMENT 'Each team''s ancestor groups in today''s group hierarchy';

CREATE VIEW IF NOT EXISTS adoption_by_group
(
    group_name String COMMENT 'a group of the hierarchy: counts every target team under it, at any depth',
    capability String,
    day Date,
    target_teams UInt64,
    adopted_target_teams UInt64,
    active_target_teams_28d UInt64,
    adoption_rate Nullable(Float64),
    active_rate_28d Nullable(Float64)
)
AS
SELECT
    group_name,
    d.capability AS capability,
    d.day AS day,
    count() AS target_teams,
    countIf(d.adopted) AS adopted_target_teams,
    countIf(d.active_28d) AS active_target_teams_28d,
    if(target_teams = 0, NULL, adopted_target_teams / target_teams) AS adoption_rate,
    if(target_teams = 0, NULL, active_target_teams_28d / target_teams) AS active_rate_28d
FROM adoption_target_days AS d
INNER JOIN team_groups AS g ON g.team = d.team
ARRAY JOIN g.groups AS group_name
GROUP BY group_name, capability, day
COMMENT 'Adoption per organisation unit (group of the Backstage hierarchy, today''s tree), capability and day';

-- Developer level: who used what, per pseudonymous user and day.
CREATE TABLE IF NOT EXISTS usage_user_day
(
    user_key String COMMENT 'the pseudonym of events.user_key',
    capability LowCardinality(String),
    event_type LowCardinality(String),
    api LowCardinality(String) COMMENT 'data.api of api_call events; empty for other types',
    day Date
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (capability, event_type, api, user_key, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_user_day_mv TO usage_user_day AS
SELECT
    user_key,
    capability,
    event_type,
    if(event_type = 'api_call', JSONExtractString(data, 'api'), '') AS api,
    toDate(occurred_at, 'UTC') AS day
FROM events
WHERE user_key != ''
GROUP BY user_key, capability, event_type, api, day;

CREATE VIEW IF NOT EXISTS developer_adoption_weekly
(
    team String,
    capability String,
    week Date COMMENT 'Monday; members and activity as of its Sunday (or the newest day)',
    members UInt64 COMMENT 'the team''s members in the team catalog that day',
    active_members_28d UInt64 COMMENT 'members with use of the capability in the 28 days ending that day',
    active_member_share Nullable(Float64) COMMENT 'active_members_28d / members'
)
AS
WITH
    (SELECT max(day) FROM usage_user_day) AS last_day,
    uses AS
    (
        SELECT DISTINCT u.user_key AS user_key, u.capability AS capability, u.day AS day
        FROM usage_user_day AS u
        LEFT JOIN (SELECT name, event_types, apis FROM capability_catalog FINAL) AS c
            ON c.name = u.capability
        WHERE (empty(c.event_types) OR has(c.event_types, u.event_type))
          AND (u.event_type != 'api_call' OR empty(c.apis) OR has(c.apis, u.api))
    ),
    active AS
    (
        SELECT capability, week, groupUniqArray(user_key) AS users
        FROM uses
        ARRAY JOIN arrayMap(i -> toMonday(day) + 7 * i, range(5)) AS week
        WHERE day <= least(week + 6, last_day) AND day > least(week + 6, last_day) - 28
        GROUP BY capability, week
    ),
    weeks AS (SELECT DISTINCT toMonday(day) AS week FROM usage_user_day),
    members AS
    (
        SELECT m.team AS team, w.week AS week, groupUniqArray(m.name) AS users
        FROM (SELECT name, team, valid_from, valid_to FROM team_catalog FINAL
              WHERE kind = 'user' AND retracted = 0) AS m
        CROSS JOIN weeks AS w
        WHERE toDate(m.valid_from) <= least(w.week + 6, last_day)
          AND m.valid_to > toDateTime64(least(w.week + 6, last_day), 3, 'UTC') + INTERVAL 1 DAY - INTERVAL 1 MILLISECOND
        GROUP BY team, week
    )
SELECT
    m.team AS team,
    a.capability AS capability,
    m.week AS week,
    length(m.users) AS members,
    arrayCount(x -> has(a.users, x), m.users) AS active_members_28d,
    if(members = 0, NULL, active_members_28d / members) AS active_member_share
FROM members AS m
INNER JOIN active AS a ON a.week = m.week
COMMENT 'Developer-level adoption: the share of each team''s members who used each capability in the 28 days ending each week';
