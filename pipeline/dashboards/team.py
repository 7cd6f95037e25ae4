"""Team drill-down: one team's platform use, lifecycle, delivery and ML, chosen with `$team`."""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries as sdk_timeseries

from pipeline.dashboards import navigation, panels
from pipeline.dashboards.board import Board, clickhouse, query_variable
from pipeline.dashboards.names import name_is

UID = "uptake-team"
TEAM = name_is("team", "team")
WEEKS = "week >= toMonday(toDate($__fromTime)) AND week <= toDate($__toTime)"
DORA_WEEKS = (
    "period = 'week' AND period_start >= toMonday(toDate($__fromTime)) "
    "AND period_start <= toDate($__toTime)"
)


def build() -> Board:
    board = Board(
        uid=UID,
        title="Uptake — Team drill-down",
        description=(
            "Everything about one team: which capabilities it uses and how much, where it is in "
            "each capability's lifecycle, its DORA metrics week by week and before/after "
            "adoption, its training runs, deployments and incidents."
        ),
        tags=("uptake", "team"),
    )
    board.annotation(navigation.launches())
    board.annotation(navigation.team_milestones())
    board.annotation(navigation.team_deploys())
    board.variable(
        query_variable(
            "team",
            "Team",
            "SELECT DISTINCT team FROM usage_day ORDER BY team",
            description="A team with events in the warehouse (resolved team, events.team).",
        )
    )

    board.row("In the selected period")
    stats = [
        (
            "Capabilities used",
            "Capabilities whose use counts (their catalog event types) in the period.",
            "SELECT uniqExact(capability) AS value FROM usage_day_counted "
            f"WHERE $__dateFilter(bucket) AND {TEAM}",
            "short",
        ),
        (
            "Events",
            "Events of the team in the period.",
            f"SELECT sum(events) AS value FROM usage_day WHERE $__dateFilter(bucket) AND {TEAM}",
            "short",
        ),
        (
            "Production deploys per week",
            "Production deployments that went live (succeeded or rolled back) per week over the "
            "period (dora_deployments).",
            "SELECT countIf(deployed) / greatest(dateDiff('day', $__fromTime, $__toTime) / 7, 1) "
            "AS value FROM dora_deployments "
            f"WHERE $__timeFilter(deployed_at) AND {TEAM}",
            "short",
        ),
        (
            "Lead time (median)",
            "Median commit-to-production time of the commits of production deployments.",
            "SELECT quantileExactInclusiveArray(0.5)(lead_times_s) AS value "
            f"FROM dora_deployments WHERE deployed AND $__timeFilter(deployed_at) AND {TEAM}",
            "s",
        ),
        (
            "Change failure rate",
            "Deployments rolled back or named by an incident / deployments (dora_deployments).",
            "SELECT countIf(change_failure) / nullIf(countIf(deployed), 0) AS value "
            f"FROM dora_deployments WHERE $__timeFilter(deployed_at) AND {TEAM}",
            "percentunit",
        ),
        (
            "Training runs",
            "Training runs on the ML platform that ended in the period.",
            "SELECT count() AS value FROM model_trainings FINAL "
            f"WHERE $__timeFilter(finished_at) AND {TEAM}",
            "short",
        ),
    ]
    for title, description, sql, unit in stats:
        board.add(panels.stat(title, description, [clickhouse(sql)], unit=unit, decimals=1), 4, 4)

    board.row("Platform use")
    board.add(
        panels.timeseries(
            "Use per capability",
            "Events per day that count as use of each capability.",
            [
                clickhouse(
                    f"""
                    SELECT toDate(bucket) AS time, capability, sum(events) AS events
                    FROM usage_day_counted
                    WHERE $__dateFilter(bucket) AND {TEAM}
                    GROUP BY time, capability
                    ORDER BY time, capability
                    """,
                    "timeseries",
                )
            ],
            bars=True,
            stack=True,
            min_interval="1d",
        ),
        14,
        9,
    )
    board.add(
        panels.table(
            "Lifecycle",
            "Where the team stands with each capability now (docs/lifecycle.md): state, first "
            "use, activation, churn, last activity, active days in the last 28 days.",
            [
                clickhouse(
                    f"""
                    SELECT
                        capability,
                        state,
                        first_use,
                        activated_at,
                        churned_at,
                        last_active,
                        active_days_28
                    FROM adoption_lifecycle_current
                    WHERE {TEAM}
                    ORDER BY capability
                    """
                )
            ],
        ),
        10,
        9,
    )
    board.add(
        panels.table(
            "Milestones in the period",
            "First uses, activations, churns and reactivations of the team in the period.",
            [
                clickhouse(
                    f"""
                    SELECT occurred_at AS day, capability, milestone, episode
                    FROM adoption_milestones_current
                    WHERE {TEAM} AND $__dateFilter(occurred_at)
                    ORDER BY day DESC, capability
                    """
                )
            ],
        ),
        24,
        7,
    )

    board.row("Delivery (DORA)")
    board.add(
        _weekly_dora(
            "Deployments and lead time per week",
            "Production deployments that went live per week (dora_metrics) and the median lead "
            "time of their commits.",
            ["deployments", "lead_time_median_s / 3600 AS lead_time_h"],
        ),
        12,
        8,
    )
    board.add(
        _weekly_dora(
            "Change failure rate and recovery per week",
            "Change failure rate (0-1: deployments rolled back or causing an incident), median "
            "failed deployment recovery time and median incident time to restore, in hours.",
            [
                "change_failure_rate",
                "recovery_time_median_s / 3600 AS recovery_time_h",
                "time_to_restore_median_s / 3600 AS time_to_restore_h",
            ],
        ),
        12,
        8,
    )
    board.add(
        panels.table(
            "Naive: before and after adopting each capability",
            "Naive before/after (no control for the organisation's trend): the team's DORA "
            "figures before and after its first use of each capability (all data). Ratios are "
            "after / before.",
            [
                clickhouse(
                    f"""
                    SELECT
                        capability,
                        adopted_at,
                        deploys_per_week_before,
                        deploys_per_week_after,
                        change_failure_rate_before,
                        change_failure_rate_after,
                        lead_time_ratio,
                        time_to_restore_ratio
                    FROM impact_before_after
                    WHERE {TEAM}
                    ORDER BY adopted_at
                    """
                )
            ],
            decimals=2,
            column_units={
                "change_failure_rate_before": "percentunit",
                "change_failure_rate_after": "percentunit",
            },
        ),
        24,
        8,
    )
    board.add(
        panels.table(
            "Recent production deployments",
            "The team's latest production deployments in the period.",
            [
                clickhouse(
                    f"""
                    SELECT deployed_at, service, capability, status, lead_time_s
                    FROM deployments FINAL
                    WHERE environment = 'production' AND $__timeFilter(deployed_at) AND {TEAM}
                    ORDER BY deployed_at DESC
                    LIMIT 50
                    """
                )
            ],
            column_units={"lead_time_s": "s"},
        ),
        12,
        9,
    )
    board.add(
        panels.table(
            "Recent incidents",
            "The team's latest incidents opened in the period, with time to restore.",
            [
                clickhouse(
                    f"""
                    SELECT opened_at, service, severity, capability, time_to_restore_s
                    FROM incident_restores
                    WHERE $__timeFilter(opened_at) AND {TEAM}
                    ORDER BY opened_at DESC
                    LIMIT 50
                    """
                )
            ],
            column_units={"time_to_restore_s": "s"},
        ),
        12,
        9,
    )

    board.row("ML platform")
    board.add(
        panels.timeseries(
            "Training runs per week",
            "The team's training runs per week by outcome, and their GPU hours.",
            [
                clickhouse(
                    f"""
                    SELECT week AS time, succeeded, failed, cancelled, gpu_hours
                    FROM ml_training_weekly
                    WHERE {WEEKS} AND {TEAM}
                    ORDER BY time
                    """,
                    "timeseries",
                )
            ],
        ),
        24,
        8,
    )
    return board


def _weekly_dora(title: str, description: str, columns: list[str]) -> sdk_timeseries.Panel:
    """The team's weekly `dora_metrics` rows over the period: `columns` beside the week."""
    selected = "".join(f",\n                        {column}" for column in columns)
    return panels.timeseries(
        title,
        description,
        [
            clickhouse(
                f"""
                    SELECT
                        period_start AS time{selected}
                    FROM dora_metrics
                    WHERE {DORA_WEEKS} AND {TEAM}
                    ORDER BY time
                    """,
                "timeseries",
            )
        ],
    )
