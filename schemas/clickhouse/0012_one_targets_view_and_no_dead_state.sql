-- Review findings of issue #17 (docs/analysts.md, "Use and denominators").
--
-- 1. adoption_active_days (0005) and its materialized view: filled from every event, read by no
--    view, dashboard, report or code since 0010 (activity is counted from capability_use_days).
--    Dropped: the materialized view first, so no insert into `events` lands in a dropped table.
DROP TABLE IF EXISTS adoption_active_days_mv;

DROP TABLE IF EXISTS adoption_active_days;

-- 2. capability_targets_daily (0008) and capability_targets_daily_all (0010) were near-copies:
--    the second is the first plus every undeclared capability seen in use (every leaf team of
--    each day). One definition now, in capability_targets_daily_all with its `declared` column;
--    capability_targets_daily is that view filtered to declared = 1, with its columns unchanged,
--    so every view and query that names either keeps working.
CREATE OR REPLACE VIEW capability_targets_daily_all
(
    capability String,
    day Date,
    declared UInt8 COMMENT '1 when declared in the capability catalog',
    target_teams Array(String) COMMENT 'the target teams that existed that day (every leaf team for an undeclared capability)',
    targets UInt64 COMMENT 'the denominator of that day''s adoption and active rates'
)
AS
WITH days AS (SELECT day, groupArray(team) AS teams FROM catalog_team_days GROUP BY day)
SELECT
    c.name AS capability,
    d.day AS day,
    c.declared AS declared,
    if(empty(c.target_teams), d.teams, arrayFilter(t -> has(d.teams, t), c.target_teams))
        AS target_teams,
    toUInt64(length(target_teams)) AS targets
FROM
(
    SELECT name, declared, target_teams
    FROM capability_catalog FINAL
    WHERE declared = 1
    UNION ALL
    SELECT DISTINCT capability AS name, toUInt8(0) AS declared, CAST([], 'Array(String)')
    FROM capability_use_days
    WHERE capability NOT IN (SELECT name FROM capability_catalog FINAL WHERE declared = 1)
) AS c
CROSS JOIN days AS d
COMMENT 'Each capability''s target teams as they were on each day: a declared one''s catalog list restricted to the leaf teams of that day (every leaf team when the list is empty); an undeclared one seen in use, every leaf team of that day';

CREATE OR REPLACE VIEW capability_targets_daily
(
    capability String,
    day Date,
    target_teams Array(String) COMMENT 'the target teams that existed that day',
    targets UInt64 COMMENT 'the denominator of that day''s adoption and active rates'
)
AS
SELECT capability, day, target_teams, targets
FROM capability_targets_daily_all
WHERE declared = 1
COMMENT 'Each declared capability''s target teams as they were on each day (capability_targets_daily_all, declared = 1)';
