"""Platform impact (platform PMs): what adoption changes for delivery, and the north stars.

The organisation's DORA keys with their performance levels (dora_metrics_org), the naive
before/after of each team's adoption (impact_summary, impact_before_after: labelled naive, it has
no control for the organisation's trend), the capability's target teams that had adopted it
against those that had not, week by week (dora_metrics_capability), and the
north-star metric of every business-capability platform per adopting team (north_star_daily).
Before/after figures cover all the data in the warehouse (a team's "before" starts with the
oldest data), not only the selected period; the weekly panels follow the time picker.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, timeseries
from grafana_foundation_sdk.models import dashboard as model

from pipeline.dashboards import navigation, panels
from pipeline.dashboards.board import Board, clickhouse, query_variable, team_variables
from pipeline.dashboards.names import chosen_teams, name_is

UID = "uptake-impact"
DEFAULT_CAPABILITY = "deploy-pipeline"
DECLARED = "capability IN (SELECT name FROM capability_catalog FINAL WHERE declared = 1)"
CHOSEN = name_is("capability", "capability")
TEAMS = chosen_teams("team")
DORA_WEEKS = (
    "period = 'week' AND period_start >= toMonday(toDate($__fromTime)) "
    "AND period_start <= toDate($__toTime)"
)


def _before_after(
    title: str, description: str, before: str, after: str, unit: str
) -> barchart.Panel:
    return panels.barchart(
        f"Naive: {title}",
        f"Naive before/after (no control for the organisation's trend). {description}",
        [
            clickhouse(
                f"""
                SELECT capability, {before} AS before, {after} AS after
                FROM impact_summary
                WHERE {DECLARED}
                ORDER BY capability
                """
            )
        ],
        x_field="capability",
        unit=unit,
        horizontal=True,
        decimals=2 if unit == "percentunit" else 1,
    )


def _cohort_series(title: str, description: str, value: str, unit: str) -> timeseries.Panel:
    return panels.timeseries(
        title,
        description,
        [
            clickhouse(
                f"""
                SELECT period_start AS time, concat(cohort, ' (N=', toString(teams), ')') AS cohort,
                       {value} AS value
                FROM dora_metrics_capability
                WHERE {CHOSEN} AND {DORA_WEEKS}
                ORDER BY time, cohort
                """,
                "timeseries",
            )
        ],
        unit=unit,
    )


def build() -> Board:
    board = Board(
        uid=UID,
        title="Uptake — Platform impact",
        description=(
            "What adopting the platform changes for delivery: the DORA metrics of each team "
            "before and after its first use of a capability, adopters against non-adopters week "
            "by week, and the north-star metric of each business capability per adopting team "
            "(docs/analysts.md defines every figure)."
        ),
        tags=("uptake", "impact", "dora"),
    )
    variable = query_variable(
        "capability",
        "Capability",
        "SELECT name FROM capability_catalog FINAL WHERE declared = 1 ORDER BY name",
        description="The capability whose adopters and non-adopters the weekly panels compare.",
    )
    variable.current(
        model.VariableOption(text=DEFAULT_CAPABILITY, value=DEFAULT_CAPABILITY, selected=True)
    )
    board.annotation(navigation.launches())
    board.annotation(navigation.all_deploys())
    board.variable(variable)
    team_variables(
        board,
        "SELECT DISTINCT team FROM usage_day ORDER BY team",
        "Teams with events in the warehouse: narrows the per-team panels (north star, per-team "
        "before/after); the organisation's DORA keys and the cohorts stay organisation-wide.",
    )

    board.row("Impact estimates: staggered difference-in-differences (uptake impact)")
    board.add(
        panels.table(
            "What adopting each capability changed (with N)",
            "Per capability and DORA key, from the newest `uptake impact` run: the Callaway & "
            "Sant'Anna difference-in-differences with not-yet-adopted teams as controls and "
            "its 95% confidence interval (clustered by team), and the naive before/after "
            "beside it (no control for the organisation's trend: not an effect). Factor: after "
            "= factor x before (1: no change); difference: after - before (0: no change). "
            "N treated / N control: teams in the estimate. pretrend_p low: the parallel-trends "
            "assumption is in doubt. docs/analysts.md, 'Impact estimates'.",
            [
                clickhouse(
                    f"""
                    SELECT
                        capability,
                        metric,
                        if(method = 'naive_before_after', 'naive before/after (biased)',
                           'difference-in-differences') AS method,
                        if(status = 'ok', toString(round(estimate, 3)),
                           'insufficient data') AS estimate,
                        round(ci_low, 3) AS ci_low,
                        round(ci_high, 3) AS ci_high,
                        scale,
                        treated_teams AS n_treated,
                        control_teams AS n_control,
                        round(pretrend_p, 3) AS pretrend_p,
                        note
                    FROM impact_estimates_latest
                    WHERE {DECLARED}
                    ORDER BY capability, metric, method
                    """
                )
            ],
            decimals=3,
        ),
        24,
        10,
    )

    board.row("Organisation DORA keys (dora_metrics_org; levels per the DORA 2024 report)")
    board.add(
        panels.stat(
            "Deploys per week",
            "Production deployments that went live (succeeded or rolled back) per week over the "
            "period, of the chosen teams (dora_deployments).",
            [
                clickhouse(
                    f"""
                    SELECT
                        countIf(deployed) / greatest(dateDiff('day', $__fromTime, $__toTime) / 7, 1)
                            AS deploys_per_week
                    FROM dora_deployments
                    WHERE $__timeFilter(deployed_at) AND {TEAMS}
                    """
                )
            ],
            decimals=1,
            thresholds=((None, "green"),),
        ),
        4,
        4,
    )
    board.add(
        panels.table(
            "DORA keys and performance levels per month",
            "Deployments that went live per week, median lead time per commit, change failure "
            "rate (rolled back or causing an incident) and median failed deployment recovery "
            "time, with the level of each per the 2024 Accelerate State of DevOps report "
            "(docs/analysts.md). N: teams with a deployment or incident in the month.",
            [
                clickhouse(
                    """
                    SELECT
                        period_start AS month,
                        teams AS n_teams,
                        deployments,
                        deployment_frequency_per_week,
                        deployment_frequency_level,
                        lead_time_median_s,
                        lead_time_level,
                        change_failure_rate,
                        change_failure_level,
                        recovery_time_median_s,
                        recovery_time_level,
                        time_to_restore_median_s
                    FROM dora_metrics_org
                    WHERE period = 'month' AND $__dateFilter(period_start)
                    ORDER BY month
                    """
                )
            ],
            decimals=2,
            column_units={
                "lead_time_median_s": "s",
                "change_failure_rate": "percentunit",
                "recovery_time_median_s": "s",
                "time_to_restore_median_s": "s",
            },
        ),
        24,
        8,
    )

    board.row("Naive before vs after adoption (no control for the trend: not an effect)")
    board.add(
        _before_after(
            "Lead time for changes",
            "Median time from commit to successful production deployment, pooled over the "
            "commits of the adopting teams before and after their first use of the capability.",
            "lead_time_median_s_before",
            "lead_time_median_s_after",
            "s",
        ),
        8,
        9,
    )
    board.add(
        _before_after(
            "Change failure rate",
            "Production deployments that failed or were rolled back / all, pooled over the "
            "adopting teams, before and after their first use.",
            "change_failure_rate_before",
            "change_failure_rate_after",
            "percentunit",
        ),
        8,
        9,
    )
    board.add(
        _before_after(
            "Time to restore service",
            "Median time from an incident's opening to its resolution, pooled over the "
            "adopting teams' incidents, before and after their first use.",
            "time_to_restore_median_s_before",
            "time_to_restore_median_s_after",
            "s",
        ),
        8,
        9,
    )
    board.add(
        panels.table(
            "Per team: naive before and after",
            "Naive, not causal: each team's deployment frequency, change failure rate, lead "
            "time and time to restore before and after its first use of the chosen "
            "capability. Ratios are after / before (below 1: better).",
            [
                clickhouse(
                    f"""
                    SELECT
                        team,
                        adopted_at,
                        deploys_per_week_before,
                        deploys_per_week_after,
                        change_failure_rate_before,
                        change_failure_rate_after,
                        lead_time_median_s_before,
                        lead_time_median_s_after,
                        lead_time_ratio,
                        time_to_restore_median_s_before,
                        time_to_restore_median_s_after
                    FROM impact_before_after
                    WHERE {CHOSEN} AND {TEAMS} AND deployments_before > 0 AND deployments_after > 0
                    ORDER BY lead_time_ratio
                    """
                )
            ],
            decimals=2,
            column_units={
                "change_failure_rate_before": "percentunit",
                "change_failure_rate_after": "percentunit",
                "lead_time_median_s_before": "s",
                "lead_time_median_s_after": "s",
                "time_to_restore_median_s_before": "s",
                "time_to_restore_median_s_after": "s",
            },
        ),
        24,
        9,
    )

    board.row("Target teams that had adopted the chosen capability vs not yet, per week")
    board.add(
        _cohort_series(
            "Lead time: adopters vs non-adopters",
            "Median commit-to-production time of the capability's target teams that had adopted "
            "it (adopted) and of those that had not yet (not_adopted); N = teams in the cohort.",
            "lead_time_median_s",
            "s",
        ),
        12,
        8,
    )
    board.add(
        _cohort_series(
            "Change failure rate: adopters vs non-adopters",
            "Deployments rolled back or causing an incident / deployments, adopted against "
            "not adopted.",
            "change_failure_rate",
            "percentunit",
        ),
        12,
        8,
    )
    board.add(
        _cohort_series(
            "Deployment frequency: adopters vs non-adopters",
            "Deployments per team of the cohort and week, adopted against not adopted.",
            "deployments / teams",
            "short",
        ),
        12,
        8,
    )
    board.add(
        _cohort_series(
            "Failed deployment recovery: adopters vs non-adopters",
            "Median failed deployment recovery time of the week's change failures, adopted "
            "against not adopted.",
            "recovery_time_median_s",
            "s",
        ),
        12,
        8,
    )

    board.row("North-star metrics of business capabilities, per adopting team")
    board.add(
        panels.timeseries(
            "North star per team",
            "The north-star metric each business capability declares (capability catalog), "
            "per adopting team and day, e.g. the value of the transactions risk-scoring "
            "approved. Measures: count, value_sum (in the declared unit), decision_rate (0-1).",
            [
                clickhouse(
                    f"""
                    SELECT day AS time, concat(north_star, ' (', unit, ')') AS metric, team, value
                    FROM north_star_daily
                    WHERE $__dateFilter(day) AND {TEAMS}
                    ORDER BY time, metric, team
                    """,
                    "timeseries",
                )
            ],
            stack=True,
            bars=True,
        ),
        16,
        9,
    )
    board.add(
        panels.barchart(
            "North star in the period",
            "Each adopting team's north-star figure over the period: the sum of a count or "
            "value_sum measure, the mean of a daily decision_rate.",
            [
                clickhouse(
                    f"""
                    SELECT
                        concat(team, ' · ', north_star) AS team_metric,
                        if(any(measure) = 'decision_rate', avg(value), sum(value)) AS value
                    FROM north_star_daily
                    WHERE $__dateFilter(day) AND {TEAMS}
                    GROUP BY team, north_star
                    ORDER BY value DESC
                    """
                )
            ],
            x_field="team_metric",
            horizontal=True,
        ),
        8,
        9,
    )
    return board
