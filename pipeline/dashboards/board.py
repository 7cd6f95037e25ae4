"""Uptake's dashboard vocabulary on top of grafana-foundation-sdk: datasources, targets, layout.

The SDK gives typed builders for the classic dashboard JSON (schemaVersion 41) and every core
panel; it has no model for the ClickHouse plugin's query, so `ClickHouseQuery` below is one (the
fields the plugin's SQL editor saves). `Board` adds what the SDK's automatic layout lacks: panels
flow left to right and wrap *before* they would overflow the 24-column grid, rows start a new
line, and every panel gets a stable id (Grafana would number them itself, differently on every
import, which would break links and the committed-JSON check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from pipeline.dashboards.names import ORG_UNIT_VARIABLE, TEAMS_VARIABLE

# Panels, annotations and query variables refer to a datasource *variable* per datasource type,
# so the JSON imports into any Grafana (the variable lists the datasources of its type). Its
# default is the uid deploy/grafana/provisioning/datasources/uptake.yml provisions.
CLICKHOUSE_VARIABLE = "ds_clickhouse"
CLICKHOUSE_UID = "${ds_clickhouse}"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
PROVISIONED_CLICKHOUSE_UID = "uptake-clickhouse"
PROMETHEUS_VARIABLE = "ds_prometheus"
PROMETHEUS_UID = "${ds_prometheus}"
PROMETHEUS_TYPE = "prometheus"
PROVISIONED_PROMETHEUS_UID = "uptake-prometheus"

CLICKHOUSE = model.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)
PROMETHEUS = model.DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)

GRID_COLUMNS = 24

# The plugin's query formats (the backend's sqlutil.FormatQueryOption).
Format = Literal["timeseries", "table"]
_FORMAT_CODE = {"timeseries": 0, "table": 1}


class ClickHouseQuery(cogvariants.Dataquery):
    """A `grafana-clickhouse-datasource` target written in its SQL editor."""

    def __init__(self, sql: str, fmt: Format, ref_id: str = "A") -> None:
        self.sql = sql.strip()
        self.fmt = fmt
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": {"type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID},
            "editorType": "sql",
            "format": _FORMAT_CODE[self.fmt],
            "queryType": "timeseries" if self.fmt == "timeseries" else "table",
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class ClickHouseTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder for `ClickHouseQuery`, so it plugs into the SDK's `with_target()`."""

    def __init__(self, sql: str, fmt: Format = "table", ref_id: str = "A") -> None:
        self._query = ClickHouseQuery(sql, fmt, ref_id)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def clickhouse(sql: str, fmt: Format = "table", ref_id: str = "A") -> ClickHouseTarget:
    return ClickHouseTarget(sql, fmt, ref_id)


def promql(expr: str, legend: str = "", ref_id: str = "A") -> sdk_prometheus.Dataquery:
    """A Prometheus range query (the pipeline-health dashboard)."""
    query = (
        sdk_prometheus.Dataquery()
        .expr(" ".join(expr.split()))
        .range()
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
    )
    return query.legend_format(legend) if legend else query


class PanelBuilder(Protocol):
    """What every panel builder of the SDK has (they share no base class beyond Builder)."""

    def id(self, id_val: int) -> Self: ...

    def grid_pos(self, grid_pos: model.GridPos) -> Self: ...

    def build(self) -> model.Panel: ...


class _Built(cogbuilder.Builder[model.Panel]):
    def __init__(self, panel: model.Panel) -> None:
        self._panel = panel

    def build(self) -> model.Panel:
        return self._panel


@dataclass
class _Cursor:
    x: int = 0
    y: int = 0
    line_height: int = 0

    def place(self, width: int, height: int) -> model.GridPos:
        if width > GRID_COLUMNS:
            raise ValueError(f"a panel is at most {GRID_COLUMNS} columns wide")
        if self.x + width > GRID_COLUMNS:
            self.newline()
        pos = model.GridPos(h=height, w=width, x=self.x, y=self.y)
        self.x += width
        self.line_height = max(self.line_height, height)
        return pos

    def newline(self) -> None:
        self.y += self.line_height
        self.x, self.line_height = 0, 0


@dataclass
class Board:
    """One dashboard: metadata, variables, rows and panels in reading order."""

    uid: str
    title: str
    description: str
    tags: tuple[str, ...] = ("uptake",)
    time_from: str = "now-90d"
    refresh: str = "15m"
    _builder: sdk.Dashboard = field(init=False)
    _cursor: _Cursor = field(default_factory=_Cursor, init=False)
    _next_id: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        self._builder = (
            sdk.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(list(self.tags))
            .time(self.time_from, "now")
            .timezone("utc")
            .refresh(self.refresh)
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .editable()
            .link(
                sdk.DashboardLink("Uptake dashboards")
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags(["uptake"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )

    def variable(self, variable: cogbuilder.Builder[model.VariableModel]) -> Board:
        self._builder.with_variable(variable)
        return self

    def annotation(self, annotation: sdk.AnnotationQuery) -> Board:
        self._builder.annotation(annotation)
        return self

    def row(self, title: str) -> Board:
        """Start a new line with a (non-collapsible) row header."""
        if self._cursor.x or self._cursor.line_height:
            self._cursor.newline()
        pos = self._cursor.place(GRID_COLUMNS, 1)
        self._cursor.newline()
        row = sdk.Row(title).id(self._take_id()).grid_pos(pos)
        self._builder.with_row(row)
        return self

    def add(self, panel: PanelBuilder, width: int, height: int) -> Board:
        """Place `panel` at the next free spot of the grid, `width` columns wide."""
        panel.id(self._take_id()).grid_pos(self._cursor.place(width, height))
        self._builder.with_panel(_Built(panel.build()))
        return self

    def to_json(self) -> dict[str, Any]:
        """The dashboard as Grafana's classic JSON model (a fresh dict on every call)."""
        text = json.dumps(self._builder.build(), cls=JSONEncoder, sort_keys=True)
        data: dict[str, Any] = json.loads(text)
        # One datasource variable per datasource type the dashboard uses, first in the list
        # (the query variables read from it).
        used = [
            datasource_variable(name, label, kind, default)
            for name, label, kind, default in _DATASOURCE_VARIABLES
            if "${" + name + "}" in text
        ]
        templating = data.setdefault("templating", {})
        templating["list"] = [
            json.loads(json.dumps(variable.build(), cls=JSONEncoder, sort_keys=True))
            for variable in used
        ] + templating.get("list", [])
        return data

    def _take_id(self) -> int:
        taken = self._next_id
        self._next_id += 1
        return taken


_DATASOURCE_VARIABLES = (
    (CLICKHOUSE_VARIABLE, "ClickHouse", CLICKHOUSE_TYPE, PROVISIONED_CLICKHOUSE_UID),
    (PROMETHEUS_VARIABLE, "Prometheus", PROMETHEUS_TYPE, PROVISIONED_PROMETHEUS_UID),
)


def datasource_variable(name: str, label: str, kind: str, default: str) -> sdk.DatasourceVariable:
    """A variable listing the datasources of plugin type `kind`; `default` is the provisioned
    uid (Grafana falls back to the first datasource of the type when it does not exist)."""
    return (
        sdk.DatasourceVariable(name)
        .label(label)
        .type(kind)
        .current(model.VariableOption(text=default, value=default, selected=True))
        .description(f"The {label} datasource the panels and annotations query.")
    )


class ClickHouseAnnotation(cogbuilder.Builder[model.AnnotationTarget]):
    """An annotation query's target: ClickHouse SQL returning `time`, `text` and `tags`."""

    def __init__(self, sql: str) -> None:
        self._query = ClickHouseQuery(sql, "table", "Anno")

    def build(self) -> model.AnnotationTarget:
        return self._query  # type: ignore[return-value]  # the encoder calls to_json()


def annotation(name: str, sql: str, color: str, *, enabled: bool = True) -> sdk.AnnotationQuery:
    """A ClickHouse annotation: one marker per row, at `time`, with `text` and `tags`."""
    return (
        sdk.AnnotationQuery()
        .name(name)
        .datasource(CLICKHOUSE)
        .enable(enabled)
        .hide(False)
        .icon_color(color)
        .target(ClickHouseAnnotation(sql))
    )


def query_variable(
    name: str,
    label: str,
    sql: str,
    *,
    multi: bool = False,
    include_all: bool = False,
    description: str = "",
) -> sdk.QueryVariable:
    """A variable whose options come from a ClickHouse query (first column, sorted)."""
    text = " ".join(sql.split())
    variable = (
        sdk.QueryVariable(name)
        .label(label)
        .datasource(CLICKHOUSE)
        .query(text)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if description:
        variable.description(description)
    if include_all:
        variable.current(model.VariableOption(text="All", value=["$__all"], selected=True))
    return variable


def team_variables(board: Board, teams_sql: str, teams_description: str) -> Board:
    """The team and organisation-unit filters (`names.chosen_teams`): multi-value, All by
    default, so the dashboard shows the whole organisation until someone narrows it."""
    board.variable(
        query_variable(
            TEAMS_VARIABLE,
            "Teams",
            teams_sql,
            multi=True,
            include_all=True,
            description=teams_description,
        )
    )
    return board.variable(
        query_variable(
            ORG_UNIT_VARIABLE,
            "Organisation unit",
            "SELECT DISTINCT arrayJoin(groups) AS unit FROM team_groups ORDER BY unit",
            multi=True,
            include_all=True,
            description=(
                "Groups of today's team hierarchy (team catalog: department, group, ...): "
                "the teams under the chosen ones, at any depth."
            ),
        )
    )
