"""Platform adoption overview (platform PMs): who adopts which capability, how fast, who churns.

Reads the analyst views of schemas/clickhouse/0004_views.sql (adoption_*, team_*; since 0010
they follow the one definition of use and the daily target teams of 0008) and the
lifecycle of 0005_lifecycle.sql (adoption_milestones_current, adoption_funnel). Only declared
capabilities (capability_catalog) are shown: the tools teams used before the platform are
counted under their own names in the warehouse, but they are not the platform's adoption.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries as sdk_timeseries

from pipeline.dashboards import navigation, panels
from pipeline.dashboards.board import Board, clickhouse, query_variable, team_variables
from pipeline.dashboards.names import chosen_teams, name_in

UID = "uptake-adoption"

DECLARED = "capability IN (SELECT name FROM capability_catalog FINAL WHERE declared = 1)"
CHOSEN = name_in("capability", "capability")
CAPABILITIES = f"{DECLARED} AND {CHOSEN}"
# The chosen teams and organisation units (All: every team, the whole organisation).
TEAMS = chosen_teams("team")
# Whole weeks (Monday) that overlap the time range.
WEEKS = "week >= toMonday(toDate($__fromTime)) AND week <= toDate($__toTime)"


def build() -> Board:
    board = Board(
        uid=UID,
        title="Uptake — Platform adoption overview",
        description=(
            "Which teams adopt which platform capability, how fast, how broadly and who churns. "
            "A team adopts a capability with its first use; activation and churn follow the "
            "lifecycle rules of docs/lifecycle.md. Target teams (the adoption rate's "
            "denominator) come from the capability catalog."
        ),
        tags=("uptake", "adoption"),
    )
    board.annotation(navigation.launches())
    board.variable(
        query_variable(
            "capability",
            "Capability",
            "SELECT name FROM capability_catalog FINAL WHERE declared = 1 ORDER BY name",
            multi=True,
            include_all=True,
            description="Declared platform capabilities (config/capabilities.yaml).",
        )
    )
    team_variables(
        board,
        "SELECT DISTINCT team FROM usage_day ORDER BY team",
        "Teams with events in the warehouse (resolved team, events.team).",
    )

    board.row("In the selected period")
    board.add(
        panels.stat(
            "Teams using the platform",
            "Teams that used at least one of the chosen capabilities in the period.",
            [
                clickhouse(
                    f"""
                    SELECT uniqExact(team) AS teams
                    FROM usage_day_counted
                    WHERE $__dateFilter(bucket) AND {CAPABILITIES} AND {TEAMS}
                    """
                )
            ],
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Teams that have adopted",
            "Of the target teams of the chosen capabilities on the last day of the period "
            "(capability_targets_daily), the share that had used (first use, by the catalog's "
            "definition of use) at least one chosen capability it is a target of.",
            [
                clickhouse(
                    f"""
                    SELECT
                        if(uniqExact(team) = 0, NULL, uniqExactIf(team, adopted) / uniqExact(team))
                            AS adopted
                    FROM adoption_target_days
                    WHERE day = (
                        SELECT max(day) FROM capability_targets_daily
                        WHERE day <= toDate($__toTime)
                    ) AND {CAPABILITIES} AND {TEAMS}
                    """
                )
            ],
            unit="percentunit",
            decimals=0,
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "New adopters",
            "First uses in the period: (team, capability) pairs whose first use fell in it.",
            [
                clickhouse(
                    f"""
                    SELECT count() AS new_adopters
                    FROM adoption_first_use
                    WHERE $__timeFilter(first_used_at) AND {CAPABILITIES}
                        AND {TEAMS}
                    """
                )
            ],
            thresholds=((None, "green"),),
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Activated",
            "Activations in the period: a team used a capability on enough distinct days "
            "(UPTAKE_ACTIVATION_DAYS within UPTAKE_ACTIVATION_WINDOW_DAYS).",
            [
                clickhouse(
                    f"""
                    SELECT count() AS activated
                    FROM adoption_milestones_current
                    WHERE milestone = 'activated' AND $__dateFilter(occurred_at)
                        AND {CAPABILITIES} AND {TEAMS}
                    """
                )
            ],
            thresholds=((None, "green"),),
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Churned",
            "Churns in the period: a team stopped using a capability for UPTAKE_CHURN_DAYS.",
            [
                clickhouse(
                    f"""
                    SELECT count() AS churned
                    FROM adoption_milestones_current
                    WHERE milestone = 'churned' AND $__dateFilter(occurred_at) AND {CAPABILITIES}
                        AND {TEAMS}
                    """
                )
            ],
            thresholds=((None, "green"), (1, "orange")),
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Median time to first use",
            "Days from a capability's first use by any team to a later team's first use, "
            "median over the teams that adopted in the period.",
            [
                clickhouse(
                    f"""
                    SELECT quantileExactInclusive(0.5)(days_since_launch) AS days
                    FROM adoption_first_use
                    WHERE adoption_order > 1 AND $__timeFilter(first_used_at) AND {CAPABILITIES}
                        AND {TEAMS}
                    """
                )
            ],
            unit="d",
            decimals=1,
            no_value="no adopter",
        ),
        4,
        4,
    )

    board.row("Adoption over time")
    board.add(
        panels.timeseries(
            "Teams using each capability",
            "Teams that used each capability per week (Monday).",
            [
                clickhouse(
                    f"""
                    SELECT week AS time, capability, active_teams AS teams
                    FROM adoption_weekly
                    WHERE {WEEKS} AND {CAPABILITIES}
                    ORDER BY time, capability
                    """,
                    "timeseries",
                )
            ],
            decimals=0,
        ),
        12,
        9,
    )
    board.add(
        _adopted_beside_active(
            "Adoption rate and 28-day active rate",
            "Per capability and day, over its target teams as they were that day "
            "(adoption_target_days; with every team, adoption_rates_daily): cumulative "
            "adoption (had used it by the day; never falls) beside the active rate (used it in "
            "the 28 days ending that day; falls after churn). Use as the capability catalog "
            "defines it (event types and APIs).",
            series="capability",
            pairs="adoption_target_days",
            where=f"$__dateFilter(day) AND {CAPABILITIES}",
        ),
        12,
        9,
    )
    board.add(
        panels.timeseries(
            "New adopters, activations, churns",
            "Per week: first uses (new adopters), activations, churns and reactivations of "
            "the chosen capabilities, counted per team and capability.",
            [
                clickhouse(
                    f"""
                    SELECT week AS time, kind, count() AS teams
                    FROM
                    (
                        SELECT toMonday(first_use_day) AS week, 'new adopters' AS kind
                        FROM adoption_first_use
                        WHERE {CAPABILITIES} AND {TEAMS}
                        UNION ALL
                        SELECT toMonday(occurred_at) AS week, milestone AS kind
                        FROM adoption_milestones_current
                        WHERE milestone IN ('activated', 'churned', 'reactivated')
                            AND {CAPABILITIES} AND {TEAMS}
                    )
                    WHERE {WEEKS}
                    GROUP BY time, kind
                    ORDER BY time, kind
                    """,
                    "timeseries",
                )
            ],
            bars=True,
            stack=True,
            decimals=0,
        ),
        24,
        8,
    )

    board.row("By platform type, organisation unit and developer")
    board.add(
        _adopted_beside_active(
            "Adoption by platform type",
            "Per platform type of the capability catalog and day: the share of target "
            "(team, capability) pairs of its capabilities that had adopted (cumulative) and "
            "that were active in the 28 days ending that day (adoption_target_days; with every "
            "team, adoption_by_platform).",
            series="platform",
            pairs=(
                "adoption_target_days AS d INNER JOIN (SELECT name, platform "
                "FROM capability_catalog FINAL WHERE declared = 1) AS c ON c.name = d.capability"
            ),
            where="$__dateFilter(day)",
        ),
        12,
        9,
    )
    board.add(
        panels.table(
            "Adoption by organisation unit",
            "Per group of the Backstage hierarchy (every target team under it, at any depth) "
            "and capability, on the newest day of the period: target teams (N), adopted, "
            "active in 28 days (adoption_by_group).",
            [
                clickhouse(
                    f"""
                    SELECT
                        group_name,
                        capability,
                        target_teams AS n_target_teams,
                        adopted_target_teams,
                        active_target_teams_28d,
                        adoption_rate,
                        active_rate_28d
                    FROM adoption_by_group
                    WHERE day = (
                        SELECT max(day) FROM adoption_by_group WHERE $__dateFilter(day)
                    ) AND {CAPABILITIES}
                    ORDER BY group_name, capability
                    """
                )
            ],
            decimals=2,
            column_units={"adoption_rate": "percentunit", "active_rate_28d": "percentunit"},
        ),
        12,
        9,
    )
    board.add(
        panels.table(
            "Developer adoption",
            "Per team and capability, in the newest week of the period: the team's members "
            "(team catalog memberships, N) and the share of them who used the capability in "
            "the 28 days ending that week (developer_adoption_weekly).",
            [
                clickhouse(
                    f"""
                    SELECT
                        team,
                        capability,
                        members AS n_members,
                        active_members_28d,
                        active_member_share
                    FROM developer_adoption_weekly
                    WHERE week = (
                        SELECT max(week) FROM developer_adoption_weekly
                        WHERE week >= toMonday(toDate($__fromTime)) AND week <= toDate($__toTime)
                    ) AND {CAPABILITIES} AND {TEAMS}
                    ORDER BY team, capability
                    """
                )
            ],
            decimals=2,
            column_units={"active_member_share": "percentunit"},
        ),
        24,
        9,
    )

    board.row("Breadth and depth")
    board.add(
        panels.table(
            "Teams x capabilities",
            "Events that count as use of each capability by each team in the period (blank: "
            "not used). A row with many cells is a team that uses the platform broadly.",
            [
                clickhouse(
                    f"""
                    SELECT team, capability, sum(events) AS events
                    FROM team_depth_weekly
                    WHERE {WEEKS} AND {CAPABILITIES} AND {TEAMS}
                    GROUP BY team, capability
                    ORDER BY team, capability
                    """
                )
            ],
            heat=True,
            transformations=[
                panels.transformation(
                    "groupingToMatrix",
                    columnField="capability",
                    rowField="team",
                    valueField="events",
                    emptyValue="empty",
                )
            ],
        ),
        12,
        10,
    )
    board.add(
        panels.heatmap(
            "Breadth per team",
            "Declared capabilities each team used per week: darker is broader adoption.",
            [
                clickhouse(
                    f"""
                    SELECT week AS time, team, declared_capabilities AS capabilities
                    FROM team_breadth_weekly
                    WHERE {WEEKS} AND {TEAMS}
                    ORDER BY time, team
                    """,
                    "timeseries",
                )
            ],
            min_interval="1w",
        ),
        12,
        10,
    )

    board.row("Time to first use and retention")
    board.add(
        panels.barchart(
            "Time to first use",
            "Days from a capability's first use by any team to each later team's first use: "
            "median and slowest, over the teams that had adopted by the end of the period.",
            [
                clickhouse(
                    f"""
                    SELECT
                        capability,
                        quantileExactInclusive(0.5)(days_since_launch) AS median,
                        max(days_since_launch) AS slowest
                    FROM adoption_first_use
                    WHERE adoption_order > 1 AND first_used_at <= $__toTime AND {CAPABILITIES}
                        AND {TEAMS}
                    GROUP BY capability
                    ORDER BY capability
                    """
                )
            ],
            x_field="capability",
            unit="d",
            horizontal=True,
            decimals=1,
        ),
        12,
        9,
    )
    board.add(
        panels.table(
            "Cohort retention",
            "Of the teams that first used a chosen capability in a week (the cohort), the share "
            "still using it N weeks later.",
            [
                clickhouse(
                    f"""
                    SELECT
                        toString(cohort_week) AS cohort,
                        concat('week ', toString(weeks_since_adoption)) AS age,
                        sum(retained_teams) / sum(cohort_teams) AS retention
                    FROM adoption_retention
                    WHERE cohort_week >= toMonday(toDate($__fromTime))
                        AND cohort_week <= toDate($__toTime) AND {CAPABILITIES}
                    GROUP BY cohort_week, weeks_since_adoption
                    ORDER BY cohort_week, weeks_since_adoption
                    """
                )
            ],
            unit="percentunit",
            decimals=0,
            heat=True,
            transformations=[
                panels.transformation(
                    "groupingToMatrix",
                    columnField="age",
                    rowField="cohort",
                    valueField="retention",
                    emptyValue="empty",
                )
            ],
        ),
        12,
        9,
    )
    board.add(
        panels.barchart(
            "Lifecycle now",
            "Per capability, as of the newest data: teams that ever used it, activated it, used "
            "it in the last 28 days, and that are churned now (docs/lifecycle.md).",
            [
                clickhouse(
                    f"""
                    SELECT
                        capability,
                        teams_used AS used,
                        teams_activated AS activated,
                        teams_active_28d AS active_28d,
                        teams_churned_now AS churned
                    FROM adoption_funnel
                    WHERE {CAPABILITIES}
                    ORDER BY capability
                    """
                )
            ],
            x_field="capability",
            decimals=0,
        ),
        24,
        9,
    )
    _feedback_row(board)
    return board


# Whole months that overlap the time range.
MONTHS = "month >= toStartOfMonth(toDate($__fromTime)) AND month <= toDate($__toTime)"


def _feedback_row(board: Board) -> None:
    """What developers think of each capability: feedback_monthly (0015, docs/analysts.md)."""
    board.row("Developer feedback")
    board.add(
        panels.timeseries(
            "CSAT by month",
            "Share of CSAT answers (1-5) that were satisfied (4 or 5), per capability and month.",
            [
                clickhouse(
                    f"""
                    SELECT month AS time, capability, csat
                    FROM feedback_monthly
                    WHERE scale = 'csat' AND {MONTHS} AND {CAPABILITIES}
                    ORDER BY time, capability
                    """,
                    "timeseries",
                )
            ],
            unit="percentunit",
            bars=True,
            max_value=1,
        ),
        8,
        9,
    )
    # A table, not a chart: NPS runs from -100 to 100, and charts here draw counts from 0.
    board.add(
        panels.table(
            "NPS by month",
            "Net promoter score per capability and month: % promoters (9-10) minus % "
            "detractors (0-6) of the NPS answers (0-10), from -100 to 100.",
            [
                clickhouse(
                    f"""
                    SELECT
                        capability,
                        formatDateTime(month, '%Y-%m') AS year_month,
                        favourable AS promoters,
                        neutral AS passives,
                        unfavourable AS detractors,
                        nps
                    FROM feedback_monthly
                    WHERE scale = 'nps' AND {MONTHS} AND {CAPABILITIES}
                    ORDER BY capability, year_month
                    """
                )
            ],
            decimals=0,
        ),
        8,
        9,
    )
    board.add(
        panels.table(
            "Feedback responses and response rate",
            "Per capability, month and scale: answers, distinct respondents, the capability's "
            "active users that month (users with use of it) and the share of them who answered. "
            "Comments are in the warehouse (feedback_responses), by pseudonymous respondent.",
            [
                clickhouse(
                    f"""
                    SELECT
                        capability,
                        formatDateTime(month, '%Y-%m') AS year_month,
                        scale,
                        responses,
                        respondents,
                        active_users,
                        response_rate
                    FROM feedback_monthly
                    WHERE {MONTHS} AND {CAPABILITIES}
                    ORDER BY capability, year_month, scale
                    """
                )
            ],
            column_units={"response_rate": "percentunit"},
            decimals=0,
        ),
        8,
        9,
    )


def _adopted_beside_active(
    title: str, description: str, *, series: str, pairs: str, where: str
) -> sdk_timeseries.Panel:
    """Cumulative adoption rate beside the 28-day active rate, one pair of lines per `series`,
    over the target (team, capability) pairs of `pairs` (adoption_target_days) of the chosen
    teams: with every team, the figures of adoption_rates_daily / adoption_by_platform."""
    return panels.timeseries(
        title,
        description,
        [
            clickhouse(
                f"""
                    SELECT day AS time, concat({series}, ' · ', k.1) AS series, k.2 AS rate
                    FROM
                    (
                        SELECT
                            {series},
                            day,
                            countIf(adopted) / count() AS adoption_rate,
                            countIf(active_28d) / count() AS active_rate_28d
                        FROM {pairs}
                        WHERE {where} AND {TEAMS}
                        GROUP BY {series}, day
                    )
                    ARRAY JOIN [
                        ('adopted', adoption_rate), ('active 28d', active_rate_28d)
                    ] AS k
                    ORDER BY time, series
                    """,
                "timeseries",
            )
        ],
        unit="percentunit",
        max_value=1,
    )
