"""The team and organisation-unit variables narrow the organisation-wide panels (issue #18).

On the simulator-filled warehouse, the committed dashboards' panels are expanded as Grafana
expands them (`grafana_sql`) with `$team` / `$org_unit` at All, at one team, and at one
organisation unit, and compared with figures computed here in Python: the teams under a unit by
walking today's team catalog rows (not `team_groups`), the rates by counting the target (team,
capability) pairs of `adoption_target_days` rows of those teams, the north star by summing
`north_star_daily` rows. At All the panels must give what the views they read before gave
(`adoption_rates_daily`, `adoption_by_platform`): today's dashboards show the same numbers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from pipeline.dashboards import grafana_sql
from pipeline.dashboards.names import ORG_UNIT_VARIABLE, TEAMS_VARIABLE
from tests.support.dashboards import DASHBOARDS, FilledWarehouse, Result, panels_of

pytestmark = pytest.mark.integration

WIDTH_PX = 1000


def _rows(warehouse: FilledWarehouse, sql: str) -> list[list[Any]]:
    result = warehouse.query_many({"q": sql})["q"]
    assert isinstance(result, Result), result
    return result.rows


def _teams_under(warehouse: FilledWarehouse) -> dict[str, set[str]]:
    """Every group of today's catalog tree and the teams (any depth) under it."""
    parents = dict(
        _rows(
            warehouse,
            "SELECT name, parent FROM team_catalog FINAL WHERE kind = 'team' AND retracted = 0 "
            "AND valid_from <= now64(3) AND now64(3) < valid_to",
        )
    )
    under: dict[str, set[str]] = defaultdict(set)
    for team in parents:
        group, seen = parents[team], 0
        while group and seen < 6:  # team_groups' documented depth
            under[group].add(team)
            group, seen = parents.get(group, ""), seen + 1
    return under


def _panel_sql(file: str, title: str) -> tuple[dict[str, Any], str]:
    dashboard = json.loads((DASHBOARDS / file).read_text())
    [panel] = [p for p in panels_of(dashboard) if p["title"] == title]
    [target] = panel["targets"]
    return panel, target["rawSql"]


def _run(
    warehouse: FilledWarehouse,
    file: str,
    title: str,
    chosen: dict[str, tuple[str, ...]],
    fixed: dict[str, str] | None = None,
) -> list[list[Any]]:
    """The panel's rows with `$team`/`$org_unit` as `chosen` (absent: All) over the data."""
    panel, sql = _panel_sql(file, title)
    time_range = grafana_sql.TimeRange(warehouse.start, warehouse.end)
    interval = grafana_sql.grafana_interval(time_range, WIDTH_PX, panel.get("interval"))
    variables = {
        name: grafana_sql.Variable(name, chosen.get(name, grafana_sql.ALL), ("unused",))
        for name in (TEAMS_VARIABLE, ORG_UNIT_VARIABLE, "capability")
    }
    for name, value in (fixed or {}).items():
        variables[name] = grafana_sql.Variable(name, value)
    return _rows(
        warehouse,
        grafana_sql.expand(sql, time_range=time_range, interval=interval, variables=variables),
    )


@pytest.fixture(scope="module")
def pairs(filled_warehouse: FilledWarehouse) -> list[list[Any]]:
    """Every target (team, capability) pair of every day of the data, with its platform."""
    start, end = filled_warehouse.start.date(), filled_warehouse.end.date()
    return _rows(
        filled_warehouse,
        "SELECT toString(d.day), d.capability, d.team, d.adopted, d.active_28d, c.platform "
        "FROM adoption_target_days AS d INNER JOIN (SELECT name, platform FROM "
        "capability_catalog FINAL WHERE declared = 1) AS c ON c.name = d.capability "
        f"WHERE d.day >= '{start}' AND d.day <= '{end}'",
    )


def _rates(pairs: list[list[Any]], teams: set[str] | None, by: int) -> dict[tuple[str, str], float]:
    """{(series, day · adopted|active 28d): rate} as the panel names its series."""
    counted: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for day, capability, team, adopted, active, platform in pairs:
        if teams is not None and team not in teams:
            continue
        cell = counted[((capability, platform)[by], day)]
        cell[0] += 1
        cell[1] += int(adopted)
        cell[2] += int(active)
    out = {}
    for (series, day), (n, adopted, active) in counted.items():
        out[(f"{series} · adopted", day)] = adopted / n
        out[(f"{series} · active 28d", day)] = active / n
    return out


def _panel_rates(rows: list[list[Any]]) -> dict[tuple[str, str], float]:
    return {(str(series), str(time)[:10]): float(rate) for time, series, rate in rows}


def _a_unit_and_team(warehouse: FilledWarehouse, pairs: list[list[Any]]) -> tuple[str, str]:
    """An organisation unit that holds some but not all target teams, and a team outside it."""
    targets = {p[2] for p in pairs}
    for unit, teams in sorted(_teams_under(warehouse).items()):
        if 1 < len(teams & targets) < len(targets):
            return unit, sorted(targets - teams)[0]
    raise AssertionError("the simulated organisation has no unit with part of the teams")


@pytest.mark.parametrize(
    ("title", "by", "view"),
    [
        ("Adoption rate and 28-day active rate", 0, "adoption_rates_daily"),
        ("Adoption by platform type", 1, "adoption_by_platform"),
    ],
)
def test_adoption_rates_follow_the_chosen_teams(
    filled_warehouse: FilledWarehouse, pairs: list[list[Any]], title: str, by: int, view: str
) -> None:
    file = "adoption-overview.json"
    unit, team = _a_unit_and_team(filled_warehouse, pairs)
    under = _teams_under(filled_warehouse)[unit]

    everyone = _panel_rates(_run(filled_warehouse, file, title, {}))
    assert everyone == pytest.approx(_rates(pairs, None, by))
    # All is what the dashboard showed before the variables: the view's own figures.
    series = ("capability", "platform")[by]
    denominator = ("target_teams", "target_pairs")[by]
    start, end = filled_warehouse.start.date(), filled_warehouse.end.date()
    before = _rows(
        filled_warehouse,
        f"SELECT toString(day), {series}, adoption_rate, active_rate_28d FROM {view} "
        f"WHERE day >= '{start}' AND day <= '{end}' AND {denominator} > 0"
        + (
            " AND capability IN (SELECT name FROM capability_catalog FINAL WHERE declared = 1)"
            if by == 0
            else ""
        ),
    )
    from_view = {(f"{s} · adopted", d): float(a) for d, s, a, _ in before} | {
        (f"{s} · active 28d", d): float(b) for d, s, _, b in before
    }
    assert everyone == pytest.approx(from_view)

    in_unit = _panel_rates(_run(filled_warehouse, file, title, {ORG_UNIT_VARIABLE: (unit,)}))
    assert in_unit == pytest.approx(_rates(pairs, under, by))
    assert in_unit != pytest.approx(everyone), "the unit's figures differ from everyone's"

    one = _panel_rates(_run(filled_warehouse, file, title, {TEAMS_VARIABLE: (team,)}))
    assert one == pytest.approx(_rates(pairs, {team}, by))
    # A team outside the unit and the unit together: no pair is left.
    assert (
        _run(filled_warehouse, file, title, {TEAMS_VARIABLE: (team,), ORG_UNIT_VARIABLE: (unit,)})
        == []
    )


def test_headline_stats_and_north_star_follow_the_chosen_teams(
    filled_warehouse: FilledWarehouse, pairs: list[list[Any]]
) -> None:
    unit, team = _a_unit_and_team(filled_warehouse, pairs)
    under = _teams_under(filled_warehouse)[unit]
    start, end = filled_warehouse.start, filled_warehouse.end
    used = _rows(
        filled_warehouse,
        "SELECT DISTINCT team FROM usage_day_counted WHERE capability IN (SELECT name FROM "
        "capability_catalog FINAL WHERE declared = 1) AND bucket >= toDate('"
        f"{start.date()}') AND bucket <= toDate('{end.date()}')",
    )
    teams_used = {row[0] for row in used}
    title = "Teams using the platform"
    for chosen, expected in (
        ({}, len(teams_used)),
        ({ORG_UNIT_VARIABLE: (unit,)}, len(teams_used & under)),
        ({TEAMS_VARIABLE: (team,)}, len(teams_used & {team})),
    ):
        [[value]] = _run(filled_warehouse, "adoption-overview.json", title, chosen)
        assert float(value) == expected, chosen
    assert 0 < len(teams_used & under) < len(teams_used), "the check can tell them apart"

    days = _rows(
        filled_warehouse,
        "SELECT team, north_star, measure, value FROM north_star_daily "
        f"WHERE day >= toDate('{start.date()}') AND day <= toDate('{end.date()}')",
    )
    assert days, "the simulated organisation has north-star outcomes"
    for chosen, keep in (({}, None), ({ORG_UNIT_VARIABLE: (unit,)}, under)):
        values: dict[str, list[float]] = defaultdict(list)
        measures = {}
        for row_team, star, measure, value in days:
            if (keep is None or row_team in keep) and value is not None:
                values[f"{row_team} · {star}"].append(float(value))
                measures[f"{row_team} · {star}"] = measure
        expected_stars = {
            k: (sum(v) / len(v) if measures[k] == "decision_rate" else sum(v))
            for k, v in values.items()
        }
        rows = _run(filled_warehouse, "platform-impact.json", "North star in the period", chosen)
        shown = {name: float(value) for name, value in rows if value is not None}
        assert shown == pytest.approx(expected_stars), chosen
