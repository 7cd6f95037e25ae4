-- One definition of use and one denominator for the older adoption views too (issue #17;
-- docs/analysts.md, "Use and denominators").
--
-- The views of 0004 and 0005 counted use by event type only (usage_day keeps no API) and divided
-- by today's target lists. Every one of them is redefined here, with its columns unchanged, on
-- the two views of 0008:
-- - use: capability_use_days (the catalog's event_types and, for api_call, its apis);
-- - denominator: capability_targets_daily (a capability's target teams as they were that day),
--   and for an undeclared capability every leaf team of that day (as capability_targets gave
--   every team of today): the view capability_targets_daily_all.
--
-- adoption_active_days (0005) stays as it is, filled by its materialized view from every event
-- whatever its type or API: no view reads it any more. "Active in the last 7 / 28 days" of
-- adoption_lifecycle_current (and so adoption_funnel) is counted from capability_use_days.

CREATE OR REPLACE VIEW capability_targets_daily_all
(
    capability String,
    day Date,
    declared UInt8 COMMENT '1 when declared in the capability catalog',
    target_teams Array(String) COMMENT 'the target teams that existed that day (every leaf team for an undeclared capability)',
    targets UInt64 COMMENT 'the denominator of that day''s adoption and active rates'
)
AS
SELECT capability, day, toUInt8(1) AS declared, target_teams, targets
FROM capability_targets_daily
UNION ALL
SELECT
    u.capability AS capability,
    d.day AS day,
    toUInt8(0) AS declared,
    d.teams AS target_teams,
    toUInt64(length(d.teams)) AS targets
FROM
(
    SELECT DISTINCT capability FROM capability_use_days
    WHERE capability NOT IN (SELECT name FROM capability_catalog FINAL WHERE declared = 1)
) AS u
CROSS JOIN (SELECT day, groupArray(team) AS teams FROM catalog_team_days GROUP BY day) AS d
COMMENT 'capability_targets_daily, and for every undeclared capability seen in use every leaf team of each day';

-- usage_day rows of the event types that count as use, on the days the team used the capability
-- by the full rule. The rollup keeps no API: on a day with a counted call, an api_call row also
-- holds that day's calls of other APIs (its events, users, errors and latencies include them);
-- on a day with only calls of other APIs the row is left out.
CREATE OR REPLACE VIEW usage_day_counted
AS
SELECT u.*
FROM usage_day AS u
LEFT JOIN (SELECT name, event_types FROM capability_catalog FINAL) AS c ON c.name = u.capability
WHERE (empty(c.event_types) OR has(c.event_types, u.event_type))
  AND (u.team, u.capability, toDate(u.bucket))
      IN (SELECT team, capability, day FROM capability_use_days)
COMMENT 'usage_day rows that count as use of their capability (states not finalized): event types by the catalog, days of use by capability_use_days';

CREATE OR REPLACE VIEW adoption_first_use
(
    team String,
    capability String,
    first_used_at DateTime64(3, 'UTC') COMMENT 'the team''s first use of the capability (exact)',
    first_use_day Date,
    launched_at DateTime64(3, 'UTC') COMMENT 'the capability''s first use by any team',
    days_since_launch Float64 COMMENT 'time to first use: first_used_at - launched_at, in days',
    adoption_order UInt64 COMMENT '1 for the first team to use it, 2 for the next, ...',
    is_target UInt8 COMMENT '1 when the team was one of the capability''s target teams on first_use_day'
)
AS
SELECT
    f.team AS team,
    f.capability AS capability,
    f.first_used_at AS first_used_at,
    toDate(f.first_used_at) AS first_use_day,
    min(f.first_used_at) OVER (PARTITION BY f.capability) AS launched_at,
    dateDiff('millisecond', launched_at, f.first_used_at) / 86400000 AS days_since_launch,
    row_number() OVER (PARTITION BY f.capability ORDER BY f.first_used_at, f.team) AS adoption_order,
    toUInt8(has(t.target_teams, f.team)) AS is_target
FROM
(
    SELECT team, capability, min(first_seen) AS first_used_at
    FROM capability_use_days
    GROUP BY team, capability
) AS f
LEFT JOIN capability_targets_daily_all AS t
    ON t.capability = f.capability AND t.day = toDate(f.first_used_at)
COMMENT 'When each team first used each capability (capability_use_days), and how long after the capability''s first use by anyone';

CREATE OR REPLACE VIEW adoption_daily
(
    capability String,
    day Date,
    active_teams UInt64 COMMENT 'teams that used it that day (any team)',
    active_target_teams UInt64 COMMENT 'target teams of that day that used it that day',
    new_adopters UInt64 COMMENT 'teams whose first use was that day',
    adopted_teams UInt64 COMMENT 'teams with a first use on or before the day',
    adopted_target_teams UInt64 COMMENT 'target teams of that day with a first use on or before the day',
    target_teams UInt64 COMMENT 'capability_targets_daily_all.targets: the target teams that existed that day',
    active_rate Nullable(Float64) COMMENT 'active_target_teams / target_teams: falls when teams stop using it',
    adoption_rate Nullable(Float64) COMMENT 'cumulative: adopted_target_teams / target_teams'
)
AS
WITH
    (SELECT max(day) FROM usage_api_day) AS last_day,
    firsts AS
    (
        SELECT capability, team, min(day) AS first_day
        FROM capability_use_days
        GROUP BY capability, team
    ),
    grid AS
    (
        SELECT
            capability,
            arrayJoin(
                arrayMap(i -> launch + i, range(toUInt32(dateDiff('day', launch, last_day)) + 1))
            ) AS day
        FROM (SELECT capability, min(first_day) AS launch FROM firsts GROUP BY capability)
    ),
    used AS
    (
        SELECT capability, day, groupUniqArray(team) AS teams
        FROM capability_use_days
        GROUP BY capability, day
    ),
    adopters AS
    (
        SELECT capability, first_day AS day, count() AS teams
        FROM firsts
        GROUP BY capability, day
    ),
    first_map AS
    (
        SELECT capability, mapFromArrays(groupArray(team), groupArray(first_day)) AS first_use
        FROM firsts
        GROUP BY capability
    )
SELECT
    g.capability AS capability,
    g.day AS day,
    toUInt64(length(u.teams)) AS active_teams,
    toUInt64(arrayCount(x -> has(t.target_teams, x), u.teams)) AS active_target_teams,
    n.teams AS new_adopters,
    sum(n.teams) OVER (PARTITION BY g.capability ORDER BY g.day ROWS UNBOUNDED PRECEDING)
        AS adopted_teams,
    toUInt64(arrayCount(
        x -> mapContains(f.first_use, x) AND f.first_use[x] <= g.day, t.target_teams
    )) AS adopted_target_teams,
    t.targets AS target_teams,
    if(t.targets = 0, NULL, active_target_teams / t.targets) AS active_rate,
    if(t.targets = 0, NULL, adopted_target_teams / t.targets) AS adoption_rate
FROM grid AS g
LEFT JOIN used AS u ON u.capability = g.capability AND u.day = g.day
LEFT JOIN adopters AS n ON n.capability = g.capability AND n.day = g.day
LEFT JOIN first_map AS f ON f.capability = g.capability
LEFT JOIN capability_targets_daily_all AS t ON t.capability = g.capability AND t.day = g.day
COMMENT 'Adoption per capability and day (capability_use_days over the target teams of each day), from the capability''s first use to the newest data';

-- A week's denominator: the target teams of its last day (of the newest day with data, for the
-- current week).
CREATE OR REPLACE VIEW adoption_weekly
(
    capability String,
    week Date COMMENT 'Monday',
    active_teams UInt64 COMMENT 'teams that used it that week (any team)',
    active_target_teams UInt64 COMMENT 'target teams (at the end of the week) that used it that week',
    new_adopters UInt64 COMMENT 'teams whose first use was that week',
    adopted_teams UInt64 COMMENT 'teams with a first use before the end of the week',
    adopted_target_teams UInt64 COMMENT 'target teams (at the end of the week) with a first use before the end of the week',
    target_teams UInt64 COMMENT 'the target teams that existed on the week''s last day with data',
    active_rate Nullable(Float64) COMMENT 'active_target_teams / target_teams: falls when teams stop using it',
    adoption_rate Nullable(Float64) COMMENT 'cumulative: adopted_target_teams / target_teams'
)
AS
WITH
    (SELECT max(day) FROM usage_api_day) AS last_day,
    firsts AS
    (
        SELECT capability, team, min(day) AS first_day
        FROM capability_use_days
        GROUP BY capability, team
    ),
    grid AS
    (
        SELECT
            capability,
            arrayJoin(
                arrayMap(
                    i -> launch + 7 * i,
                    range(toUInt32(dateDiff('week', launch, toMonday(last_day))) + 1)
                )
            ) AS week,
            least(week + 6, last_day) AS end_day
        FROM
        (
            SELECT capability, toMonday(min(first_day)) AS launch
            FROM firsts
            GROUP BY capability
        )
    ),
    used AS
    (
        SELECT capability, toMonday(day) AS week, groupUniqArray(team) AS teams
        FROM capability_use_days
        GROUP BY capability, week
    ),
    adopters AS
    (
        SELECT capability, toMonday(first_day) AS week, count() AS teams
        FROM firsts
        GROUP BY capability, week
    ),
    first_map AS
    (
        SELECT capability, mapFromArrays(groupArray(team), groupArray(first_day)) AS first_use
        FROM firsts
        GROUP BY capability
    )
SELECT
    g.capability AS capability,
    g.week AS week,
    toUInt64(length(u.teams)) AS active_teams,
    toUInt64(arrayCount(x -> has(t.target_teams, x), u.teams)) AS active_target_teams,
    n.teams AS new_adopters,
    sum(n.teams) OVER (PARTITION BY g.capability ORDER BY g.week ROWS UNBOUNDED PRECEDING)
        AS adopted_teams,
    toUInt64(arrayCount(
        x -> mapContains(f.first_use, x) AND f.first_use[x] <= g.end_day, t.target_teams
    )) AS adopted_target_teams,
    t.targets AS target_teams,
    if(t.targets = 0, NULL, active_target_teams / t.targets) AS active_rate,
    if(t.targets = 0, NULL, adopted_target_teams / t.targets) AS adoption_rate
FROM grid AS g
LEFT JOIN used AS u ON u.capability = g.capability AND u.week = g.week
LEFT JOIN adopters AS n ON n.capability = g.capability AND n.week = g.week
LEFT JOIN first_map AS f ON f.capability = g.capability
LEFT JOIN capability_targets_daily_all AS t ON t.capability = g.capability AND t.day = g.end_day
COMMENT 'Adoption per capability and week (Monday; capability_use_days over the target teams at the end of each week), from the capability''s first use to the newest data';

CREATE OR REPLACE VIEW team_breadth_weekly
(
    team String,
    week Date COMMENT 'Monday',
    capabilities UInt64 COMMENT 'breadth: capabilities the team used that week',
    declared_capabilities UInt64 COMMENT 'of which declared in the capability catalog',
    capability_list Array(String)
)
AS
SELECT
    u.team AS team,
    toMonday(u.day) AS week,
    uniqExact(u.capability) AS capabilities,
    uniqExactIf(u.capability, c.declared = 1) AS declared_capabilities,
    arraySort(groupUniqArray(u.capability)) AS capability_list
FROM capability_use_days AS u
LEFT JOIN (SELECT name, declared FROM capability_catalog FINAL) AS c ON c.name = u.capability
GROUP BY team, week
COMMENT 'Breadth of adoption: how many capabilities each team used per week (capability_use_days)';

CREATE OR REPLACE VIEW team_depth_weekly
(
    team String,
    capability String,
    week Date COMMENT 'Monday',
    events UInt64 COMMENT 'depth: events that count as use (capability_use_days)',
    users UInt64 COMMENT 'distinct users of the team that used it (usage_day_counted rows)',
    active_days UInt64 COMMENT 'days of the week with use',
    errors UInt64 COMMENT 'errors of the usage_day_counted rows'
)
AS
SELECT
    d.team AS team,
    d.capability AS capability,
    d.week AS week,
    d.events AS events,
    s.users AS users,
    d.active_days AS active_days,
    s.errors AS errors
FROM
(
    SELECT team, capability, toMonday(day) AS week, sum(events) AS events,
           uniqExact(day) AS active_days
    FROM capability_use_days
    GROUP BY team, capability, week
) AS d
LEFT JOIN
(
    SELECT team, capability, toMonday(bucket) AS week, uniqExactMerge(users) AS users,
           sum(errors) AS errors
    FROM usage_day_counted
    GROUP BY team, capability, week
) AS s ON s.team = d.team AND s.capability = d.capability AND s.week = d.week
COMMENT 'Depth of adoption: how much each team used each capability per week';

CREATE OR REPLACE VIEW adoption_retention
(
    capability String,
    cohort_week Date COMMENT 'Monday of the week of first use',
    weeks_since_adoption UInt32 COMMENT '0 is the week of first use',
    cohort_teams UInt64 COMMENT 'teams whose first use was in cohort_week',
    retained_teams UInt64 COMMENT 'of those, teams that used the capability in that week',
    retention Float64 COMMENT 'retained_teams / cohort_teams'
)
AS
WITH (SELECT toMonday(max(day)) FROM usage_api_day) AS last_week
SELECT
    f.capability AS capability,
    f.cohort_week AS cohort_week,
    f.offset AS weeks_since_adoption,
    count() AS cohort_teams,
    countIf(a.used = 1) AS retained_teams,
    retained_teams / cohort_teams AS retention
FROM
(
    SELECT
        team,
        capability,
        toMonday(first_use_day) AS cohort_week,
        arrayJoin(range(toUInt32(dateDiff('week', toMonday(first_use_day), last_week)) + 1))
            AS offset,
        cohort_week + 7 * offset AS week
    FROM adoption_first_use
) AS f
LEFT JOIN
(
    SELECT DISTINCT team, capability, toMonday(day) AS week, toUInt8(1) AS used
    FROM capability_use_days
) AS a ON a.team = f.team AND a.capability = f.capability AND a.week = f.week
GROUP BY capability, cohort_week, weeks_since_adoption
COMMENT 'Retention by adoption cohort: of the teams that first used a capability in a week, the share using it N weeks later';

-- as_of: the newest day with any event (usage_api_day), as adoption_active_days gave before.
CREATE OR REPLACE VIEW adoption_lifecycle_current AS
WITH (SELECT max(day) FROM usage_api_day) AS as_of
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
    FROM capability_use_days
    WHERE day > as_of - 28 AND day <= as_of
    GROUP BY team, capability
) AS a USING (team, capability);

-- adoption_funnel (0005) reads adoption_lifecycle_current: redefined unchanged so that the
-- migration names every view that follows the rule.
CREATE OR REPLACE VIEW adoption_funnel AS
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

-- dora_period_rows (0006): the capability scope pools the capability's target teams as they
-- were on the day of each row (capability_targets_daily_all), no longer today's list. A day the
-- daily targets do not cover (before the first day of usage_api_day) keeps today's list.
CREATE OR REPLACE VIEW dora_period_rows
AS
WITH rows AS
(
    SELECT
        team, 'deploy' AS kind, deployed_at AS at, deployed, status = 'failed' AS failed_attempt,
        change_failure, lead_times_s, recovery_time_s, CAST(NULL, 'Nullable(Float64)') AS restore_s
    FROM dora_deployments
    UNION ALL
    SELECT
        team, 'restore' AS kind, opened_at AS at, false, false, false, [],
        CAST(NULL, 'Nullable(Float64)'), time_to_restore_s
    FROM incident_restores
    WHERE time_to_restore_s IS NOT NULL
),
scoped AS
(
    SELECT 'team' AS scope, r.team AS team, '' AS capability, '' AS cohort,
           r.kind, r.at, r.deployed, r.failed_attempt, r.change_failure, r.lead_times_s, r.recovery_time_s,
           r.restore_s, r.team AS member
    FROM rows AS r
    UNION ALL
    SELECT 'org', '', '', '',
           r.kind, r.at, r.deployed, r.failed_attempt, r.change_failure, r.lead_times_s, r.recovery_time_s,
           r.restore_s, r.team AS member
    FROM rows AS r
    UNION ALL
    SELECT 'capability', '', t.capability,
           if(f.first_used_at IS NOT NULL AND f.first_used_at <= r.at, 'adopted', 'not_adopted'),
           r.kind, r.at, r.deployed, r.failed_attempt, r.change_failure, r.lead_times_s, r.recovery_time_s,
           r.restore_s, r.team AS member
    FROM rows AS r
    INNER JOIN
    (
        SELECT capability, arrayJoin(target_teams) AS team FROM capability_targets
    ) AS t ON t.team = r.team
    LEFT JOIN
    (
        SELECT capability, day, target_teams, toUInt8(1) AS covered
        FROM capability_targets_daily_all
    ) AS d ON d.capability = t.capability AND d.day = toDate(r.at)
    LEFT JOIN
    (
        SELECT team, capability, toNullable(first_used_at) AS first_used_at
        FROM adoption_first_use
    ) AS f ON f.team = r.team AND f.capability = t.capability
    WHERE d.covered = 0 OR has(d.target_teams, r.team)
)
SELECT
    s.*,
    p.1 AS period,
    p.2 AS period_start
FROM scoped AS s
ARRAY JOIN [('week', toMonday(s.at)), ('month', toStartOfMonth(s.at))] AS p
COMMENT 'Deployments and restored incidents per scope (team, org, capability × cohort: the capability''s target teams of the row''s day) and period grain: what dora_metrics_all aggregates';
