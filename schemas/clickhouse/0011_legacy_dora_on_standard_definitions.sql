-- The DORA and naive impact views of 0004 on the standard definitions of 0006 (#17).
--
-- dora_changes and dora_weekly read dora_deployments and dora_metrics: a deployment is a
-- production deploy that went live (succeeded or rolled_back; a failed attempt is none), a
-- change failure is a deployment rolled back or named by an incident's caused_by_deployment.
-- Column names and types are kept; what changes in meaning (docs/analysts.md):
-- - dora_changes: kind 'deploy' rows are deployments only; `failed` is a change failure;
-- - dora_weekly, impact_adopters_weekly: `failed_deployments` counts change failures (so
--   change_failure_rate = failed_deployments / deployments still holds); failed attempts are
--   dora_metrics.failed_attempts.
-- The naive before/after (impact_*) counts each team's weeks from its own first to its own
-- last week with data, keeps teams without deploys on one side, reports the zero ratios the
-- geometric means leave out, and compares adopters with non-adopters among target teams only.

CREATE OR REPLACE VIEW dora_changes
AS
SELECT
    team,
    'deploy' AS kind,
    deployed_at AS at,
    capability,
    change_failure AS failed,
    lead_times_s,
    toFloat64(0) AS restore_s
FROM dora_deployments
WHERE deployed
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
COMMENT 'Production deployments (kind deploy: went live, failed = change failure, as dora_deployments) and restored incidents (kind restore, at = opened_at)';

CREATE OR REPLACE VIEW dora_weekly
(
    team String,
    week Date COMMENT 'Monday; deploys by deployed_at, incidents by opened_at',
    deployments UInt64 COMMENT 'deployment frequency: production deployments that went live that week (succeeded or rolled_back)',
    deploy_days UInt64 COMMENT 'days of the week with at least one deployment',
    failed_deployments UInt64 COMMENT 'change failures: deployments rolled back or named by an incident (dora_metrics.change_failures)',
    change_failure_rate Nullable(Float64) COMMENT 'failed_deployments / deployments',
    commits UInt64 COMMENT 'commits shipped by deployments',
    lead_time_median_s Nullable(Float64) COMMENT 'lead time for changes: median commit to deployment',
    incidents_restored UInt64 COMMENT 'incidents opened that week and resolved',
    time_to_restore_median_s Nullable(Float64) COMMENT 'time to restore service: median resolved - opened'
)
AS
SELECT
    team,
    period_start AS week,
    deployments,
    deploy_days,
    change_failures AS failed_deployments,
    change_failure_rate,
    commits,
    lead_time_median_s,
    incidents_restored,
    time_to_restore_median_s
FROM dora_metrics
WHERE period = 'week'
COMMENT 'dora_metrics per team and week (period = week) under the older column names';

CREATE OR REPLACE VIEW impact_before_after
(
    team String,
    capability String,
    adopted_at DateTime64(3, 'UTC') COMMENT 'the team''s first use of the capability',
    weeks_before Float64 COMMENT 'observed weeks before adoption: from the Monday of the team''s own first week with data',
    weeks_after Float64 COMMENT 'observed weeks after adoption: to the end of the team''s own last week with data',
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
SELECT
    c.team AS team,
    c.capability AS capability,
    any(c.adopted_at) AS adopted_at,
    greatest(0, dateDiff('millisecond', any(o.observed_from), adopted_at)) / (7 * 86400000) AS weeks_before,
    greatest(0, dateDiff('millisecond', adopted_at, any(o.observed_to))) / (7 * 86400000) AS weeks_after,
    countIf(c.kind = 'deploy' AND NOT c.after) AS deployments_before,
    countIf(c.kind = 'deploy' AND c.after) AS deployments_after,
    if(weeks_before > 0, deployments_before / weeks_before, NULL) AS deploys_per_week_before,
    if(weeks_after > 0, deployments_after / weeks_after, NULL) AS deploys_per_week_after,
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
    sumIf(length(c.lead_times_s), NOT c.after) AS commits_before,
    sumIf(length(c.lead_times_s), c.after) AS commits_after,
    if(commits_before = 0, NULL, quantileExactInclusiveArrayIf(0.5)(c.lead_times_s, NOT c.after))
        AS lead_time_median_s_before,
    if(commits_after = 0, NULL, quantileExactInclusiveArrayIf(0.5)(c.lead_times_s, c.after))
        AS lead_time_median_s_after,
    lead_time_median_s_after / nullIf(lead_time_median_s_before, 0) AS lead_time_ratio,
    countIf(c.kind = 'restore' AND NOT c.after) AS incidents_before,
    countIf(c.kind = 'restore' AND c.after) AS incidents_after,
    if(
        incidents_before = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(c.restore_s, c.kind = 'restore' AND NOT c.after)
    ) AS time_to_restore_median_s_before,
    if(
        incidents_after = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(c.restore_s, c.kind = 'restore' AND c.after)
    ) AS time_to_restore_median_s_after,
    time_to_restore_median_s_after / nullIf(time_to_restore_median_s_before, 0)
        AS time_to_restore_ratio
FROM impact_changes AS c
LEFT JOIN
(
    SELECT
        team,
        toDateTime64(toMonday(min(first_seen)), 3, 'UTC') AS observed_from,
        toDateTime64(toMonday(max(last_seen)) + 7, 3, 'UTC') AS observed_to
    FROM usage_day
    GROUP BY team
) AS o ON o.team = c.team
GROUP BY team, capability
COMMENT 'Each team''s DORA metrics before and after its first use of each capability (naive: no control for trends), weeks counted over the team''s own data';

CREATE OR REPLACE VIEW impact_summary
(
    capability String,
    teams UInt64 COMMENT 'adopting teams observed before and after adoption (weeks_before > 0 and weeks_after > 0), deploys or not',
    lead_time_ratio_geomean Nullable(Float64) COMMENT 'geometric mean of the positive lead_time_ratio over teams (zeros counted in lead_time_zero_ratios)',
    deployments_before UInt64,
    deployments_after UInt64,
    change_failure_rate_before Nullable(Float64) COMMENT 'pooled over the teams',
    change_failure_rate_after Nullable(Float64),
    change_failure_ratio Nullable(Float64) COMMENT 'after / before, pooled',
    lead_time_median_s_before Nullable(Float64) COMMENT 'pooled over the teams'' commits',
    lead_time_median_s_after Nullable(Float64),
    time_to_restore_median_s_before Nullable(Float64) COMMENT 'pooled over the teams'' incidents',
    time_to_restore_median_s_after Nullable(Float64),
    time_to_restore_ratio_geomean Nullable(Float64) COMMENT 'geometric mean of the positive time_to_restore_ratio over teams (zeros counted in time_to_restore_zero_ratios)',
    weeks_before Float64 COMMENT 'sum over the teams of their observed weeks before adoption',
    weeks_after Float64 COMMENT 'sum over the teams of their observed weeks after adoption',
    deploys_per_week_before Nullable(Float64) COMMENT 'pooled mean: deployments_before / weeks_before',
    deploys_per_week_after Nullable(Float64) COMMENT 'pooled mean: deployments_after / weeks_after',
    deployment_frequency_ratio Nullable(Float64) COMMENT 'deploys_per_week_after / deploys_per_week_before: ratio of pooled means (teams with 0 deploys on a side included)',
    lead_time_ratios UInt64 COMMENT 'teams with a lead_time_ratio (commits before and after)',
    lead_time_zero_ratios UInt64 COMMENT 'of them, teams with lead_time_ratio = 0, left out of lead_time_ratio_geomean',
    time_to_restore_ratios UInt64 COMMENT 'teams with a time_to_restore_ratio (restored incidents before and after)',
    time_to_restore_zero_ratios UInt64 COMMENT 'of them, teams with time_to_restore_ratio = 0, left out of time_to_restore_ratio_geomean'
)
AS
WITH both_sides AS
(
    SELECT team, capability, weeks_before, weeks_after, lead_time_ratio, time_to_restore_ratio
    FROM impact_before_after
    WHERE weeks_before > 0 AND weeks_after > 0
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
    any(t.restore_geomean) AS time_to_restore_ratio_geomean,
    any(t.weeks_before) AS weeks_before,
    any(t.weeks_after) AS weeks_after,
    if(weeks_before > 0, deployments_before / weeks_before, NULL) AS deploys_per_week_before,
    if(weeks_after > 0, deployments_after / weeks_after, NULL) AS deploys_per_week_after,
    deploys_per_week_after / nullIf(deploys_per_week_before, 0) AS deployment_frequency_ratio,
    any(t.lead_ratios) AS lead_time_ratios,
    any(t.lead_zeros) AS lead_time_zero_ratios,
    any(t.restore_ratios) AS time_to_restore_ratios,
    any(t.restore_zeros) AS time_to_restore_zero_ratios
FROM impact_changes AS c
INNER JOIN (SELECT DISTINCT team, capability FROM both_sides) AS b
    ON b.team = c.team AND b.capability = c.capability
LEFT JOIN
(
    SELECT
        capability,
        sum(weeks_before) AS weeks_before,
        sum(weeks_after) AS weeks_after,
        if(countIf(lead_time_ratio > 0) = 0, NULL,
           exp(avgIf(log(assumeNotNull(lead_time_ratio)), lead_time_ratio > 0))) AS lead_geomean,
        countIf(lead_time_ratio IS NOT NULL) AS lead_ratios,
        countIf(lead_time_ratio = 0) AS lead_zeros,
        if(countIf(time_to_restore_ratio > 0) = 0, NULL,
           exp(avgIf(log(assumeNotNull(time_to_restore_ratio)), time_to_restore_ratio > 0))) AS restore_geomean,
        countIf(time_to_restore_ratio IS NOT NULL) AS restore_ratios,
        countIf(time_to_restore_ratio = 0) AS restore_zeros
    FROM both_sides
    GROUP BY capability
) AS t ON t.capability = c.capability
GROUP BY capability
COMMENT 'Per capability, naive: DORA before and after adoption over the adopting teams observed on both sides (pooled; per-team geometric means with the zero ratios they leave out counted)';

CREATE OR REPLACE VIEW impact_adopters_weekly
(
    capability String,
    week Date COMMENT 'Monday',
    cohort String COMMENT 'among the capability''s target teams of the week: adopters: first use before the week; adopting: first use in the week; non_adopters: no first use yet, or never',
    teams UInt64 COMMENT 'target teams with a deployment or a restored incident that week',
    deployments UInt64 COMMENT 'production deployments that went live',
    failed_deployments UInt64 COMMENT 'change failures: deployments rolled back or named by an incident',
    change_failure_rate Nullable(Float64) COMMENT 'failed_deployments / deployments',
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
INNER JOIN
(
    SELECT capability, arrayJoin(target_teams) AS team FROM capability_targets
) AS k ON k.team = c.team
LEFT JOIN
(
    -- the target teams on the week's last day with team catalog data
    SELECT capability, toMonday(day) AS week, argMax(target_teams, day) AS target_teams,
           toUInt8(1) AS covered
    FROM capability_targets_daily_all
    GROUP BY capability, week
) AS w ON w.capability = k.capability AND w.week = toMonday(c.at)
LEFT JOIN
(
    SELECT team, capability, first_used_at, toUInt8(1) AS adopted FROM adoption_first_use
) AS f ON f.team = c.team AND f.capability = k.capability
WHERE w.covered = 0 OR has(w.target_teams, c.team)
GROUP BY capability, week, cohort
COMMENT 'Naive: DORA metrics per week of the capability''s target teams that had adopted it against those that had not';
