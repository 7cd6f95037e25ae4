-- DORA keys by the definitions of the DORA reports, fourkeys and Apache DevLake
-- (docs/analysts.md, "DORA metrics", says which source each choice follows).
--
-- A deployment is a production deploy that went live: status succeeded or rolled_back. A
-- failed deploy never went live: it is no deployment in DORA (fourkeys and DevLake count
-- successful production deployments) and is only counted apart, as failed_attempts.
-- A change failure is a deployment that was rolled back, or that an incident names in
-- caused_by_deployment. Its failed deployment recovery time runs from the deployment
-- (deployed_at) to the resolution of the last incident it caused, or, for a rollback without
-- an incident, from started_at to deployed_at (the rollback ended the deployment).
-- The dora_weekly view of 0004 keeps its older definitions for existing queries.

-- Performance levels per DORA report: a value is at a level when it is at least as good as the
-- level's bound (higher is better for deployment frequency, lower for the others); the best
-- such level wins. Bounds are Uptake's reading of each report's bands (docs/analysts.md).
CREATE VIEW IF NOT EXISTS dora_benchmarks
(
    report_year UInt16 COMMENT 'Accelerate State of DevOps report',
    key String COMMENT 'deployment_frequency | lead_time | change_failure_rate | recovery_time',
    level String COMMENT 'elite | high | medium | low',
    rank UInt8 COMMENT '1 = elite ... 4 = low',
    bound Float64 COMMENT 'deploys per week (at least), seconds or a ratio (at most)',
    higher_is_better UInt8
)
AS
SELECT report_year, key, level, rank, bound, higher_is_better
FROM values(
    'report_year UInt16, key String, level String, rank UInt8, bound Float64, higher_is_better UInt8',
    (2023, 'deployment_frequency', 'elite', 1, 7, 1),
    (2023, 'deployment_frequency', 'high', 2, 1, 1),
    (2023, 'deployment_frequency', 'medium', 3, 0.23, 1),
    (2023, 'deployment_frequency', 'low', 4, 0, 1),
    (2023, 'lead_time', 'elite', 1, 86400, 0),
    (2023, 'lead_time', 'high', 2, 604800, 0),
    (2023, 'lead_time', 'medium', 3, 2629800, 0),
    (2023, 'lead_time', 'low', 4, inf, 0),
    (2023, 'change_failure_rate', 'elite', 1, 0.05, 0),
    (2023, 'change_failure_rate', 'high', 2, 0.10, 0),
    (2023, 'change_failure_rate', 'medium', 3, 0.15, 0),
    (2023, 'change_failure_rate', 'low', 4, inf, 0),
    (2023, 'recovery_time', 'elite', 1, 3600, 0),
    (2023, 'recovery_time', 'high', 2, 86400, 0),
    (2023, 'recovery_time', 'medium', 3, 604800, 0),
    (2023, 'recovery_time', 'low', 4, inf, 0),
    (2024, 'deployment_frequency', 'elite', 1, 7, 1),
    (2024, 'deployment_frequency', 'high', 2, 1, 1),
    (2024, 'deployment_frequency', 'medium', 3, 0.23, 1),
    (2024, 'deployment_frequency', 'low', 4, 0, 1),
    (2024, 'lead_time', 'elite', 1, 86400, 0),
    (2024, 'lead_time', 'high', 2, 604800, 0),
    (2024, 'lead_time', 'medium', 3, 2629800, 0),
    (2024, 'lead_time', 'low', 4, inf, 0),
    (2024, 'change_failure_rate', 'elite', 1, 0.05, 0),
    (2024, 'change_failure_rate', 'high', 2, 0.20, 0),
    (2024, 'change_failure_rate', 'low', 4, inf, 0),
    (2024, 'recovery_time', 'elite', 1, 3600, 0),
    (2024, 'recovery_time', 'high', 2, 86400, 0),
    (2024, 'recovery_time', 'low', 4, inf, 0)
)
COMMENT 'DORA performance levels per report year and key (bands read from the Accelerate State of DevOps reports)';

-- One row per production deploy, with what DORA needs to know about it.
CREATE VIEW IF NOT EXISTS dora_deployments
(
    deployment_id String,
    team String,
    service String,
    capability String,
    status String COMMENT 'succeeded | failed | rolled_back',
    deployed_at DateTime64(3, 'UTC'),
    deployed UInt8 COMMENT '1: went live (succeeded or rolled_back): a DORA deployment',
    lead_times_s Array(Float64) COMMENT 'per commit, deployments only (empty for failed attempts)',
    linked_incidents UInt64 COMMENT 'incidents whose caused_by_deployment is this deployment',
    change_failure UInt8 COMMENT 'a deployment rolled back or with a linked incident',
    recovery_time_s Nullable(Float64) COMMENT 'failed deployment recovery time; NULL while not recovered or unknown'
)
AS
SELECT
    d.deployment_id AS deployment_id,
    d.team AS team,
    d.service AS service,
    d.capability AS capability,
    d.status AS status,
    d.deployed_at AS deployed_at,
    d.status IN ('succeeded', 'rolled_back') AS deployed,
    if(deployed, d.commit_lead_times_s, []) AS lead_times_s,
    l.incidents AS linked_incidents,
    deployed AND (d.status = 'rolled_back' OR l.incidents > 0) AS change_failure,
    multiIf(
        NOT change_failure, NULL,
        l.incidents > 0 AND l.open_incidents = 0,
        greatest(0, dateDiff('millisecond', d.deployed_at, assumeNotNull(l.last_resolved_at)) / 1000.0),
        l.incidents = 0 AND d.started_at IS NOT NULL,
        greatest(0, dateDiff('millisecond', assumeNotNull(d.started_at), d.deployed_at) / 1000.0),
        NULL
    ) AS recovery_time_s
FROM (SELECT * FROM deployments FINAL WHERE environment = 'production') AS d
LEFT JOIN
(
    SELECT
        caused_by_deployment AS deployment_id,
        count() AS incidents,
        countIf(resolved_at IS NULL) AS open_incidents,
        max(resolved_at) AS last_resolved_at
    FROM incident_restores
    WHERE caused_by_deployment != ''
    GROUP BY deployment_id
) AS l ON l.deployment_id = d.deployment_id
COMMENT 'Production deploys: whether each went live, its change failure and its failed deployment recovery time';

-- Deployments and restored incidents, each once per period grain (week and month), and once
-- per scope: the team, the whole organisation, and each capability the team had adopted or
-- was a target of (cohort adopted / not_adopted at the time of the row).
CREATE VIEW IF NOT EXISTS dora_period_rows
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
        SELECT team, capability, toNullable(first_used_at) AS first_used_at
        FROM adoption_first_use
    ) AS f ON f.team = r.team AND f.capability = t.capability
)
SELECT
    s.*,
    p.1 AS period,
    p.2 AS period_start
FROM scoped AS s
ARRAY JOIN [('week', toMonday(s.at)), ('month', toStartOfMonth(s.at))] AS p
COMMENT 'Deployments and restored incidents per scope (team, org, capability × cohort) and period grain: what dora_metrics_all aggregates';

CREATE VIEW IF NOT EXISTS dora_metrics_all
AS
WITH
    (SELECT groupArray(bound) FROM (SELECT bound FROM dora_benchmarks WHERE report_year = 2024 AND key = 'deployment_frequency' ORDER BY rank)) AS df_bounds,
    (SELECT groupArray(level) FROM (SELECT level, rank FROM dora_benchmarks WHERE report_year = 2024 AND key = 'deployment_frequency' ORDER BY rank)) AS df_levels,
    (SELECT groupArray(bound) FROM (SELECT bound FROM dora_benchmarks WHERE report_year = 2024 AND key = 'lead_time' ORDER BY rank)) AS lt_bounds,
    (SELECT groupArray(level) FROM (SELECT level, rank FROM dora_benchmarks WHERE report_year = 2024 AND key = 'lead_time' ORDER BY rank)) AS lt_levels,
    (SELECT groupArray(bound) FROM (SELECT bound FROM dora_benchmarks WHERE report_year = 2024 AND key = 'change_failure_rate' ORDER BY rank)) AS cf_bounds,
    (SELECT groupArray(level) FROM (SELECT level, rank FROM dora_benchmarks WHERE report_year = 2024 AND key = 'change_failure_rate' ORDER BY rank)) AS cf_levels,
    (SELECT groupArray(bound) FROM (SELECT bound FROM dora_benchmarks WHERE report_year = 2024 AND key = 'recovery_time' ORDER BY rank)) AS rt_bounds,
    (SELECT groupArray(level) FROM (SELECT level, rank FROM dora_benchmarks WHERE report_year = 2024 AND key = 'recovery_time' ORDER BY rank)) AS rt_levels
SELECT
    scope,
    team,
    capability,
    cohort,
    period,
    period_start,
    dateDiff('day', period_start, if(period = 'week', period_start + 7, addMonths(period_start, 1))) AS days,
    uniqExact(member) AS teams,
    countIf(kind = 'deploy' AND deployed) AS deployments,
    deployments * 7 / days AS deployment_frequency_per_week,
    uniqExactIf(toDate(at), kind = 'deploy' AND deployed) AS deploy_days,
    countIf(kind = 'deploy' AND failed_attempt) AS failed_attempts,
    sum(length(lead_times_s)) AS commits,
    if(commits = 0, NULL, quantileExactInclusiveArray(0.5)(lead_times_s)) AS lead_time_median_s,
    countIf(kind = 'deploy' AND change_failure) AS change_failures,
    if(deployments = 0, NULL, change_failures / deployments) AS change_failure_rate,
    countIf(kind = 'deploy' AND recovery_time_s IS NOT NULL) AS recoveries,
    if(recoveries = 0, NULL, quantileExactInclusiveIf(0.5)(assumeNotNull(recovery_time_s), kind = 'deploy' AND recovery_time_s IS NOT NULL)) AS recovery_time_median_s,
    countIf(kind = 'restore') AS incidents_restored,
    if(incidents_restored = 0, NULL, quantileExactInclusiveIf(0.5)(assumeNotNull(restore_s), kind = 'restore')) AS time_to_restore_median_s,
    df_levels[arrayFirstIndex(b -> deployment_frequency_per_week >= b, df_bounds)] AS deployment_frequency_level,
    if(lead_time_median_s IS NULL, '', lt_levels[arrayFirstIndex(b -> assumeNotNull(lead_time_median_s) <= b, lt_bounds)]) AS lead_time_level,
    if(change_failure_rate IS NULL, '', cf_levels[arrayFirstIndex(b -> assumeNotNull(change_failure_rate) <= b, cf_bounds)]) AS change_failure_level,
    if(recovery_time_median_s IS NULL, '', rt_levels[arrayFirstIndex(b -> assumeNotNull(recovery_time_median_s) <= b, rt_bounds)]) AS recovery_time_level
FROM dora_period_rows
GROUP BY scope, team, capability, cohort, period, period_start
COMMENT 'DORA keys per scope, period grain and period, with performance levels per the 2024 report';

CREATE VIEW IF NOT EXISTS dora_metrics
AS
SELECT * EXCEPT (scope, capability, cohort)
FROM dora_metrics_all
WHERE scope = 'team'
COMMENT 'The four DORA keys per team and period (week, month) by the standard definitions, with performance levels per the 2024 DORA report';

CREATE VIEW IF NOT EXISTS dora_metrics_org
AS
SELECT * EXCEPT (scope, team, capability, cohort)
FROM dora_metrics_all
WHERE scope = 'org'
COMMENT 'dora_metrics pooled over the whole organisation per period';

CREATE VIEW IF NOT EXISTS dora_metrics_capability
AS
SELECT * EXCEPT (scope, team)
FROM dora_metrics_all
WHERE scope = 'capability'
COMMENT 'dora_metrics pooled per capability over its target teams: those that had adopted it at the time (cohort adopted) and those that had not (not_adopted)';

-- The levels of each key per report year: the report year is a filter (WHERE report_year = 2023).
CREATE VIEW IF NOT EXISTS dora_metric_levels
AS
SELECT
    m.team AS team,
    m.period AS period,
    m.period_start AS period_start,
    b.report_year AS report_year,
    m.key AS key,
    m.value AS value,
    argMin(b.level, b.rank) AS level
FROM
(
    SELECT team, period, period_start, kv.1 AS key, kv.2 AS value
    FROM dora_metrics
    ARRAY JOIN [
        ('deployment_frequency', CAST(deployment_frequency_per_week, 'Nullable(Float64)')),
        ('lead_time', lead_time_median_s),
        ('change_failure_rate', change_failure_rate),
        ('recovery_time', recovery_time_median_s)
    ] AS kv
    WHERE kv.2 IS NOT NULL
) AS m
INNER JOIN dora_benchmarks AS b ON b.key = m.key
WHERE if(b.higher_is_better, assumeNotNull(m.value) >= b.bound, assumeNotNull(m.value) <= b.bound)
GROUP BY team, period, period_start, report_year, key, value
COMMENT 'Each team''s DORA keys per period with their performance level per DORA report year';
