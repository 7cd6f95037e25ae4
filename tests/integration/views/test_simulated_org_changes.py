"""The catalog's apis rule, a churning team and a re-org, against the simulator's ground truth.

The session's scenario (conftest.SCENARIO) sends api-gateway calls of an API its catalog entry
does not list (no use, however many), has the first team to adopt api-gateway stop using it
before mid-window, and moves `growth` from discovery to experience mid-window (the team
catalog states both parents, dated: simulate/catalog.py). Every figure below is computed from
the truth (GroundTruth.uses, .uncounted, .first_use, .churned, .moves), not from the warehouse.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import yaml

from pipeline.devtools.simulate.org import API_GATEWAY, GroundTruth, counts_as_use
from pipeline.impact.store import WEEKLY_TARGETS_SQL
from pipeline.observability.adoption import ADOPTION_SQL
from tests.integration.views.conftest import Loaded, Warehouse, repo_file
from tests.support.views.expected import millis

pytestmark = pytest.mark.integration

WINDOW_DAYS = 28
DEPARTMENTS = ("commerce", "discovery", "trust", "experience", "data")


def _day(value: Any) -> date:
    return date.fromisoformat(str(value)[:10])


def _use_days(truth: GroundTruth, capability: str) -> dict[str, set[date]]:
    out: dict[str, set[date]] = defaultdict(set)
    for team, cap, day in truth.uses:
        if cap == capability:
            out[team].add(day)
    return out


def _states(truth: GroundTruth, capability: str, day: date) -> dict[str, tuple[bool, bool]]:
    """Each simulated team's (adopted, active in the 28 days ending `day`) by the truth."""
    used = _use_days(truth, capability)
    return {
        team: (
            bool(used[team]) and min(used[team]) <= day,
            any(day - timedelta(days=WINDOW_DAYS) < d <= day for d in used[team]),
        )
        for team in truth.teams
    }


def test_calls_of_an_unlisted_api_are_stored_and_are_no_use(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    assert truth.scenario is not None
    api = truth.scenario.uncounted_api
    uncounted = {k: n for k, n in truth.uncounted.items() if k[1] == API_GATEWAY}
    assert sum(uncounted.values()) > 500
    # The rule decides adoption: teams call the unlisted API before their first use (or never
    # use api-gateway at all), so counting every api-gateway event would move first uses.
    early = {
        team
        for team, _c, day in uncounted
        if (team, API_GATEWAY) not in truth.first_use
        or day < truth.first_use[team, API_GATEWAY].date()
    }
    assert len(early) >= 3, early

    stored = warehouse.rows(
        "SELECT team, toDate(occurred_at) AS day, uniqExact(event_id) AS n FROM events "
        f"WHERE capability = '{API_GATEWAY}' AND JSONExtractString(data, 'api') = '{api}' "
        "GROUP BY team, day"
    )
    assert {(r["team"], API_GATEWAY, _day(r["day"])): r["n"] for r in stored} == uncounted

    use = warehouse.rows(
        f"SELECT team, day, events FROM capability_use_days WHERE capability = '{API_GATEWAY}'"
    )
    want = {k: n for k, n in truth.uses.items() if k[1] == API_GATEWAY}
    assert {(r["team"], API_GATEWAY, _day(r["day"])): r["events"] for r in use} == want

    first = warehouse.rows(
        "SELECT team, toUnixTimestamp64Milli(first_used_at) AS at FROM adoption_first_use "
        f"WHERE capability = '{API_GATEWAY}'"
    )
    assert {r["team"]: r["at"] for r in first} == {
        t: millis(at) for (t, c), at in truth.first_use.items() if c == API_GATEWAY
    }


def test_the_lifecycle_counts_only_the_listed_apis(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    rows = warehouse.rows(
        "SELECT team, toString(first_use) AS first_use, toString(last_active) AS last_active "
        f"FROM adoption_lifecycle FINAL WHERE capability = '{API_GATEWAY}'"
    )
    used = _use_days(truth, API_GATEWAY)
    want = {team: (min(d).isoformat(), max(d).isoformat()) for team, d in used.items()}
    assert {r["team"]: (r["first_use"], r["last_active"]) for r in rows} == want


def _gauge_rows(warehouse: Warehouse, now: datetime) -> dict[str, dict[str, Any]]:
    """The gauges' adoption query, with its parameters written in (the query process takes
    none): what `uptake_adoption_active_teams` and `uptake_adoption_rate` export."""
    sql = ADOPTION_SQL
    for name, days in (("since_7d", 7), ("since_28d", 28)):
        sql = sql.replace(f"{{{name}:Int64}}", str(millis(now - timedelta(days=days))))
    return {r["capability"]: r for r in warehouse.rows(sql)}


def test_the_gauges_count_only_the_listed_apis(loaded: Loaded, warehouse: Warehouse) -> None:
    now = loaded.loaded_at
    gauges = _gauge_rows(warehouse, now)
    teams: dict[str, set[str]] = {"7d": set(), "28d": set()}
    seen_unlisted = set()
    for e in loaded.events:
        if e["capability"] != API_GATEWAY:
            continue
        at = datetime.fromisoformat(e["occurred_at"])
        if not counts_as_use(e["capability"], e["event_type"], e["data"].get("api")):
            if at >= now - timedelta(days=28):
                seen_unlisted.add(e["team"])
            continue
        for window, days in (("7d", 7), ("28d", 28)):
            if at >= now - timedelta(days=days):
                teams[window].add(e["team"])
    # Some teams call only the unlisted API in the window: a gauge counting every event fails.
    assert seen_unlisted - teams["28d"], "the scenario should have non-users calling the API"
    row = gauges[API_GATEWAY]
    assert (row["teams_7d"], row["teams_28d"]) == (len(teams["7d"]), len(teams["28d"]))


def test_churn_lowers_the_active_rate_and_never_the_adoption_rate(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    (((team, capability), stopped),) = truth.churned.items()
    used = _use_days(truth, capability)[team]
    last = max(used)
    assert min(used) < last < stopped.date() + timedelta(days=1)
    assert last + timedelta(days=WINDOW_DAYS) < truth.end.date()  # type: ignore[union-attr]

    rows = warehouse.rows(
        "SELECT day, target_teams, adopted_target_teams, active_target_teams_28d, "
        "adoption_rate, active_rate_28d FROM adoption_rates_daily "
        f"WHERE capability = '{capability}' ORDER BY day"
    )
    assert rows
    for r in rows:
        day = _day(r["day"])
        states = _states(truth, capability, day)
        assert r["target_teams"] == len(truth.teams), r
        assert r["adopted_target_teams"] == sum(a for a, _ in states.values()), r
        assert r["active_target_teams_28d"] == sum(b for _, b in states.values()), r
    adoption = [r["adoption_rate"] for r in rows]
    assert adoption == sorted(adoption), "cumulative adoption fell"
    # The day the churned team's last use leaves the 28-day window: one active team less.
    by_day = {_day(r["day"]): r for r in rows}
    still, gone = last + timedelta(days=WINDOW_DAYS - 1), last + timedelta(days=WINDOW_DAYS)
    assert _states(truth, capability, still)[team] == (True, True)
    assert _states(truth, capability, gone)[team] == (True, False)
    assert by_day[gone]["adoption_rate"] >= by_day[still]["adoption_rate"]

    target_days = warehouse.rows(
        "SELECT day, adopted, active_28d FROM adoption_target_days "
        f"WHERE capability = '{capability}' AND team = '{team}' ORDER BY day"
    )
    for r in target_days:
        assert (bool(r["adopted"]), bool(r["active_28d"])) == _states(
            truth, capability, _day(r["day"])
        )[team], r

    lifecycle = warehouse.rows(
        "SELECT state, toString(churned_at) AS churned_at FROM adoption_lifecycle FINAL "
        f"WHERE capability = '{capability}' AND team = '{team}'"
    )
    assert lifecycle == [
        {"state": "churned", "churned_at": (last + timedelta(days=WINDOW_DAYS)).isoformat()}
    ]


def _departments_today(truth: GroundTruth) -> dict[str, str]:
    """Each simulated team's department in config/teams, with the truth's move applied."""
    text = repo_file("config", "teams", "catalog-info.yaml").read_text(encoding="utf-8")
    parent = {
        child: d["metadata"]["name"]
        for d in yaml.safe_load_all(text)
        if d and d.get("kind") == "Group" and d["metadata"]["name"] in DEPARTMENTS
        for child in d["spec"].get("children", [])
    }
    for team, (group, _at) in truth.moves.items():
        parent[team] = group
    return {team: parent[team] for team in truth.teams}


def test_the_team_catalog_holds_the_move_at_its_date(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    ((team, (group, at)),) = truth.moves.items()
    rows = warehouse.rows(
        "SELECT parent, toUnixTimestamp64Milli(valid_from) AS f, "
        "toUnixTimestamp64Milli(valid_to) AS t FROM team_catalog FINAL "
        f"WHERE kind = 'team' AND name = '{team}' AND retracted = 0 ORDER BY valid_from"
    )
    assert [r["parent"] for r in rows] == ["discovery", group], rows
    assert rows[0]["t"] == rows[1]["f"] == millis(at)


def test_adoption_by_group_follows_todays_tree(warehouse: Warehouse, truth: GroundTruth) -> None:
    """adoption_by_group counts each team under its group in today's tree, over the whole
    history (docs/analysts.md): the moved team under its new department on every day, before
    its move too, and never under the old one."""
    ((moved, (group, _at)),) = truth.moves.items()
    department = _departments_today(truth)
    assert department[moved] == group
    rows = warehouse.rows(
        "SELECT group_name, day, target_teams, adopted_target_teams, active_target_teams_28d "
        f"FROM adoption_by_group WHERE capability = '{API_GATEWAY}' "
        f"AND group_name IN {DEPARTMENTS}"
    )
    assert {r["group_name"] for r in rows} == set(DEPARTMENTS)
    for r in rows:
        states = _states(truth, API_GATEWAY, _day(r["day"]))
        members = [t for t, d in department.items() if d == r["group_name"]]
        want = (
            len(members),
            sum(states[t][0] for t in members),
            sum(states[t][1] for t in members),
        )
        got = (r["target_teams"], r["adopted_target_teams"], r["active_target_teams_28d"])
        assert got == want, (r["group_name"], r["day"], got, want)


def test_the_group_comparison_sees_a_move_left_out(truth: GroundTruth) -> None:
    """Negative control: without the move the moved team's department differs, so a view that
    took the oldest parent would fail the test above."""
    ((moved, (group, _at)),) = truth.moves.items()
    unmoved = GroundTruth(teams=truth.teams)
    assert _departments_today(unmoved)[moved] != group


def test_churn_check_sees_a_team_still_active(truth: GroundTruth) -> None:
    """Negative control: had the churned team kept using it, its state after the window would
    be active, which the churn test would report."""
    (((team, capability), _stopped),) = truth.churned.items()
    last = max(_use_days(truth, capability)[team])
    day = last + timedelta(days=WINDOW_DAYS)
    kept = GroundTruth(teams=truth.teams)
    kept.uses.update(truth.uses)
    kept.uses[team, capability, day] += 1
    assert _states(kept, capability, day)[team] == (True, True)


def test_the_impact_panel_reads_the_targets_of_each_week(
    warehouse: Warehouse, truth: GroundTruth
) -> None:
    """`uptake impact` takes each week's target teams (pipeline/impact/store.py): every week of
    the simulated window is covered, and the simulated teams (all product teams, targets of
    every declared capability) are targets in each."""
    rows = warehouse.rows(WEEKLY_TARGETS_SQL)
    assert truth.start is not None and truth.end is not None
    first = truth.start.date() - timedelta(days=truth.start.weekday())
    weeks = {first + timedelta(weeks=i) for i in range((truth.end - truth.start).days // 7 + 1)}
    for capability in ("deploy-pipeline", API_GATEWAY):
        got = {_day(r["week"]): set(r["teams"]) for r in rows if r["capability"] == capability}
        assert weeks <= set(got), sorted(weeks - set(got))
        assert all(set(truth.teams) <= got[week] for week in weeks)
