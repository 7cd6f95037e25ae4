-- Dashboard query speed (issue #15; docs/benchmarks.md, "Dashboard queries at 100M events").
--
-- adoption_target_days (0009) and adoption_rates_daily (0008) built every capability x day as an
-- array of its target teams (capability_targets_daily: a cross join of capabilities with the
-- days' arrays of leaf teams, then arrayFilter(has(...)) over them) and looked each team up in
-- per-capability maps of first uses and in per-capability-day arrays of the teams active in 28
-- days (every use day copied onto 28 days). Their cost grew with capabilities x days x teams x
-- teams. Same columns and the same rows here, computed with joins:
--
-- - the target (capability, day, team) rows: a capability with an empty target list pairs with
--   every leaf team of each day (catalog_team_days); one with a list joins its listed teams with
--   the days on which each was a leaf team (a team listed twice gives two rows, as before);
-- - adopted and active_28d from one ASOF join with the team's newest use day on or before the
--   day (capability_use_days): adopted when there is one (first use on or before the day),
--   active in 28 days when it is fewer than 28 days before the day;
-- - adoption_rates_daily counts those rows per capability and day, keeping the days on which a
--   declared capability has no target team (target_teams 0, rates NULL).

CREATE OR REPLACE VIEW adoption_target_days
(
    capability String,
    day Date,
    team String,
    adopted UInt8 COMMENT 'first use on or before the day',
    active_28d UInt8 COMMENT 'used it in the 28 days ending that day'
)
AS
WITH
    caps AS (SELECT name, target_teams FROM capability_catalog FINAL WHERE declared = 1),
    pairs AS
    (
        SELECT c.name AS capability, d.day AS day, d.team AS team
        FROM (SELECT name FROM caps WHERE empty(target_teams)) AS c
        CROSS JOIN catalog_team_days AS d
        UNION ALL
        SELECT l.capability AS capability, d.day AS day, d.team AS team
        FROM (SELECT name AS capability, team FROM caps ARRAY JOIN target_teams AS team) AS l
        INNER JOIN catalog_team_days AS d ON d.team = l.team
    )
SELECT
    p.capability AS capability,
    p.day AS day,
    p.team AS team,
    toUInt8(u.used = 1) AS adopted,
    toUInt8(u.used = 1 AND dateDiff('day', u.day, p.day) < 28) AS active_28d
FROM pairs AS p
ASOF LEFT JOIN
(
    SELECT capability, team, day, toUInt8(1) AS used FROM capability_use_days
) AS u
    ON u.capability = p.capability AND u.team = p.team AND u.day <= p.day
COMMENT 'Each declared capability''s target teams of each day, adopted or not and active in 28 days or not';

CREATE OR REPLACE VIEW adoption_rates_daily
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
    counts AS
    (
        SELECT
            capability,
            day,
            count() AS targets,
            countIf(adopted) AS adopted_targets,
            countIf(active_28d) AS active_targets
        FROM adoption_target_days
        GROUP BY capability, day
    ),
    grid AS
    (
        SELECT c.name AS capability, d.day AS day
        FROM (SELECT name FROM capability_catalog FINAL WHERE declared = 1) AS c
        CROSS JOIN (SELECT DISTINCT day FROM catalog_team_days) AS d
    )
SELECT
    g.capability AS capability,
    g.day AS day,
    toUInt64(n.targets) AS target_teams,
    toUInt64(n.adopted_targets) AS adopted_target_teams,
    toUInt64(n.active_targets) AS active_target_teams_28d,
    if(target_teams = 0, NULL, adopted_target_teams / target_teams) AS adoption_rate,
    if(target_teams = 0, NULL, active_target_teams_28d / target_teams) AS active_rate_28d
FROM grid AS g
LEFT JOIN counts AS n ON n.capability = g.capability AND n.day = g.day
COMMENT 'Per capability and day: cumulative adoption and the 28-day active rate, both over the target teams of that day';
