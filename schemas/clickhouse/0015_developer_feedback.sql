-- Developer feedback as a first-class signal (issue #18; docs/analysts.md, "Developer feedback").
--
-- `feedback` events (docs/events.md) land in `events` like every event, so the sink's
-- exactly-once guarantee covers them. A rating is an opinion about a capability, never its use:
-- capability_use_days (0008), usage_day_counted (0010) and developer_adoption_weekly (0009) are
-- redefined here with feedback left out, so no adoption view counts a respondent or their team
-- as a user, nor a rating among the events of use.
--
-- Scales: csat 1-5 (satisfied 4-5, neutral 3, dissatisfied 1-2; CSAT = satisfied / responses)
-- and nps 0-10 (promoters 9-10, passives 7-8, detractors 0-6; NPS = 100 x (promoters -
-- detractors) / responses). Every response counts, also a second one by the same respondent in
-- a month; a month of a capability has one row per scale, the two are never mixed.
--
-- Active users: the distinct pseudonymous users whose events count as use of the capability by
-- the catalog's rule (capability_user_days: usage_user_day of 0009 under the rule of
-- capability_use_days) in the calendar month. The response rate is the share of those active users who answered that month.

CREATE OR REPLACE VIEW capability_use_days
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
WHERE u.event_type != 'feedback'
  AND (empty(c.event_types) OR has(c.event_types, u.event_type))
  AND (u.event_type != 'api_call' OR empty(c.apis) OR has(c.apis, u.api))
GROUP BY team, capability, day
COMMENT 'The days each team used each capability, by the catalog''s event_types and apis (feedback is never use)';

-- usage_day_counted (0010) took any event type of an undeclared capability on a day of use.
CREATE OR REPLACE VIEW usage_day_counted
AS
SELECT u.*
FROM usage_day AS u
LEFT JOIN (SELECT name, event_types FROM capability_catalog FINAL) AS c ON c.name = u.capability
WHERE u.event_type != 'feedback'
  AND (empty(c.event_types) OR has(c.event_types, u.event_type))
  AND (u.team, u.capability, toDate(u.bucket))
      IN (SELECT team, capability, day FROM capability_use_days)
COMMENT 'usage_day rows that count as use of their capability (states not finalized): event types by the catalog (never feedback), days of use by capability_use_days';

CREATE VIEW IF NOT EXISTS capability_user_days
(
    user_key String COMMENT 'pseudonymous user',
    capability String,
    day Date
)
AS
SELECT DISTINCT u.user_key AS user_key, u.capability AS capability, u.day AS day
FROM usage_user_day AS u
LEFT JOIN (SELECT name, event_types, apis FROM capability_catalog FINAL) AS c
    ON c.name = u.capability
WHERE u.event_type != 'feedback'
  AND (empty(c.event_types) OR has(c.event_types, u.event_type))
  AND (u.event_type != 'api_call' OR empty(c.apis) OR has(c.apis, u.api))
COMMENT 'The days each user used each capability, by the rule of capability_use_days (feedback is never use)';

-- developer_adoption_weekly (0009) applied the rule to usage_user_day itself: it reads
-- capability_user_days now, its columns unchanged.
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
    uses AS (SELECT user_key, capability, day FROM capability_user_days),
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

CREATE VIEW IF NOT EXISTS feedback_responses
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    month Date COMMENT 'first day of the UTC month of occurred_at',
    capability String COMMENT 'the capability rated',
    team String,
    service String,
    user_key String COMMENT 'the respondent: keyed BLAKE2b-128 of the user id, never the raw id; empty when the event named no user',
    scale String COMMENT 'csat (1-5) or nps (0-10)',
    score UInt8,
    comment String COMMENT 'free text, at most 1,000 characters; empty when none was given',
    source String
)
AS
SELECT
    event_id,
    occurred_at,
    toStartOfMonth(occurred_at) AS month,
    capability,
    team,
    service,
    user_key,
    JSONExtractString(data, 'scale') AS scale,
    toUInt8(JSONExtractUInt(data, 'score')) AS score,
    JSONExtractString(data, 'comment') AS comment,
    source
FROM events FINAL
WHERE event_type = 'feedback'
COMMENT 'Every developer feedback response, one row per event, with its pseudonymous respondent and comment';

CREATE VIEW IF NOT EXISTS capability_active_users_monthly
(
    capability String,
    month Date COMMENT 'first day of the UTC month',
    active_users UInt64 COMMENT 'distinct users with use of the capability in the month',
    users Array(String) COMMENT 'their pseudonymous user_keys'
)
AS
SELECT
    capability,
    toStartOfMonth(day) AS month,
    length(users) AS active_users,
    groupUniqArray(user_key) AS users
FROM capability_user_days
GROUP BY capability, month
COMMENT 'Per capability and month: the users whose events count as its use (the denominator of the feedback response rate)';

CREATE VIEW IF NOT EXISTS feedback_monthly
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
WITH r AS
(
    SELECT
        capability,
        month,
        scale,
        count() AS responses,
        groupUniqArrayIf(user_key, user_key != '') AS respondent_keys,
        avg(score) AS mean_score,
        countIf(score >= if(scale = 'csat', 4, 9)) AS favourable,
        countIf(score = 3 AND scale = 'csat' OR score IN (7, 8) AND scale = 'nps') AS neutral,
        countIf(score <= if(scale = 'csat', 2, 6)) AS unfavourable
    FROM feedback_responses
    GROUP BY capability, month, scale
)
SELECT
    r.capability AS capability,
    r.month AS month,
    r.scale AS scale,
    r.responses AS responses,
    toUInt64(length(r.respondent_keys)) AS respondents,
    r.mean_score AS mean_score,
    r.favourable AS favourable,
    r.neutral AS neutral,
    r.unfavourable AS unfavourable,
    if(r.scale = 'csat', r.favourable / r.responses, NULL) AS csat,
    if(r.scale = 'nps', 100 * (toInt64(r.favourable) - toInt64(r.unfavourable)) / r.responses, NULL) AS nps,
    a.active_users AS active_users,
    toUInt64(arrayCount(x -> has(a.users, x), r.respondent_keys)) AS active_respondents,
    if(a.active_users = 0, NULL, active_respondents / a.active_users) AS response_rate
FROM r
LEFT JOIN capability_active_users_monthly AS a ON a.capability = r.capability AND a.month = r.month
COMMENT 'Developer feedback per capability, month and scale: CSAT or NPS, response counts, and the response rate against the capability''s active users that month';
