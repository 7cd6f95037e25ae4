-- Views for analysts: adoption, DORA per team, impact of adoption, ML platform, north stars.
-- docs/analysts.md documents every column, the definitions and example queries.
--
-- Conventions: days are UTC dates, weeks start on Monday (toMonday). Medians are exact
-- (quantileExactInclusive(0.5): the middle value, or the mean of the two middle values).
-- A figure that has nothing to be computed from is NULL, never 0. Facts are read with FINAL.
--
-- "Uses a capability": an event with that capability whose event type is one of the
-- capability's event_types in capability_catalog (any type for an undeclared capability).
-- The catalog's `apis` filter is not applied: the rollups do not keep the API.

-- The capabilities and the teams each is meant for.
CREATE VIEW IF NOT EXISTS capability_targets
(
    capability String COMMENT 'a declared capability, or one seen in events',
    declared UInt8 COMMENT '1 when declared in the capability catalog',
    target_teams Array(String) COMMENT 'capability_catalog.target_teams, or every team of catalog_teams when empty or undeclared',
    targets UInt64 COMMENT 'length(target_teams): the denominator of the adoption rate'
)
AS
SELECT
    n.capability AS capability,
    c.declared AS declared,
    if(empty(c.target_teams), (SELECT groupArray(team) FROM catalog_teams), c.target_teams)
        AS target_teams,
    length(target_teams) AS targets
FROM
(
    SELECT name AS capability FROM capability_catalog FINAL
    UNION DISTINCT
    SELECT DISTINCT capability FROM usage_day
) AS n
LEFT JOIN (SELECT name, declared, target_teams FROM capability_catalog FINAL) AS c
    ON c.name = n.capability
COMMENT 'Every capability with its target teams (the denominator of its adoption rate)';

-- usage_day rows that count as use of their capability, aggregate states kept.
CREATE VIEW IF NOT EXISTS usage_day_counted
AS
SELECT u.*
FROM usage_day AS u
LEFT JOIN (SELECT name, event_types FROM capability_catalog FINAL) AS c ON c.name = u.capability
WHERE empty(c.event_types) OR has(c.event_types, u.event_type)
COMMENT 'usage_day rows whose event type counts as use of their capability (states not finalized)';

CREATE VIEW IF NOT EXISTS usage_daily
(
    day Date,
    team String,
    capability String,
    event_type String,
    events UInt64 COMMENT 'accepted events',
    users UInt64 COMMENT 'distinct users (pseudonymous user_key), events without a user not counted',
    errors UInt64 COMMENT 'api_call status >= 500, deploy failed or rolled_back, training failed',
    error_rate Float64 COMMENT 'errors / events',
    latency_p50_ms Nullable(Float64) COMMENT 'api_call only; 1% relative accuracy (DDSketch)',
    latency_p95_ms Nullable(Float64),
    latency_p99_ms Nullable(Float64),
    latency_mean_ms Nullable(Float64),
    production_deploys UInt64,
    production_failures UInt64,
    models_registered UInt64,
    gpu_hours Float64,
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC')
)
AS
SELECT
    toDate(bucket) AS day,
    team,
    capability,
    event_type,
    sum(events) AS events,
    uniqExactMerge(users) AS users,
    sum(errors) AS errors,
    errors / events AS error_rate,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(latency_ms) AS latency,
    if(event_type = 'api_call', latency[1], NULL) AS latency_p50_ms,
    if(event_type = 'api_call', latency[2], NULL) AS latency_p95_ms,
    if(event_type = 'api_call', latency[3], NULL) AS latency_p99_ms,
    if(event_type = 'api_call', sum(latency_ms_sum) / events, NULL) AS latency_mean_ms,
    sum(production_deploys) AS production_deploys,
    sum(production_failures) AS production_failures,
    sum(models_registered) AS models_registered,
    sum(gpu_hours) AS gpu_hours,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM usage_day
GROUP BY day, team, capability, event_type
COMMENT 'The daily rollup with its aggregate states finalized: one row per day, team, capability and event type';

-- First use of each capability by each team.
CREATE VIEW IF NOT EXISTS adoption_first_use
(
    team String,
    capability String,
    first_used_at DateTime64(3, 'UTC') COMMENT 'the team''s first use of the capability (exact)',
    first_use_day Date,
    launched_at DateTime64(3, 'UTC') COMMENT 'the capability''s first use by any team',
    days_since_launch Float64 COMMENT 'time to first use: first_used_at - launched_at, in days',
    adoption_order UInt64 COMMENT '1 for the first team to use it, 2 for the next, ...',
    is_target UInt8 COMMENT '1 when the team is one of the capability''s target teams'
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
    has(t.target_teams, f.team) AS is_target
FROM
(
    SELECT team, capability, min(first_seen) AS first_used_at
    FROM usage_day_counted
    GROUP BY team, capability
) AS f
LEFT JOIN capability_targets AS t ON t.capability = f.capability
COMMENT 'When each team first used each capability, and how long after the capability''s first use by anyone';

-- Teams that used a capability per day; adopted teams (first use on or before the day).
CREATE VIEW IF NOT EXISTS adoption_daily
(
    capability String,
    day Date,
    active_teams UInt64 COMMENT 'teams that used it that day (any team)',
    active_target_teams UInt64 COMMENT 'target teams that used it that day',
    new_adopters UInt64 COMMENT 'teams whose first use was that day',
    adopted_teams UInt64 COMMENT 'teams with a first use on or before the day',
    adopted_target_teams UInt64 COMMENT 'target teams with a first use on or before the day',
    target_teams UInt64 COMMENT 'capability_targets.targets',
    active_rate Nullable(Float64) COMMENT 'active_target_teams / target_teams',
    adoption_rate Nullable(Float64) COMMENT 'adopted_target_teams / target_teams'
)
AS
WITH
    (SELECT toDate(max(bucket)) FROM usage_day) AS last_day,
    grid AS
    (
        SELECT
            capability,
            arrayJoin(
                arrayMap(i -> launch + i, range(toUInt32(dateDiff('day', launch, last_day)) + 1))
            ) AS day
        FROM (SELECT capability, min(first_use_day) AS launch FROM adoption_first_use GROUP BY capability)
    ),
    active AS
    (
        SELECT u.capability AS capability, toDate(u.bucket) AS day,
               uniqExact(u.team) AS teams, uniqExactIf(u.team, has(t.target_teams, u.team)) AS target
        FROM usage_day_counted AS u
        LEFT JOIN capability_targets AS t ON t.capability = u.capability
        GROUP BY capability, day
    ),
    adopters AS
    (
        SELECT capability, first_use_day AS day, count() AS teams, countIf(is_target) AS target
        FROM adoption_first_use
        GROUP BY capability, day
    )
SELECT
    g.capability AS capability,
    g.day AS day,
    a.teams AS active_teams,
    a.target AS active_target_teams,
    n.teams AS new_adopters,
    sum(n.teams) OVER (PARTITION BY g.capability ORDER BY g.day ROWS UNBOUNDED PRECEDING)
        AS adopted_teams,
    sum(n.target) OVER (PARTITION BY g.capability ORDER BY g.day ROWS UNBOUNDED PRECEDING)
        AS adopted_target_teams,
    t.targets AS target_teams,
    if(t.targets = 0, NULL, a.target / t.targets) AS active_rate,
    if(t.targets = 0, NULL, adopted_target_teams / t.targets) AS adoption_rate
FROM grid AS g
LEFT JOIN active AS a ON a.capability = g.capability AND a.day = g.day
LEFT JOIN adopters AS n ON n.capability = g.capability AND n.day = g.day
LEFT JOIN capability_targets AS t ON t.capability = g.capability
COMMENT 'Adoption per capability and day, from the capability''s first use to the newest data';

CREATE VIEW IF NOT EXISTS adoption_weekly
(
    capability String,
    week Date COMMENT 'Monday',
    active_teams UInt64 COMMENT 'teams that used it that week (any team)',
    active_target_teams UInt64 COMMENT 'target teams that used it that week',
    new_adopters UInt64 COMMENT 'teams whose first use was that week',
    adopted_teams UInt64 COMMENT 'teams with a first use before the end of the week',
    adopted_target_teams UInt64 COMMENT 'target teams with a first use before the end of the week',
    target_teams UInt64,
    active_rate Nullable(Float64) COMMENT 'active_target_teams / target_teams',
    adoption_rate Nullable(Float64) COMMENT 'adopted_target_teams / target_teams'
)
AS
WITH
    (SELECT toMonday(max(bucket)) FROM usage_day) AS last_week,
    grid AS
    (
        SELECT
            capability,
            arrayJoin(
                arrayMap(
                    i -> launch + 7 * i,
                    range(toUInt32(dateDiff('week', launch, last_week)) + 1)
                )
            ) AS week
        FROM
        (
            SELECT capability, toMonday(min(first_use_day)) AS launch
            FROM adoption_first_use
            GROUP BY capability
        )
    ),
    active AS
    (
        SELECT u.capability AS capability, toMonday(u.bucket) AS week,
               uniqExact(u.team) AS teams, uniqExactIf(u.team, has(t.target_teams, u.team)) AS target
        FROM usage_day_counted AS u
        LEFT JOIN capability_targets AS t ON t.capability = u.capability
        GROUP BY capability, week
    ),
    adopters AS
    (
        SELECT capability, toMonday(first_use_day) AS week, count() AS teams,
               countIf(is_target) AS target
        FROM adoption_first_use
        GROUP BY capability, week
    )
SELECT
    g.capability AS capability,
    g.week AS week,
    a.teams AS active_teams,
    a.target AS active_target_teams,
    n.teams AS new_adopters,
    sum(n.teams) OVER (PARTITION BY g.capability ORDER BY g.week ROWS UNBOUNDED PRECEDING)
        AS adopted_teams,
    sum(n.target) OVER (PARTITION BY g.capability ORDER BY g.week ROWS UNBOUNDED PRECEDING)
        AS adopted_target_teams,
    t.targets AS target_teams,
    if(t.targets = 0, NULL, a.target / t.targets) AS active_rate,
    if(t.targets = 0, NULL, adopted_target_teams / t.targets) AS adoption_rate
FROM grid AS g
LEFT JOIN active AS a ON a.capability = g.capability AND a.week = g.week
LEFT JOIN adopters AS n ON n.capability = g.capability AND n.week = g.week
LEFT JOIN capability_targets AS t ON t.capability = g.capability
COMMENT 'Adoption per capability and week (Monday), from the capability''s first use to the newest data';

CREATE VIEW IF NOT EXISTS team_breadth_weekly
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
    toMonday(u.bucket) AS week,
    uniqExact(u.capability) AS capabilities,
    uniqExactIf(u.capability, t.declared = 1) AS declared_capabilities,
    arraySort(groupUniqArray(u.capability)) AS capability_list
FROM usage_day_counted AS u
LEFT JOIN capability_targets AS t ON t.capability = u.capability
GROUP BY team, week
COMMENT 'Breadth of adoption: how many capabilities each team used per week';

CREATE VIEW IF NOT EXISTS team_depth_weekly
(
    team String,
    capability String,
    week Date COMMENT 'Monday',
    events UInt64 COMMENT 'depth: events that count as use',
    users UInt64 COMMENT 'distinct users of the team that used it',
    active_days UInt64 COMMENT 'days of the week with use',
    errors UInt64
)
AS
SELECT
    team,
    capability,
    toMonday(bucket) AS week,
    sum(events) AS events,
    uniqExactMerge(users) AS users,
    uniqExact(toDate(bucket)) AS active_days,
    sum(errors) AS errors
FROM usage_day_counted
GROUP BY team, capability, week
COMMENT 'Depth of adoption: how much each team used each capability per week';

-- Weekly retention of the teams that adopted in the same week (their cohort).
CREATE VIEW IF NOT EXISTS adoption_retention
(
    capability String,
    cohort_week Date COMMENT 'Monday of the week of first use',
    weeks_since_adoption UInt32 COMMENT '0 is the week of first use',
    cohort_teams UInt64 COMMENT 'teams whose first use was in cohort_week',
    retained_teams UInt64 COMMENT 'of those, teams that used the capability in that week',
    retention Float64 COMMENT 'retained_teams / cohort_teams'
)
AS
WITH (SELECT toMonday(max(bucket)) FROM usage_day) AS last_week
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
    SELECT DISTINCT team, capability, toMonday(bucket) AS week, toUInt8(1) AS used
    FROM usage_day_counted
) AS a ON a.team = f.team AND a.capability = f.capability AND a.week = f.week
GROUP BY capability, cohort_week, weeks_since_adoption
COMMENT 'Retention by adoption cohort: of the teams that first used a capability in a week, the share using it N weeks later';

-- One row per incident: its opened and resolved events folded.
CREATE VIEW IF NOT EXISTS incident_restores
(
    incident_id String,
    team String,
    service String,
    capability String,
    severity String,
    opened_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')) COMMENT 'NULL while open',
    time_to_restore_s Nullable(Float64) COMMENT 'resolved_at - opened_at',
    caused_by_deployment String
)
AS
SELECT
    incident_id,
    argMax(team, reported_at) AS team,
    argMax(service, reported_at) AS service,
    argMax(capability, reported_at) AS capability,
    argMax(severity, reported_at) AS severity,
    min(opened_at) AS opened_at,
    max(resolved_at) AS resolved_at,
    if(
        resolved_at IS NULL,
        NULL,
        greatest(0, dateDiff('millisecond', opened_at, assumeNotNull(resolved_at)) / 1000.0)
    ) AS time_to_restore_s,
    max(caused_by_deployment) AS caused_by_deployment
FROM incidents FINAL
GROUP BY incident_id
COMMENT 'Incidents with their opened and resolved events folded into one row';

-- The DORA rows every DORA view reads: production deploys and restored incidents.
CREATE VIEW IF NOT EXISTS dora_changes
AS
SELECT
    team,
    'deploy' AS kind,
    deployed_at AS at,
    capability,
    status IN ('failed', 'rolled_back') AS failed,
    if(status = 'succeeded', commit_lead_times_s, []) AS lead_times_s,
    toFloat64(0) AS restore_s
FROM deployments FINAL
WHERE environment = 'production'
UNION ALL
SELECT
    team,
    'restore' AS kind,
    opened_at AS at,
    capability,
    false AS failed,
    [] AS lead_times_s,
    assumeNotNull(time_to_restore_s) AS restore_s
FROM incident_restores
WHERE time_to_restore_s IS NOT NULL
COMMENT 'Production deployments (kind deploy) and restored incidents (kind restore, at = opened_at): what the DORA views aggregate';

CREATE VIEW IF NOT EXISTS dora_weekly
(
    team String,
    week Date COMMENT 'Monday; deploys by deployed_at, incidents by opened_at',
    deployments UInt64 COMMENT 'deployment frequency: production deployments that week',
    deploy_days UInt64 COMMENT 'days of the week with at least one production deployment',
    failed_deployments UInt64 COMMENT 'production deployments failed or rolled back',
    change_failure_rate Nullable(Float64) COMMENT 'failed_deployments / deployments',
    commits UInt64 COMMENT 'commits shipped by successful production deployments',
    lead_time_median_s Nullable(Float64) COMMENT 'lead time for changes: median commit to successful production deployment',
    incidents_restored UInt64 COMMENT 'incidents opened that week and resolved',
    time_to_restore_median_s Nullable(Float64) COMMENT 'time to restore service: median resolved - opened'
)
AS
SELECT
    team,
    toMonday(at) AS week,
    countIf(kind = 'deploy') AS deployments,
    uniqExactIf(toDate(at), kind = 'deploy') AS deploy_days,
    countIf(kind = 'deploy' AND failed) AS failed_deployments,
    if(deployments = 0, NULL, failed_deployments / deployments) AS change_failure_rate,
    sum(length(lead_times_s)) AS commits,
    if(commits = 0, NULL, quantileExactInclusiveArray(0.5)(lead_times_s)) AS lead_time_median_s,
    countIf(kind = 'restore') AS incidents_restored,
    if(
        incidents_restored = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(restore_s, kind = 'restore')
    ) AS time_to_restore_median_s
FROM dora_changes
GROUP BY team, week
COMMENT 'The four DORA metrics per team and week';

-- Impact: each team's DORA figures before and after its first use of each capability.
CREATE VIEW IF NOT EXISTS impact_changes
AS
SELECT
    f.capability AS capability,
    f.first_used_at AS adopted_at,
    c.team AS team,
    c.kind AS kind,
    c.at AS at,
    c.capability AS change_capability,
    c.failed AS failed,
    c.lead_times_s AS lead_times_s,
    c.restore_s AS restore_s,
    c.at >= f.first_used_at AS after
FROM dora_changes AS c
INNER JOIN adoption_first_use AS f ON f.team = c.team
COMMENT 'dora_changes of every team once per capability it adopted (change_capability: the capability of the deploy or incident itself), marked before/after its first use';

CREATE VIEW IF NOT EXISTS impact_before_after
(
    team String,
    capability String,
    adopted_at DateTime64(3, 'UTC') COMMENT 'the team''s first use of the capability',
    weeks_before Float64 COMMENT 'observed weeks before adoption (from the oldest data)',
    weeks_after Float64 COMMENT 'observed weeks after adoption (to the newest data)',
    deployments_before UInt64,
    deployments_after UInt64,
    deploys_per_week_before Nullable(Float64),
    deploys_per_week_after Nullable(Float64),
    change_failure_rate_before Nullable(Float64),
    change_failure_rate_after Nullable(Float64),
    change_failure_ratio Nullable(Float64) COMMENT 'after / before',
    commits_before UInt64,
    commits_after UInt64,
    lead_time_median_s_before Nullable(Float64),
    lead_time_median_s_after Nullable(Float64),
    lead_time_ratio Nullable(Float64) COMMENT 'after / before',
    incidents_before UInt64,
    incidents_after UInt64,
    time_to_restore_median_s_before Nullable(Float64),
    time_to_restore_median_s_after Nullable(Float64),
    time_to_restore_ratio Nullable(Float64) COMMENT 'after / before'
)
AS
WITH
    (SELECT min(first_seen) FROM usage_day) AS observed_from,
    (SELECT max(last_seen) FROM usage_day) AS observed_to
SELECT
    team,
    capability,
    any(adopted_at) AS adopted_at,
    dateDiff('millisecond', observed_from, adopted_at) / (7 * 86400000) AS weeks_before,
    dateDiff('millisecond', adopted_at, observed_to) / (7 * 86400000) AS weeks_after,
    countIf(kind = 'deploy' AND NOT after) AS deployments_before,
    countIf(kind = 'deploy' AND after) AS deployments_after,
    if(weeks_before > 0, deployments_before / weeks_before, NULL) AS deploys_per_week_before,
    if(weeks_after > 0, deployments_after / weeks_after, NULL) AS deploys_per_week_after,
    if(
        deployments_before = 0,
        NULL,
        countIf(kind = 'deploy' AND failed AND NOT after) / deployments_before
    ) AS change_failure_rate_before,
    if(
        deployments_after = 0,
        NULL,
        countIf(kind = 'deploy' AND failed AND after) / deployments_after
    ) AS change_failure_rate_after,
    change_failure_rate_after / nullIf(change_failure_rate_before, 0) AS change_failure_ratio,
    sumIf(length(lead_times_s), NOT after) AS commits_before,
    sumIf(length(lead_times_s), after) AS commits_after,
    if(commits_before = 0, NULL, quantileExactInclusiveArrayIf(0.5)(lead_times_s, NOT after))
        AS lead_time_median_s_before,
    if(commits_after = 0, NULL, quantileExactInclusiveArrayIf(0.5)(lead_times_s, after))
        AS lead_time_median_s_after,
    lead_time_median_s_after / nullIf(lead_time_median_s_before, 0) AS lead_time_ratio,
    countIf(kind = 'restore' AND NOT after) AS incidents_before,
    countIf(kind = 'restore' AND after) AS incidents_after,
    if(
        incidents_before = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(restore_s, kind = 'restore' AND NOT after)
    ) AS time_to_restore_median_s_before,
    if(
        incidents_after = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(restore_s, kind = 'restore' AND after)
    ) AS time_to_restore_median_s_after,
    time_to_restore_median_s_after / nullIf(time_to_restore_median_s_before, 0)
        AS time_to_restore_ratio
FROM impact_changes
GROUP BY team, capability
COMMENT 'Each team''s DORA metrics before and after its first use of each capability';

CREATE VIEW IF NOT EXISTS impact_summary
(
    capability String,
    teams UInt64 COMMENT 'adopting teams with production deployments before and after',
    lead_time_ratio_geomean Nullable(Float64) COMMENT 'geometric mean over teams of lead_time_ratio',
    deployments_before UInt64,
    deployments_after UInt64,
    change_failure_rate_before Nullable(Float64) COMMENT 'pooled over the teams',
    change_failure_rate_after Nullable(Float64),
    change_failure_ratio Nullable(Float64) COMMENT 'after / before, pooled',
    lead_time_median_s_before Nullable(Float64) COMMENT 'pooled over the teams'' commits',
    lead_time_median_s_after Nullable(Float64),
    time_to_restore_median_s_before Nullable(Float64) COMMENT 'pooled over the teams'' incidents',
    time_to_restore_median_s_after Nullable(Float64),
    time_to_restore_ratio_geomean Nullable(Float64) COMMENT 'geometric mean over teams of time_to_restore_ratio'
)
AS
WITH both_sides AS
(
    SELECT team, capability, lead_time_ratio, time_to_restore_ratio
    FROM impact_before_after
    WHERE deployments_before > 0 AND deployments_after > 0
)
SELECT
    c.capability AS capability,
    uniqExact(c.team) AS teams,
    any(t.lead_geomean) AS lead_time_ratio_geomean,
    countIf(c.kind = 'deploy' AND NOT c.after) AS deployments_before,
    countIf(c.kind = 'deploy' AND c.after) AS deployments_after,
    if(
        deployments_before = 0,
        NULL,
        countIf(c.kind = 'deploy' AND c.failed AND NOT c.after) / deployments_before
    ) AS change_failure_rate_before,
    if(
        deployments_after = 0,
        NULL,
        countIf(c.kind = 'deploy' AND c.failed AND c.after) / deployments_after
    ) AS change_failure_rate_after,
    change_failure_rate_after / nullIf(change_failure_rate_before, 0) AS change_failure_ratio,
    if(
        sumIf(length(c.lead_times_s), NOT c.after) = 0,
        NULL,
        quantileExactInclusiveArrayIf(0.5)(c.lead_times_s, NOT c.after)
    ) AS lead_time_median_s_before,
    if(
        sumIf(length(c.lead_times_s), c.after) = 0,
        NULL,
        quantileExactInclusiveArrayIf(0.5)(c.lead_times_s, c.after)
    ) AS lead_time_median_s_after,
    if(
        countIf(c.kind = 'restore' AND NOT c.after) = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(c.restore_s, c.kind = 'restore' AND NOT c.after)
    ) AS time_to_restore_median_s_before,
    if(
        countIf(c.kind = 'restore' AND c.after) = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(c.restore_s, c.kind = 'restore' AND c.after)
    ) AS time_to_restore_median_s_after,
    any(t.restore_geomean) AS time_to_restore_ratio_geomean
FROM impact_changes AS c
INNER JOIN (SELECT DISTINCT team, capability FROM both_sides) AS b
    ON b.team = c.team AND b.capability = c.capability
LEFT JOIN
(
    SELECT
        capability,
        if(countIf(lead_time_ratio > 0) = 0, NULL,
           exp(avgIf(log(lead_time_ratio), lead_time_ratio > 0))) AS lead_geomean,
        if(countIf(time_to_restore_ratio > 0) = 0, NULL,
           exp(avgIf(log(time_to_restore_ratio), time_to_restore_ratio > 0))) AS restore_geomean
    FROM both_sides
    GROUP BY capability
) AS t ON t.capability = c.capability
GROUP BY capability
COMMENT 'Per capability: DORA before and after adoption over the adopting teams (pooled, and the per-team geometric mean of the ratios)';

-- Adopters against non-adopters, week by week.
CREATE VIEW IF NOT EXISTS impact_adopters_weekly
(
    capability String,
    week Date COMMENT 'Monday',
    cohort String COMMENT 'adopters: first use before the week; adopting: first use in the week; non_adopters: no first use yet, or never',
    teams UInt64 COMMENT 'teams with a production deploy or a restored incident that week',
    deployments UInt64,
    failed_deployments UInt64,
    change_failure_rate Nullable(Float64),
    commits UInt64,
    lead_time_median_s Nullable(Float64),
    incidents_restored UInt64,
    time_to_restore_median_s Nullable(Float64)
)
AS
SELECT
    k.capability AS capability,
    toMonday(c.at) AS week,
    multiIf(
        f.adopted = 0 OR toMonday(f.first_used_at) > week, 'non_adopters',
        toMonday(f.first_used_at) = week, 'adopting',
        'adopters'
    ) AS cohort,
    uniqExact(c.team) AS teams,
    countIf(c.kind = 'deploy') AS deployments,
    countIf(c.kind = 'deploy' AND c.failed) AS failed_deployments,
    if(deployments = 0, NULL, failed_deployments / deployments) AS change_failure_rate,
    sum(length(c.lead_times_s)) AS commits,
    if(commits = 0, NULL, quantileExactInclusiveArray(0.5)(c.lead_times_s)) AS lead_time_median_s,
    countIf(c.kind = 'restore') AS incidents_restored,
    if(
        incidents_restored = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(c.restore_s, c.kind = 'restore')
    ) AS time_to_restore_median_s
FROM dora_changes AS c
CROSS JOIN (SELECT capability FROM capability_targets) AS k
LEFT JOIN
(
    SELECT team, capability, first_used_at, toUInt8(1) AS adopted FROM adoption_first_use
) AS f ON f.team = c.team AND f.capability = k.capability
GROUP BY capability, week, cohort
COMMENT 'DORA metrics per week of the teams that had adopted a capability against those that had not';

-- ML platform.
CREATE VIEW IF NOT EXISTS ml_training_weekly
(
    team String,
    week Date COMMENT 'Monday of finished_at',
    trainings UInt64,
    succeeded UInt64,
    failed UInt64,
    cancelled UInt64,
    success_rate Nullable(Float64) COMMENT 'succeeded / (succeeded + failed); cancelled runs left out',
    duration_median_s Float64,
    gpu_hours Float64,
    models_registered UInt64
)
AS
SELECT
    team,
    toMonday(finished_at) AS week,
    count() AS trainings,
    countIf(status = 'succeeded') AS succeeded,
    countIf(status = 'failed') AS failed,
    countIf(status = 'cancelled') AS cancelled,
    if(succeeded + failed = 0, NULL, succeeded / (succeeded + failed)) AS success_rate,
    quantileExactInclusive(0.5)(duration_s) AS duration_median_s,
    sum(gpu_hours) AS gpu_hours,
    countIf(registered_model != '') AS models_registered
FROM model_trainings FINAL
GROUP BY team, week
COMMENT 'Training runs on the ML platform per team and week';

CREATE VIEW IF NOT EXISTS ml_team_summary
(
    team String,
    trainings UInt64,
    succeeded UInt64,
    failed UInt64,
    cancelled UInt64,
    success_rate Nullable(Float64) COMMENT 'succeeded / (succeeded + failed)',
    duration_median_s Float64,
    gpu_hours Float64,
    models_registered UInt64,
    first_training_at DateTime64(3, 'UTC') COMMENT 'when the team''s first run ended',
    first_registered_at Nullable(DateTime64(3, 'UTC')) COMMENT 'when its first run that registered a model ended',
    time_to_first_registered_model_s Nullable(Float64) COMMENT 'first_registered_at - first_training_at'
)
AS
SELECT
    team,
    count() AS trainings,
    countIf(status = 'succeeded') AS succeeded,
    countIf(status = 'failed') AS failed,
    countIf(status = 'cancelled') AS cancelled,
    if(succeeded + failed = 0, NULL, succeeded / (succeeded + failed)) AS success_rate,
    quantileExactInclusive(0.5)(duration_s) AS duration_median_s,
    sum(gpu_hours) AS gpu_hours,
    countIf(registered_model != '') AS models_registered,
    min(finished_at) AS first_training_at,
    if(models_registered = 0, NULL, minIf(finished_at, registered_model != ''))
        AS first_registered_at,
    if(
        models_registered = 0,
        NULL,
        dateDiff('millisecond', first_training_at, assumeNotNull(first_registered_at)) / 1000.0
    ) AS time_to_first_registered_model_s
FROM model_trainings FINAL
GROUP BY team
COMMENT 'Per team: training runs, success rate, median duration, GPU hours and time from first training to first registered model';

-- North-star outcomes of business capabilities (capability_catalog.north_star_*).
CREATE VIEW IF NOT EXISTS north_star_daily
(
    capability String,
    team String,
    day Date,
    north_star String COMMENT 'capability_catalog.north_star_name',
    measure String COMMENT 'count | value_sum | decision_rate',
    unit String,
    outcomes UInt64 COMMENT 'api_call outcomes named north_star_outcome',
    value Nullable(Float64) COMMENT 'the north-star figure of the day by its measure'
)
AS
SELECT
    u.capability AS capability,
    u.team AS team,
    toDate(u.bucket) AS day,
    any(c.north_star_name) AS north_star,
    any(c.north_star_measure) AS measure,
    any(c.north_star_unit) AS unit,
    any(c.north_star_outcome) AS outcome,
    any(c.north_star_decision) AS decision,
    sumMap(u.outcome_count) AS counts,
    sumMap(u.outcome_value) AS values,
    concat(outcome, '/') AS prefix,
    arraySum(mapValues(mapFilter((k, v) -> startsWith(k, prefix), counts))) AS outcomes,
    multiIf(
        measure = 'count', toFloat64(outcomes),
        measure = 'value_sum' AND decision != '', values[concat(prefix, decision)],
        measure = 'value_sum', arraySum(mapValues(mapFilter((k, v) -> startsWith(k, prefix), values))),
        measure = 'decision_rate' AND outcomes > 0, counts[concat(prefix, decision)] / outcomes,
        NULL
    ) AS value
FROM usage_day AS u
INNER JOIN
(
    SELECT name, north_star_name, north_star_measure, north_star_unit, north_star_outcome,
           north_star_decision
    FROM capability_catalog FINAL
    WHERE north_star_name != ''
) AS c ON c.name = u.capability
WHERE u.event_type = 'api_call'
GROUP BY capability, team, day
COMMENT 'The north-star metric of each business capability per team and day';
