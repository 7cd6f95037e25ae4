"""Facts and analyst views against the ground truth; impact views recover the scenario's factors."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

from pipeline.devtools.simulate.org import GroundTruth
from tests.integration.views.conftest import Warehouse
from tests.support.views import expected
from tests.support.views.expected import close, millis, monday

pytestmark = pytest.mark.integration


def test_deployments_fact_equals_truth(warehouse: Warehouse, truth: GroundTruth) -> None:
    rows = warehouse.rows(
        "SELECT toString(event_id) AS id, deployment_id, team, capability, environment, status, "
        "toUnixTimestamp64Milli(deployed_at) AS deployed_at, length(commit_times) AS commits, "
        "toUnixTimestamp64Milli(first_commit_at) AS first_commit_at, lead_time_s, "
        "arraySort(commit_lead_times_s) AS lead_times FROM deployments FINAL"
    )
    want = expected.deployments(truth)
    assert len(rows) == len(want) > 1000
    for row in rows:
        w = want[row.pop("id")]
        assert {k: row[k] for k in w if k not in ("lead_time_s", "lead_times")} == {
            k: v for k, v in w.items() if k not in ("lead_time_s", "lead_times")
        }
        assert close(row["lead_time_s"], w["lead_time_s"])
        assert all(close(a, b) for a, b in zip(row["lead_times"], w["lead_times"], strict=True))


def test_model_trainings_fact_equals_truth(warehouse: Warehouse, truth: GroundTruth) -> None:
    rows = warehouse.rows(
        "SELECT toString(event_id) AS id, run_id, team, status, duration_s, gpu_hours, "
        "registered_model, toUnixTimestamp64Milli(finished_at) AS finished_at FROM "
        "model_trainings FINAL"
    )
    want = {t["event_id"]: t for t in truth.trainings}
    assert len(rows) == len(want) > 100
    for row in rows:
        w = want[row["id"]]
        assert (row["run_id"], row["team"], row["status"], row["finished_at"]) == (
            w["run_id"],
            w["team"],
            w["status"],
            millis(w["at"]),
        )
        assert close(row["duration_s"], w["duration_s"]) and close(row["gpu_hours"], w["gpu_hours"])
        assert row["registered_model"] == (w.get("registered_model") or "")


def test_incidents_fold_into_restores_equal_to_truth(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    events = warehouse.rows(
        "SELECT count() AS n, countIf(status = 'opened') AS o FROM incidents FINAL"
    )
    assert int(events[0]["n"]) == len(truth.incidents)
    assert 0 < int(events[0]["o"]) < len(truth.incidents)
    rows = warehouse.rows(
        "SELECT incident_id, team, capability, toUnixTimestamp64Milli(opened_at) AS opened, "
        "toUnixTimestamp64Milli(resolved_at) AS resolved, time_to_restore_s FROM incident_restores"
    )
    want = expected.incident_restores(truth)
    assert len(rows) == len(want)
    for row in rows:
        w = want[row["incident_id"]]
        assert (row["team"], row["capability"], row["opened"], row["resolved"]) == (
            w["team"],
            w["capability"],
            millis(w["opened"]),
            millis(w["resolved"]),
        )
        assert close(row["time_to_restore_s"], w["time_to_restore_s"])


def test_dora_weekly_equals_truth(warehouse: Warehouse, truth: GroundTruth) -> None:
    rows = warehouse.rows("SELECT * FROM dora_weekly")
    want = expected.dora_weekly(truth)
    got = {(r.pop("team"), str(r.pop("week"))): r for r in rows}
    assert got.keys() == want.keys()
    for key, w in want.items():
        row = got[key]
        for name, value in w.items():
            assert close(row[name], value), (key, name, row[name], value)


def test_adoption_first_use_equals_truth(warehouse: Warehouse, truth: GroundTruth) -> None:
    rows = warehouse.rows(
        "SELECT team, capability, toUnixTimestamp64Milli(first_used_at) AS at, is_target, "
        "adoption_order, days_since_launch FROM adoption_first_use"
    )
    got = {(r["team"], r["capability"]): r for r in rows}
    assert {k: r["at"] for k, r in got.items()} == {
        k: millis(v) for k, v in truth.first_use.items()
    }
    for (team, capability), at in truth.first_use.items():
        # The planned adoption moment is when use may start; the first event comes after it.
        planned = truth.planned_adoption.get((team, capability))
        # An incident's first event is its opening, dated back to opened_at: before the moment.
        if (
            planned is not None
            and capability != "incident-response"
            and not capability.startswith(("self-managed", "legacy"))
        ):
            assert at >= planned - timedelta(milliseconds=1)  # events carry milliseconds
    orders = defaultdict(list)
    for r in rows:
        orders[r["capability"]].append(r["adoption_order"])
    assert all(sorted(o) == list(range(1, len(o) + 1)) for o in orders.values())
    assert all(r["days_since_launch"] >= 0 for r in rows)
    # The simulated teams are the product teams: targets of every declared capability.
    assert all(r["is_target"] == 1 for r in rows if r["team"] in truth.teams)


def test_adoption_weekly_counts_teams_and_rates(warehouse: Warehouse, truth: GroundTruth) -> None:
    rows = warehouse.rows("SELECT * FROM adoption_weekly ORDER BY capability, week")
    by_capability: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_capability[r["capability"]].append(r)
    used = expected.weeks_used(truth)
    for capability, weeks in by_capability.items():
        adopted = [w["adopted_target_teams"] for w in weeks]
        assert adopted == sorted(adopted), f"{capability}: adoption went down"
        teams = {t for (t, c) in truth.first_use if c == capability}
        assert weeks[-1]["adopted_teams"] == len(teams)
        assert weeks[-1]["adoption_rate"] == pytest.approx(
            len(teams & set(truth.teams)) / weeks[-1]["target_teams"]
        )
        for w in weeks:
            active = {
                t
                for (t, c), mondays in used.items()
                if c == capability and str(w["week"]) in mondays
            }
            assert w["active_teams"] == len(active), (capability, w["week"])
    declared = {r["capability"] for r in rows if r["target_teams"] == 20}
    assert {"api-gateway", "deploy-pipeline", "ml-training"} <= declared


def test_adoption_daily_agrees_with_weekly(warehouse: Warehouse) -> None:
    daily = warehouse.rows(
        "SELECT capability, toMonday(day) AS week, sum(new_adopters) AS new, "
        "max(adopted_teams) AS adopted FROM adoption_daily GROUP BY capability, week"
    )
    weekly = warehouse.rows(
        "SELECT capability, week, new_adopters AS new, adopted_teams AS adopted "
        "FROM adoption_weekly"
    )
    key = lambda r: (r["capability"], str(r["week"]))  # noqa: E731
    assert {key(r): (r["new"], r["adopted"]) for r in daily} == {
        key(r): (r["new"], r["adopted"]) for r in weekly
    }


def test_breadth_depth_and_retention_equal_truth(warehouse: Warehouse, truth: GroundTruth) -> None:
    events: dict[tuple[str, str, str], int] = defaultdict(int)
    for (team, capability, day), n in truth.uses.items():  # calls of unlisted APIs left out
        events[team, capability, (day - timedelta(days=day.weekday())).isoformat()] += n
    depth = warehouse.rows("SELECT team, capability, week, events FROM team_depth_weekly")
    assert {(r["team"], r["capability"], str(r["week"])): r["events"] for r in depth} == events
    breadth = warehouse.rows("SELECT team, week, capabilities FROM team_breadth_weekly")
    per_week: dict[tuple[str, str], int] = defaultdict(int)
    for team, _capability, week in events:
        per_week[team, week] += 1
    assert {(r["team"], str(r["week"])): r["capabilities"] for r in breadth} == per_week

    used = expected.weeks_used(truth)
    retention = warehouse.rows("SELECT * FROM adoption_retention")
    assert retention
    for r in retention:
        cohort = [
            key
            for key, at in truth.first_use.items()
            if key[1] == r["capability"] and monday(at) == str(r["cohort_week"])
        ]
        week = expected.as_date(r["cohort_week"]).toordinal() + 7 * r["weeks_since_adoption"]
        monday_of = expected.as_date(r["cohort_week"]).fromordinal(week).isoformat()
        assert r["cohort_teams"] == len(cohort)
        assert r["retained_teams"] == sum(monday_of in used[key] for key in cohort)


def _log_ratio_bound(values: list[float], sigmas: float = 4.0) -> float:
    """`sigmas` standard errors of the mean of log ratios: the tolerance the data justify."""
    return sigmas * statistics.stdev(values) / math.sqrt(len(values))


def test_impact_recovers_the_lead_time_factor(warehouse: Warehouse, truth: GroundTruth) -> None:
    assert truth.scenario is not None
    summary = warehouse.rows("SELECT * FROM impact_summary WHERE capability = 'deploy-pipeline'")[0]
    teams = warehouse.rows(
        "SELECT lead_time_ratio FROM impact_before_after WHERE capability = 'deploy-pipeline' "
        "AND deployments_before > 0 AND deployments_after > 0 AND lead_time_ratio > 0"
    )
    logs = [math.log(r["lead_time_ratio"]) for r in teams]
    # The geometric mean is over the teams with a positive ratio (the view's own N).
    assert len(logs) >= 8
    assert summary["lead_time_ratios"] - summary["lead_time_zero_ratios"] == len(logs)
    tolerance = _log_ratio_bound(logs)
    assert tolerance < 0.25, f"too little data to judge: ±{tolerance:.2f} in log"
    error = math.log(summary["lead_time_ratio_geomean"]) - math.log(truth.scenario.lead_time_factor)
    assert abs(error) <= tolerance, (summary["lead_time_ratio_geomean"], tolerance)


def test_impact_recovers_the_change_failure_factor(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    assert truth.scenario is not None
    s = warehouse.rows("SELECT * FROM impact_summary WHERE capability = 'deploy-pipeline'")[0]
    failures = (
        s["change_failure_rate_before"] * s["deployments_before"],
        s["change_failure_rate_after"] * s["deployments_after"],
    )
    # Standard error of log(p_after / p_before) for two binomial proportions (delta method).
    se = math.sqrt(
        (1 - s["change_failure_rate_before"]) / failures[0]
        + (1 - s["change_failure_rate_after"]) / failures[1]
    )
    # The bound, and why: the test must (a) find the truth within Z standard errors of the
    # estimate and (b) tell the true factor from no effect. (b) holds for any estimate that
    # passes (a) when Z·se is less than half the distance between log(factor) and log(1): then
    # the estimate is more than Z·se from 1 too. So the precondition is stated from the
    # scenario, not tuned to one run (it was `4·se < 0.55`, met as 0.50 against the 0.51 of
    # |log 0.6|: any change of the simulated mix could break it). Z = 3.29 leaves a two-sided
    # 0.1 % chance that sampling noise alone fails (a). The session's scenario gives the data
    # this needs with more deploys and failures than the default (conftest.SCENARIO).
    z = 3.29
    distance = abs(math.log(truth.scenario.change_failure_factor))
    assert z * se < distance / 2, f"too little data to judge: ±{z * se:.2f} in log"
    error = math.log(s["change_failure_ratio"]) - math.log(truth.scenario.change_failure_factor)
    assert abs(error) <= z * se, (s["change_failure_ratio"], z * se)
    # Had adoption changed nothing, the ratio would be 1: the estimate is clear of it.
    assert abs(math.log(s["change_failure_ratio"])) > z * se


def test_adopters_beat_non_adopters_week_by_week(warehouse: Warehouse) -> None:
    rows = warehouse.rows(
        "SELECT * FROM impact_adopters_weekly WHERE capability = 'deploy-pipeline' "
        "AND cohort IN ('adopters', 'non_adopters')"
    )
    pooled: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    weeks: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        pooled[r["cohort"]][0] += r["failed_deployments"]
        pooled[r["cohort"]][1] += r["deployments"]
        weeks[str(r["week"])][r["cohort"]] = r
    rate = {cohort: f / n for cohort, (f, n) in pooled.items()}
    assert rate["adopters"] < rate["non_adopters"]
    both = [w for w in weeks.values() if len(w) == 2 and w["adopters"]["commits"] > 20]
    faster = sum(
        w["adopters"]["lead_time_median_s"] < w["non_adopters"]["lead_time_median_s"] for w in both
    )
    assert len(both) >= 4 and faster >= 0.75 * len(both), (faster, len(both))


def test_incident_response_shortens_time_to_restore(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    assert truth.scenario is not None
    s = warehouse.rows("SELECT * FROM impact_summary WHERE capability = 'incident-response'")[0]
    ratio = s["time_to_restore_median_s_after"] / s["time_to_restore_median_s_before"]
    # Pooled medians of a log-normal restore time (sigma 0.7) over a few hundred incidents.
    assert abs(math.log(ratio) - math.log(truth.scenario.restore_factor)) < 0.3, ratio


def test_ml_views_equal_truth(warehouse: Warehouse, truth: GroundTruth) -> None:
    assert truth.scenario is not None
    rows = warehouse.rows(
        "SELECT * EXCEPT (first_training_at, first_registered_at), "
        "toUnixTimestamp64Milli(first_training_at) AS first_training_at, "
        "toUnixTimestamp64Milli(first_registered_at) AS first_registered_at FROM ml_team_summary"
    )
    want = expected.ml_team_summary(truth)
    assert {r["team"] for r in rows} == set(want)
    for row in rows:
        for name, value in want[row["team"]].items():
            assert close(row[name], value), (row["team"], name, row[name], value)
        delay = row["time_to_first_registered_model_s"]
        if delay is not None:
            assert delay >= truth.scenario.registration_delay_days * 86400
    weekly = warehouse.rows(
        "SELECT team, sum(trainings) AS n, sum(gpu_hours) AS gpu FROM ml_training_weekly "
        "GROUP BY team"
    )
    assert {r["team"]: r["n"] for r in weekly} == {t: w["trainings"] for t, w in want.items()}


def test_north_star_equals_truth(warehouse: Warehouse, truth: GroundTruth) -> None:
    rows = warehouse.rows(
        "SELECT team, day, measure, outcomes, value FROM north_star_daily "
        "WHERE capability = 'risk-scoring'"
    )
    value: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    for (team, capability, _kind, minute), bucket in truth.minutes.items():
        if capability == "risk-scoring":
            key = (team, minute.date().isoformat())
            value[key] += bucket.outcome_value.get("risk_decision/approve", 0.0)
            count[key] += sum(bucket.outcome_count.values())
    assert rows and all(r["measure"] == "value_sum" for r in rows)
    assert {(r["team"], str(r["day"])): r["outcomes"] for r in rows} == dict(count)
    for r in rows:
        assert close(r["value"], value[r["team"], str(r["day"])])


VIEWS = {
    "capability_targets": ["capability", "declared", "target_teams", "targets"],
    "usage_daily": ["day", "team", "capability", "event_type", "events", "users", "errors"],
    "adoption_first_use": ["team", "capability", "first_used_at", "days_since_launch"],
    "adoption_daily": ["capability", "day", "active_teams", "adopted_teams", "adoption_rate"],
    "adoption_weekly": ["capability", "week", "active_teams", "adopted_teams", "adoption_rate"],
    "team_breadth_weekly": ["team", "week", "capabilities", "capability_list"],
    "team_depth_weekly": ["team", "capability", "week", "events", "users", "active_days"],
    "adoption_retention": ["capability", "cohort_week", "weeks_since_adoption", "retention"],
    "incident_restores": ["incident_id", "team", "opened_at", "time_to_restore_s"],
    "dora_weekly": ["team", "week", "deployments", "change_failure_rate", "lead_time_median_s"],
    "impact_before_after": ["team", "capability", "adopted_at", "lead_time_ratio"],
    "impact_summary": ["capability", "teams", "lead_time_ratio_geomean", "change_failure_ratio"],
    "impact_adopters_weekly": ["capability", "week", "cohort", "deployments"],
    "ml_training_weekly": ["team", "week", "trainings", "success_rate", "gpu_hours"],
    "ml_team_summary": ["team", "trainings", "time_to_first_registered_model_s"],
    "north_star_daily": ["capability", "team", "day", "north_star", "value"],
}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_view_shape_and_comments(warehouse: Warehouse, view: str) -> None:
    rows = warehouse.rows(f"SELECT * FROM {view} LIMIT 5")
    assert rows, f"{view} is empty"
    assert set(VIEWS[view]) <= set(rows[0])
    comment = warehouse.rows(
        f"SELECT comment FROM system.tables WHERE database = currentDatabase() AND name = '{view}'"
    )[0]["comment"]
    assert comment, f"{view} has no COMMENT"
