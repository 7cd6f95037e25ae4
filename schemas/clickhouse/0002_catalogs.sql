-- The team and capability catalogs (docs/catalogs.md), and the team an event counts for.
--
-- events.team becomes the RESOLVED team, decided by the worker when it writes the event: the
-- owner of `service` at occurred_at per the team catalog, else the event's own team, else the
-- team of its user at occurred_at, else 'unowned'. reported_team keeps what the event said.
--
-- team_catalog and capability_catalog are written by the worker (at start and after every
-- reload of the catalog files) and by `uptake catalog sync`. Both are ReplacingMergeTree tables
-- versioned by loaded_at: every write stores all rows again, and the newest row of a key wins,
-- so writing the same catalog twice changes nothing. Read them with FINAL.

ALTER TABLE events
    ADD COLUMN IF NOT EXISTS reported_team LowCardinality(String)
    COMMENT 'the team the event reported itself (empty: none); team is the resolved one'
    AFTER team;

ALTER TABLE events
    COMMENT COLUMN team 'the team the event counts for: owner of service at occurred_at (team_catalog), else reported_team, else the team of the user at occurred_at, else ''unowned''';

CREATE TABLE IF NOT EXISTS team_catalog
(
    kind LowCardinality(String) COMMENT 'service | user | team',
    name String COMMENT 'the service; for a user their user_key (the pseudonym events.user_key holds, never the raw id); the team or group',
    team LowCardinality(String) COMMENT 'kind service: the owning team; user: the team of the user; team: the team itself',
    parent LowCardinality(String) COMMENT 'kind team: the parent group (empty for a root group); else empty',
    valid_from DateTime64(3, 'UTC') COMMENT 'the statement holds from this moment (inclusive)',
    valid_to DateTime64(3, 'UTC') DEFAULT toDateTime64('2299-12-31 23:59:59.999', 3, 'UTC') COMMENT 'until this moment (exclusive); 2299-12-31 23:59:59.999 for still true',
    retracted UInt8 DEFAULT 0 COMMENT '1: a later catalog corrected the past and removed this interval; filter it out',
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when this version of the row was written; the newest wins'
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (kind, name, valid_from)
COMMENT 'Who owned which service, which user belonged to which team and where each team sat in the group tree, with validity intervals';

CREATE TABLE IF NOT EXISTS capability_catalog
(
    name String COMMENT 'the capability, as events name it (events.capability)',
    platform LowCardinality(String) COMMENT 'developer-infrastructure | data-ml | business-capability; empty when undeclared',
    owner LowCardinality(String) COMMENT 'the platform team that owns it; empty when undeclared',
    description String,
    event_types Array(String) COMMENT 'the event types that count as use',
    apis Array(String) COMMENT 'api_call events count only for these APIs (empty: any API)',
    target_teams Array(String) COMMENT 'the teams it is meant for (groups expanded to their leaf teams when written): the denominator of its adoption rate',
    north_star_name String COMMENT 'the north-star metric (empty: none)',
    north_star_outcome String COMMENT 'the data.outcome.name of the api_call events it reads',
    north_star_measure LowCardinality(String) COMMENT 'count | value_sum | decision_rate',
    north_star_decision String COMMENT 'value_sum: only outcomes with this decision; decision_rate: the share of them',
    north_star_unit LowCardinality(String),
    declared UInt8 COMMENT '1: declared in the capability catalog file; 0: seen in events only (counted under its own name)',
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when this version of the row was written; the newest wins'
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY name
COMMENT 'The platform capabilities: declared ones from the capability catalog, undeclared ones seen in events';

CREATE VIEW IF NOT EXISTS catalog_teams
(
    team String COMMENT 'a team adoption is measured over',
    parent String COMMENT 'its parent group (empty for a root)'
)
AS
WITH current AS
(
    SELECT name, parent
    FROM team_catalog FINAL
    WHERE kind = 'team' AND retracted = 0 AND valid_from <= now64(3) AND now64(3) < valid_to
)
SELECT name AS team, parent
FROM current
WHERE name NOT IN (SELECT parent FROM current WHERE parent != '')
COMMENT 'The teams as of now: leaf groups of the group tree (groups without child groups)';
