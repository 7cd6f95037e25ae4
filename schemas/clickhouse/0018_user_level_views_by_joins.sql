-- Dashboard query speed (issue #15; docs/benchmarks.md, "Dashboard queries at 100M events").
--
-- developer_adoption_weekly (0015) joined every team-week's array of members with every
-- capability-week's array of active users on the week alone and counted with has(): each of
-- the teams x capabilities x weeks rows carried a copy of the week's active users (26 GiB at 1M
-- events, 500 teams). feedback_monthly (0015) did the same per capability, month and scale
-- with the respondents. Same columns and rows here, with joins on (week, user) and
-- (capability, month, user) of distinct rows, counted per group:
--
-- - developer_adoption_weekly: one row per team-week with members and per capability with an
--   active user that week (as the inner join on the week gave), active_members_28d = members
--   of that team-week among the capability's users active in the 28 days ending the week;
-- - feedback_monthly: respondents = distinct non-empty user_keys, active_respondents = those
--   among the capability's active users of the month (capability_user_days), active_users 0
--   and response_rate NULL for a month without active users.

CREATE OR REPLACE VIEW developer_adoption_weekly
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
    -- A use on day d counts for the weeks toMonday(d) + 7i (i < 5) whose 28 days ending
    -- least(week + 6, last_day) hold d; d is never after that end (last_day is the newest day),
    -- so a user's (or a capability's) uses of one week count for a later week exactly when the
    -- newest of them is within its 28 days.
    user_weeks AS
    (
        SELECT capability, user_key, toMonday(day) AS use_week, max(day) AS last_use
        FROM capability_user_days
        GROUP BY capability, user_key, use_week
    ),
    active AS
    (
        SELECT DISTINCT capability, week, user_key
        FROM user_weeks
        ARRAY JOIN arrayMap(i -> use_week + 7 * i, range(5)) AS week
        WHERE last_use > least(week + 6, last_day) - 28
    ),
    weeks AS (SELECT DISTINCT toMonday(day) AS week FROM usage_user_day),
    member_rows AS
    (
        SELECT DISTINCT m.team AS team, w.week AS week, m.name AS user_key
        FROM (SELECT name, team, valid_from, valid_to FROM team_catalog FINAL
              WHERE kind = 'user' AND retracted = 0) AS m
        CROSS JOIN weeks AS w
        WHERE toDate(m.valid_from) <= least(w.week + 6, last_day)
          AND m.valid_to > toDateTime64(least(w.week + 6, last_day), 3, 'UTC') + INTERVAL 1 DAY - INTERVAL 1 MILLISECOND
    ),
    members AS (SELECT team, week, count() AS members FROM member_rows GROUP BY team, week),
    capability_weeks AS
    (
        SELECT DISTINCT capability, week
        FROM
        (
            SELECT capability, use_week, max(last_use) AS last_use
            FROM user_weeks
            GROUP BY capability, use_week
        )
        ARRAY JOIN arrayMap(i -> use_week + 7 * i, range(5)) AS week
        WHERE last_use > least(week + 6, last_day) - 28
    )
-- One row per (team-week with members, capability with an active user that week), and one per
-- member active in the capability: every such member's row has a pair row of its own, so the
-- groups are the pairs. A union rather than a join keeps the panels' team and capability filters
-- pushed down into both sides; the members
-- (few with a team filter) are the hash tables of the joins, the active users stream past them.
SELECT
    team,
    capability,
    week,
    toUInt64(max(team_members)) AS members,
    toUInt64(sum(active_member)) AS active_members_28d,
    if(members = 0, NULL, active_members_28d / members) AS active_member_share
FROM
(
    SELECT m.team AS team, c.capability AS capability, m.week AS week,
        m.members AS team_members, toUInt64(0) AS active_member
    FROM members AS m
    INNER JOIN capability_weeks AS c ON c.week = m.week
    UNION ALL
    SELECT m.team AS team, a.capability AS capability, m.week AS week,
        toUInt64(0) AS team_members, toUInt64(1) AS active_member
    FROM active AS a
    INNER JOIN member_rows AS m ON m.week = a.week AND m.user_key = a.user_key
)
GROUP BY team, capability, week
COMMENT 'Developer-level adoption: the share of each team''s members who used each capability in the 28 days ending each week';

CREATE OR REPLACE VIEW feedback_monthly
(
    capability String,
    month Date COMMENT 'first day of the UTC month',
    scale String COMMENT 'csat or nps: one row per scale',
    responses UInt64 COMMENT 'feedback events (every response, also repeated ones)',
    respondents UInt64 COMMENT 'distinct respondents (user_key); responses without a user do not count',
    mean_score Float64,
    favourable UInt64 COMMENT 'csat: satisfied (4-5); nps: promoters (9-10)',
    neutral UInt64 COMMENT 'csat: 3; nps: passives (7-8)',
    unfavourable UInt64 COMMENT 'csat: dissatisfied (1-2); nps: detractors (0-6)',
    csat Nullable(Float64) COMMENT 'csat rows: favourable / responses, 0-1; NULL on nps rows',
    nps Nullable(Float64) COMMENT 'nps rows: 100 x (favourable - unfavourable) / responses, -100..100; NULL on csat rows',
    active_users UInt64 COMMENT 'capability_active_users_monthly.active_users: users with use of the capability that month',
    active_respondents UInt64 COMMENT 'respondents who were among those active users',
    response_rate Nullable(Float64) COMMENT 'active_respondents / active_users; NULL without active users'
)
AS
WITH
    r AS
    (
        SELECT
            capability,
            month,
            scale,
            count() AS responses,
            uniqExactIf(user_key, user_key != '') AS respondent_count,
            avg(score) AS mean_score,
            countIf(score >= if(scale = 'csat', 4, 9)) AS favourable,
            countIf(score = 3 AND scale = 'csat' OR score IN (7, 8) AND scale = 'nps') AS neutral,
            countIf(score <= if(scale = 'csat', 2, 6)) AS unfavourable
        FROM feedback_responses
        GROUP BY capability, month, scale
    ),
    active AS
    (
        SELECT DISTINCT capability, toStartOfMonth(day) AS month, user_key
        FROM capability_user_days
    ),
    active_counts AS
    (
        SELECT capability, month, count() AS active_users FROM active GROUP BY capability, month
    ),
    hits AS
    (
        SELECT p.capability AS capability, p.month AS month, p.scale AS scale, count() AS active_respondents
        FROM
        (
            SELECT DISTINCT capability, month, scale, user_key
            FROM feedback_responses
            WHERE user_key != ''
        ) AS p
        INNER JOIN active AS a
            ON a.capability = p.capability AND a.month = p.month AND a.user_key = p.user_key
        GROUP BY capability, month, scale
    )
SELECT
    r.capability AS capability,
    r.month AS month,
    r.scale AS scale,
    r.responses AS responses,
    toUInt64(r.respondent_count) AS respondents,
    r.mean_score AS mean_score,
    r.favourable AS favourable,
    r.neutral AS neutral,
    r.unfavourable AS unfavourable,
    if(r.scale = 'csat', r.favourable / r.responses, NULL) AS csat,
    if(r.scale = 'nps', 100 * (toInt64(r.favourable) - toInt64(r.unfavourable)) / r.responses, NULL) AS nps,
    toUInt64(a.active_users) AS active_users,
    toUInt64(h.active_respondents) AS active_respondents,
    if(active_users = 0, NULL, active_respondents / active_users) AS response_rate
FROM r
LEFT JOIN active_counts AS a ON a.capability = r.capability AND a.month = r.month
LEFT JOIN hits AS h ON h.capability = r.capability AND h.month = r.month AND h.scale = r.scale
COMMENT 'Developer feedback per capability, month and scale: CSAT or NPS, response counts, and the response rate against the capability''s active users that month';
