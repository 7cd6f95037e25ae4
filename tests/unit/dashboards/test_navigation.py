"""What a PM navigates by, checked on the generated JSON: annotations, team data links,
datasource variables, display names and units. Each check is a function returning problems,
run on every committed dashboard and, as a negative control, on a copy broken on purpose.

"Every field" of a ClickHouse panel (the definition the generator and this test share):
- a table or bar chart: each output column of the outermost SELECT of its targets, or after a
  `groupingToMatrix` its row header `row\\column` (the value columns are named by the data);
- a time series or heatmap: each value column (not `time`, not a label column,
  pipeline/dashboards/fields.LABELS, which name the series instead);
- a stat: its one value (the panel's default display name).
A Prometheus field is named by its target's legend. Numbers take the panel's default unit.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from pipeline.dashboards.board import CLICKHOUSE_TYPE, PROMETHEUS_TYPE
from pipeline.dashboards.fields import LABELS, columns, display_name, unit
from tests.support.dashboards import dashboard_files, panels_of

BOARDS = {path.name: json.loads(path.read_text()) for path in dashboard_files()}
VARIABLE_OF_TYPE = {CLICKHOUSE_TYPE: "ds_clickhouse", PROMETHEUS_TYPE: "ds_prometheus"}
TEAM_LINK = re.compile(
    r"/d/(?P<uid>[\w-]+)\?\$\{__url_time_range\}&var-team=\$\{[\w.]+:percentencode\}"
)


def _sql_columns(panel: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for target in panel.get("targets", []):
        if "rawSql" in target:
            found += [c for c in columns(target["rawSql"]) if c not in found]
    return found


def _overrides(panel: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(matcher, properties by id) of every override."""
    return [
        (o["matcher"], {p["id"]: p["value"] for p in o.get("properties", [])})
        for o in panel.get("fieldConfig", {}).get("overrides", [])
    ]


def _named_by_override(panel: dict[str, Any], field: str) -> bool:
    return any(
        matcher == {"id": "byName", "options": field} and props.get("displayName")
        for matcher, props in _overrides(panel)
    )


def _matrix(panel: dict[str, Any]) -> dict[str, Any] | None:
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "groupingToMatrix":
            options: dict[str, Any] = transformation["options"]
            return options
    return None


# --- the checks ---------------------------------------------------------------------------


def datasource_problems(dashboard: dict[str, Any]) -> list[str]:
    """Every datasource reference is the variable of its type, and that variable exists."""
    problems = []
    variables = {
        v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"
    }
    refs: list[tuple[str, dict[str, Any]]] = []
    for panel in panels_of(dashboard):
        if "datasource" in panel:
            refs.append((panel["title"], panel["datasource"]))
        refs += [(panel["title"], t["datasource"]) for t in panel.get("targets", [])]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        refs.append((annotation["name"], annotation["datasource"]))
        refs.append((annotation["name"], annotation["target"]["datasource"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "datasource" and "datasource" in variable:
            refs.append((variable["name"], variable["datasource"]))
    for where, ref in refs:
        name = VARIABLE_OF_TYPE.get(ref.get("type", ""))
        if name is None or ref.get("uid") != f"${{{name}}}":
            problems.append(f"{where}: datasource {ref} is not a datasource variable")
        elif variables.get(name) != ref["type"]:
            problems.append(f"{where}: no datasource variable {name} of type {ref['type']}")
    return problems


def annotation_problems(dashboard: dict[str, Any]) -> list[str]:
    """ClickHouse annotations whose SQL returns time, text, tags within the time range."""
    problems = []
    for annotation in dashboard.get("annotations", {}).get("list", []):
        target = annotation.get("target", {})
        sql = target.get("rawSql", "")
        if not sql or columns(sql) != ["time", "text", "tags"]:
            problems.append(f"{annotation['name']}: SQL must return time, text, tags")
        if "$__timeFilter(" not in sql and "$__dateFilter(" not in sql:
            problems.append(f"{annotation['name']}: not limited to the time range")
        if re.search(r"\$\{?team\b(?!:percentencode)", sql):
            problems.append(f"{annotation['name']}: a name reaches SQL unencoded")
    return problems


def team_link_problems(dashboard: dict[str, Any]) -> list[str]:
    """Every panel showing a team links it to the team drill-down, time range and team kept."""
    problems = []
    team_boards = {b["uid"] for b in BOARDS.values() if _has_team_variable(b)}
    for panel in panels_of(dashboard):
        matrix = _matrix(panel)
        shows_team = "team" in _sql_columns(panel) or (matrix or {}).get("rowField") == "team"
        if not shows_team:
            continue
        urls = [link["url"] for _, props in _overrides(panel) for link in props.get("links", [])]
        good = [u for u in urls if (m := TEAM_LINK.fullmatch(u)) and m["uid"] in team_boards]
        if not good:
            problems.append(f"{panel['title']}: shows a team but links to no team drill-down")
    return problems


def _has_team_variable(dashboard: dict[str, Any]) -> bool:
    """A single-team variable `team` (the drill-down's): what a team link's var-team sets."""
    return any(
        v["name"] == "team" and not v.get("multi") and not v.get("includeAll")
        for v in dashboard["templating"]["list"]
    )


def field_problems(dashboard: dict[str, Any]) -> list[str]:
    """Every field (module docstring) has a display name; every panel's numbers a unit."""
    problems = []
    for panel in panels_of(dashboard):
        if panel["type"] == "text":
            continue
        title, defaults = panel["title"], panel["fieldConfig"]["defaults"]
        if not defaults.get("unit"):
            problems.append(f"{title}: no unit for its numbers")
        if any("expr" in t for t in panel["targets"]):
            problems += [
                f"{title}: a Prometheus target without a legend"
                for t in panel["targets"]
                if not t.get("legendFormat")
            ]
            continue
        if panel["type"] == "stat":
            if not defaults.get("displayName"):
                problems.append(f"{title}: the value has no display name")
            continue
        matrix = _matrix(panel)
        if matrix:
            fields = [f"{matrix['rowField']}\\{matrix['columnField']}"]
        elif panel["type"] in ("timeseries", "heatmap"):
            names = [c for c in _sql_columns(panel) if c != "time"]
            fields = [c for c in names if c not in LABELS]
        else:
            fields = _sql_columns(panel)
        for field in fields:
            if not (_named_by_override(panel, field) or defaults.get("displayName")):
                problems.append(f"{title}: field {field} has no display name")
    return problems


CHECKS = [datasource_problems, annotation_problems, team_link_problems, field_problems]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_dashboard_passes(check: Any, name: str) -> None:
    assert check(BOARDS[name]) == []


def test_the_team_drilldown_shows_launches_milestones_and_deploys() -> None:
    team = BOARDS["team-drilldown.json"]
    names = [a["name"] for a in team["annotations"]["list"] if a["enable"]]
    assert names == ["Capability launches", "Team milestones", "Production deploys"]
    milestones = team["annotations"]["list"][1]["target"]["rawSql"]
    assert "team = decodeURLComponent('${team:percentencode}')" in milestones
    assert "adoption_milestones_current" in milestones
    for board in ("adoption-overview.json", "platform-impact.json"):
        assert "Capability launches" in [a["name"] for a in BOARDS[board]["annotations"]["list"]]


def test_overview_team_tables_link_to_the_drilldown() -> None:
    linked = {
        panel["title"]
        for panel in panels_of(BOARDS["adoption-overview.json"])
        if "/d/uptake-team?" in json.dumps(panel.get("fieldConfig", {}))
    }
    assert {"Developer adoption", "Teams x capabilities", "Breadth per team"} <= linked


# --- negative controls: each check catches what it is for ----------------------------------


def _first(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in panels_of(dashboard) if p["title"] == title)


def test_team_is_one_team_wherever_it_is_a_variable() -> None:
    """The dashboards menu carries every variable to the next dashboard (includeVars): a
    multi-value `team` at All would reach the drill-down as the team "$__all". The org-wide
    filter is `teams`; `team` is single-valued wherever it exists."""
    for name, board in BOARDS.items():
        for variable in board["templating"]["list"]:
            if variable["name"] == "team":
                assert not variable.get("multi") and not variable.get("includeAll"), name
    assert sum(_has_team_variable(b) for b in BOARDS.values()) == 1
    assert (
        sum(
            any(v["name"] == "teams" and v.get("includeAll") for v in b["templating"]["list"])
            for b in BOARDS.values()
        )
        == 3
    )


def test_a_fixed_datasource_uid_is_caught() -> None:
    broken = copy.deepcopy(BOARDS["team-drilldown.json"])
    _first(broken, "Lifecycle")["targets"][0]["datasource"]["uid"] = "uptake-clickhouse"
    assert datasource_problems(broken) == [
        "Lifecycle: datasource {'type': 'grafana-clickhouse-datasource', 'uid': "
        "'uptake-clickhouse'} is not a datasource variable"
    ]
    broken = copy.deepcopy(BOARDS["pipeline-health.json"])
    broken["templating"]["list"] = [
        v for v in broken["templating"]["list"] if v["name"] != "ds_prometheus"
    ]
    assert datasource_problems(broken)


def test_a_broken_annotation_is_caught() -> None:
    broken = copy.deepcopy(BOARDS["team-drilldown.json"])
    target = broken["annotations"]["list"][1]["target"]
    target["rawSql"] = (
        target["rawSql"]
        .replace(" AS text", " AS label")
        .replace("decodeURLComponent('${team:percentencode}')", "'${team}'")
    )
    assert annotation_problems(broken) == [
        "Team milestones: SQL must return time, text, tags",
        "Team milestones: a name reaches SQL unencoded",
    ]


def test_a_team_table_without_its_link_is_caught() -> None:
    broken = copy.deepcopy(BOARDS["adoption-overview.json"])
    panel = _first(broken, "Developer adoption")
    for override in panel["fieldConfig"]["overrides"]:
        override["properties"] = [p for p in override["properties"] if p["id"] != "links"]
    assert team_link_problems(broken) == [
        "Developer adoption: shows a team but links to no team drill-down"
    ]
    # A link that drops the time range does not count either.
    broken = copy.deepcopy(BOARDS["ml-platform.json"])
    panel = _first(broken, "Per team")
    for _, props in _overrides(panel):
        for link in props.get("links", []):
            link["url"] = link["url"].replace("${__url_time_range}&", "")
    assert team_link_problems(broken) == ["Per team: shows a team but links to no team drill-down"]


def test_a_field_without_name_or_unit_is_caught() -> None:
    broken = copy.deepcopy(BOARDS["team-drilldown.json"])
    panel = _first(broken, "Recent incidents")
    panel["fieldConfig"]["overrides"] = [
        o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] != "severity"
    ]
    del panel["fieldConfig"]["defaults"]["unit"]
    assert field_problems(broken) == [
        "Recent incidents: no unit for its numbers",
        "Recent incidents: field severity has no display name",
    ]


def test_columns_are_the_outer_select_list() -> None:
    sql = """
        SELECT toDate(bucket) AS time, concat(a, ', ', b) AS text, t.team,
            (SELECT max(x) FROM y) AS top
        FROM t WHERE x IN (SELECT 1)
    """
    assert columns(sql) == ["time", "text", "team", "top"]
    with pytest.raises(ValueError, match="no top-level SELECT"):
        columns("WITH 1 AS x")


def test_display_names_read_as_words() -> None:
    assert display_name("active_target_teams_28d") == "Active target teams (28 days)"
    assert display_name("lead_time_median_s") == "Lead time median"  # seconds: the unit
    assert display_name("year_month") == "Month"
    assert (unit("lead_time_s"), unit("deployed_at"), unit("first_use")) == (
        "s",
        "dateTimeAsIso",
        "time:YYYY-MM-DD",
    )
