"""What lets a PM move around the dashboards: annotations (capability launches, a team's
lifecycle milestones, production deployments) and the data link from a team name to the team
drill-down.

The catalog holds no launch date, so a capability's launch is its first use by any team
(`adoption_first_use.launched_at`, the same instant "days since launch" counts from). Every
annotation query returns `time`, `text` and `tags`: Grafana draws one marker per row.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as sdk

from pipeline.dashboards.board import annotation
from pipeline.dashboards.names import name_is

TEAM_DASHBOARD_UID = "uptake-team"
TEAM_VARIABLE = "team"

DECLARED = "capability IN (SELECT name FROM capability_catalog FINAL WHERE declared = 1)"

LAUNCHES_SQL = f"""
SELECT launched_at AS time, concat(capability, ' launched') AS text,
    ['launch', capability] AS tags
FROM adoption_first_use
WHERE adoption_order = 1 AND {DECLARED} AND $__timeFilter(launched_at)
ORDER BY time
"""

MILESTONES_SQL = f"""
SELECT toDateTime64(occurred_at, 3, 'UTC') AS time,
    concat(capability, ': ', milestone) AS text, ['milestone', milestone, capability] AS tags
FROM adoption_milestones_current
WHERE {name_is("team", TEAM_VARIABLE)} AND $__dateFilter(occurred_at)
ORDER BY time, capability, milestone
"""


def deploys_sql(team_filter: str) -> str:
    return f"""
SELECT deployed_at AS time, concat(service, ' deployed to production: ', status) AS text,
    ['deploy', status, team] AS tags
FROM deployments FINAL
WHERE environment = 'production' AND $__timeFilter(deployed_at) AND {team_filter}
ORDER BY time
"""


def launches() -> sdk.AnnotationQuery:
    return annotation("Capability launches", LAUNCHES_SQL, "blue")


def team_milestones() -> sdk.AnnotationQuery:
    return annotation("Team milestones", MILESTONES_SQL, "green")


def team_deploys() -> sdk.AnnotationQuery:
    return annotation("Production deploys", deploys_sql(name_is("team", TEAM_VARIABLE)), "purple")


def all_deploys() -> sdk.AnnotationQuery:
    """Every team's production deployments: many markers, so off until toggled on."""
    return annotation("Production deploys", deploys_sql("1 = 1"), "purple", enabled=False)


def team_link(team_expression: str) -> dict[str, str]:
    """A data link to the team drill-down for the team `team_expression` names (a Grafana link
    template such as `${__value.raw}`), over the same time range; `:percentencode` keeps any
    name one URL value."""
    return {
        "title": "Team drill-down",
        "url": (
            f"/d/{TEAM_DASHBOARD_UID}?${{__url_time_range}}"
            f"&var-{TEAM_VARIABLE}=${{{team_expression}:percentencode}}"
        ),
    }
