-- Review findings of issue #17 (docs/analysts.md, "Use and denominators").
--
-- 1. adoption_active_days (0005) and its materialized view: filled from every event, read by no
--    view, dashboard, report or code since 0010 (activity is counted from capability_use_days).
--    Dropped: the materialized view first, so no insert into `events` lands in a dropped table.
DROP TABLE IF EXISTS adoption_active_days_mv;

DROP TABLE IF EXISTS adoption_active_days;
