"""ML platform (its platform team and PMs): trainings, success, duration, GPU hours, models.

Reads the model_trainings fact table (one row per run, read with FINAL) and the views
ml_training_weekly and ml_team_summary of schemas/clickhouse/0004_views.sql.
"""

from __future__ import annotations

from pipeline.dashboards import panels
from pipeline.dashboards.board import Board, clickhouse, team_variables
from pipeline.dashboards.names import chosen_teams

UID = "uptake-ml-platform"
TEAMS = chosen_teams("team")
WEEKS = "week >= toMonday(toDate($__fromTime)) AND week <= toDate($__toTime)"


def build() -> Board:
    board = Board(
        uid=UID,
        title="Uptake — ML platform",
        description=(
            "Training runs on the ML platform: how many, how many succeed, how long they take, "
            "the GPU hours they use and how long teams take from their first training to their "
            "first registered model."
        ),
        tags=("uptake", "ml-platform"),
    )
    team_variables(
        board,
        "SELECT DISTINCT team FROM model_trainings ORDER BY team",
        "Teams that ran trainings.",
    )

    board.row("In the selected period")
    stats = [
        ("Training runs", "Runs that ended in the period.", "count()", "short", 0),
        (
            "Success rate",
            "Succeeded / (succeeded + failed); cancelled runs left out.",
            "countIf(status = 'succeeded') / nullIf(countIf(status IN ('succeeded', 'failed')), 0)",
            "percentunit",
            1,
        ),
        (
            "Median duration",
            "Median run duration (start to end).",
            "quantileExactInclusive(0.5)(duration_s)",
            "s",
            1,
        ),
        ("GPU hours", "GPU hours the runs used.", "sum(gpu_hours)", "short", 0),
        (
            "Models registered",
            "Runs that registered a model in the model registry.",
            "countIf(registered_model != '')",
            "short",
            0,
        ),
        ("Teams training", "Teams with at least one run.", "uniqExact(team)", "short", 0),
    ]
    for title, description, expression, unit, decimals in stats:
        board.add(
            panels.stat(
                title,
                description,
                [
                    clickhouse(
                        f"""
                        SELECT {expression} AS value
                        FROM model_trainings FINAL
                        WHERE $__timeFilter(finished_at) AND {TEAMS}
                        """
                    )
                ],
                unit=unit,
                decimals=decimals,
            ),
            4,
            4,
        )

    board.row("Over time")
    board.add(
        panels.timeseries(
            "Training runs by outcome",
            "Runs per interval (at least a day) by how they ended.",
            [
                clickhouse(
                    f"""
                    SELECT $__timeInterval(finished_at) AS time, status, count() AS runs
                    FROM model_trainings FINAL
                    WHERE $__timeFilter(finished_at) AND {TEAMS}
                    GROUP BY time, status
                    ORDER BY time, status
                    """,
                    "timeseries",
                )
            ],
            bars=True,
            stack=True,
            min_interval="1d",
            decimals=0,
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Success rate",
            "Per week: succeeded / (succeeded + failed) over the chosen teams.",
            [
                clickhouse(
                    f"""
                    SELECT
                        week AS time,
                        sum(succeeded) / nullIf(sum(succeeded) + sum(failed), 0) AS success_rate
                    FROM ml_training_weekly
                    WHERE {WEEKS} AND {TEAMS}
                    GROUP BY time
                    ORDER BY time
                    """,
                    "timeseries",
                )
            ],
            unit="percentunit",
            max_value=1,
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Run duration",
            "Median and 90th percentile run duration per day.",
            [
                clickhouse(
                    f"""
                    SELECT
                        toStartOfDay(finished_at) AS time,
                        quantileExactInclusive(0.5)(duration_s) AS median,
                        quantileExactInclusive(0.9)(duration_s) AS p90
                    FROM model_trainings FINAL
                    WHERE $__timeFilter(finished_at) AND {TEAMS}
                    GROUP BY time
                    ORDER BY time
                    """,
                    "timeseries",
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "GPU hours by team",
            "GPU hours of the runs that ended each week, per team.",
            [
                clickhouse(
                    f"""
                    SELECT week AS time, team, gpu_hours
                    FROM ml_training_weekly
                    WHERE {WEEKS} AND {TEAMS}
                    ORDER BY time, team
                    """,
                    "timeseries",
                )
            ],
            bars=True,
            stack=True,
        ),
        12,
        8,
    )

    board.row("Teams")
    board.add(
        panels.barchart(
            "Time to first registered model",
            "Days from each team's first training run to its first run that registered a "
            "model (all data; teams without a registered model are left out).",
            [
                clickhouse(
                    f"""
                    SELECT team, time_to_first_registered_model_s / 86400 AS days
                    FROM ml_team_summary
                    WHERE time_to_first_registered_model_s IS NOT NULL AND {TEAMS}
                    ORDER BY days
                    """
                )
            ],
            x_field="team",
            unit="d",
            horizontal=True,
            decimals=1,
        ),
        10,
        10,
    )
    board.add(
        panels.table(
            "Per team",
            "Every team's runs, success rate, median duration, GPU hours and registered models "
            "(all data).",
            [
                clickhouse(
                    f"""
                    SELECT
                        team,
                        trainings,
                        success_rate,
                        duration_median_s,
                        gpu_hours,
                        models_registered,
                        first_training_at,
                        time_to_first_registered_model_s
                    FROM ml_team_summary
                    WHERE {TEAMS}
                    ORDER BY trainings DESC
                    """
                )
            ],
            decimals=1,
            column_units={
                "success_rate": "percentunit",
                "duration_median_s": "s",
                "time_to_first_registered_model_s": "s",
            },
        ),
        14,
        10,
    )
    return board
