"""`uptake report`: the adoption, impact and ML platform dashboards as one self-contained HTML file.

For people without Grafana. The report walks the same dashboard definitions Grafana gets
(`pipeline.dashboards`), runs every ClickHouse panel's own SQL against the warehouse with the
period bound as ClickHouse query parameters (`grafana_sql.to_clickhouse_parameters`: no value
is pasted into SQL text), shapes the result as Grafana would (`frames`) and draws it as inline
SVG (`svg`) or an HTML table. Variables are at their defaults (All), so the charts are the
dashboards' charts for the whole organisation.

The file needs nothing else to be read: no script, stylesheet, font or image is fetched.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.dashboards import grafana_sql
from pipeline.dashboards.board import CLICKHOUSE_UID, Board
from pipeline.report import svg
from pipeline.report.frames import (
    Series,
    ShapeError,
    Table,
    Wide,
    grouping_to_matrix,
    is_number,
    long_to_wide,
)
from pipeline.report.page import page
from pipeline.report.units import format_value
from pipeline.warehouse.connection import Warehouse, opened

RESOLUTION = 1000  # Grafana computes $__interval from the panel width; the report is ~1000 px


@dataclass(frozen=True)
class Section:
    """One dashboard's part of the report."""

    title: str
    description: str
    blocks: tuple[str, ...]


def report_dashboards() -> list[Callable[[], Board]]:
    """The dashboards the report draws, in order (the team drill-down and SRE ones are not)."""
    from pipeline.dashboards import adoption, impact, ml_platform

    return [adoption.build, impact.build, ml_platform.build]


def _panels(dashboard: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row's panels


def _defaults(dashboard: dict[str, Any]) -> dict[str, grafana_sql.Variable]:
    """Every variable at its default: All where offered, else the value the dashboard saves."""
    variables = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable.get("includeAll"):
            variables[name] = grafana_sql.Variable(name, grafana_sql.ALL)
            continue
        saved = (variable.get("current") or {}).get("value")
        if not isinstance(saved, str) or not saved:
            raise ValueError(f"variable {name} has no All option and no default value")
        variables[name] = grafana_sql.Variable(name, saved)
    return variables


def _run(
    warehouse: Warehouse,
    panel: dict[str, Any],
    target: dict[str, Any],
    time_range: grafana_sql.TimeRange,
    variables: dict[str, grafana_sql.Variable],
) -> Table:
    interval = grafana_sql.grafana_interval(
        time_range, int(panel.get("maxDataPoints") or RESOLUTION), panel.get("interval")
    )
    query = grafana_sql.to_clickhouse_parameters(
        target["rawSql"], time_range=time_range, interval=interval, variables=variables
    )
    columns, rows = warehouse.query(query.sql, query.parameters)
    return Table(tuple(columns), tuple(rows))


def _merge(frames: list[Wide]) -> Wide:
    times = sorted({t for frame in frames for t in frame.times})
    series = []
    for frame in frames:
        index = {t: i for i, t in enumerate(frame.times)}
        for line in frame.series:
            series.append(
                Series(
                    line.name,
                    tuple(line.values[index[t]] if t in index else None for t in times),
                )
            )
    return Wide(tuple(times), tuple(series))


def _unit(panel: dict[str, Any]) -> str:
    return str(panel.get("fieldConfig", {}).get("defaults", {}).get("unit") or "short")


def _decimals(panel: dict[str, Any]) -> int | None:
    decimals = panel.get("fieldConfig", {}).get("defaults", {}).get("decimals")
    return int(decimals) if decimals is not None else None


def _table_html(table: Table, panel: dict[str, Any]) -> str:
    unit, decimals = _unit(panel), _decimals(panel)
    overrides = {
        o["matcher"]["options"]: p["value"]
        for o in panel.get("fieldConfig", {}).get("overrides", [])
        if o.get("matcher", {}).get("id") == "byName"
        for p in o.get("properties", [])
        if p.get("id") == "unit"
    }
    cell_type = (
        panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("cellOptions", {})
    )
    heat = cell_type.get("type") == "color-background"
    numbers = [float(v) for row in table.rows for v in row if is_number(v)]
    top = max([*numbers, 0.0]) or 1.0
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for column, value in zip(table.columns, row, strict=True):
            if is_number(value):
                text = format_value(float(value), overrides.get(column, unit), decimals)
                style = (
                    f' style="background:rgba(55,135,45,{0.1 + 0.8 * float(value) / top:.2f})"'
                    if heat and float(value) > 0
                    else ""
                )
                cells.append(f'<td class="num"{style}>{html.escape(text)}</td>')
            else:
                cells.append(f"<td>{html.escape('' if value is None else str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _render(panel: dict[str, Any], tables: list[Table]) -> str:
    kind, unit = panel["type"], _unit(panel)
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    if kind == "timeseries":
        frame = _merge([long_to_wide(t) for t in tables])
        return svg.time_series(
            frame,
            unit,
            bars=custom.get("drawStyle") == "bars",
            stacked=custom.get("stacking", {}).get("mode") == "normal",
        )
    if kind == "heatmap":
        frame = _merge([long_to_wide(t) for t in tables])
        columns = [t.strftime("%b %d") for t in frame.times]
        return svg.heat_grid(
            columns, [s.name for s in frame.series], [s.values for s in frame.series], unit
        )
    table = tables[0]
    if not table.rows:
        raise ShapeError("no rows")
    if kind == "stat":
        values = [float(v) for v in table.rows[-1] if is_number(v)]
        if not values:
            raise ShapeError(f"no number in {table.columns}")
        text = format_value(values[0], unit, _decimals(panel))
        return f'<div class="stat" data-value="{values[0]:g}">{html.escape(text)}</div>'
    if kind == "barchart":
        x_field = panel["options"]["xField"]
        categories = [str(v) for v in table.column(x_field)]
        series = [
            Series(name, tuple(None if v is None else float(v) for v in table.column(name)))
            for name in table.columns
            if name != x_field and all(v is None or is_number(v) for v in table.column(name))
        ]
        return svg.bar_chart(categories, series, unit)
    if kind == "table":
        for transformation in panel.get("transformations", []):
            if transformation["id"] == "groupingToMatrix":
                options = transformation["options"]
                table = grouping_to_matrix(
                    table, options["rowField"], options["columnField"], options["valueField"]
                )
        return _table_html(table, panel)
    raise ShapeError(f"the report cannot draw a {kind} panel")


def _panel_block(panel: dict[str, Any], body: str) -> str:
    kind = panel["type"]
    width = "half" if panel.get("gridPos", {}).get("w", 24) <= 12 else "full"
    if kind == "stat":
        width = "quarter"
    return (
        f'<figure class="panel {width}" data-panel-type="{html.escape(kind)}">'
        f"<figcaption><strong>{html.escape(panel['title'])}</strong>"
        f"<span>{html.escape(panel.get('description', ''))}</span></figcaption>"
        f"{body}</figure>"
    )


def build_sections(
    warehouse: Warehouse, start: datetime, end: datetime
) -> tuple[list[Section], list[str]]:
    """The report's sections, and the panels that had no data (named, not hidden)."""
    time_range = grafana_sql.TimeRange(start, end)
    sections, empty = [], []
    for build in report_dashboards():
        dashboard = build().to_json()
        variables = _defaults(dashboard)
        blocks: list[str] = []
        for panel in _panels(dashboard):
            if panel["type"] == "row":
                blocks.append(f"<h3>{html.escape(panel['title'])}</h3>")
                continue
            targets = [
                t for t in panel.get("targets", []) if t["datasource"]["uid"] == CLICKHOUSE_UID
            ]
            if not targets:
                continue
            tables = [_run(warehouse, panel, t, time_range, variables) for t in targets]
            try:
                body = _render(panel, tables)
            except ShapeError as exc:
                empty.append(f"{dashboard['title']} / {panel['title']}: {exc}")
                body = '<p class="nodata">No data in this period.</p>'
            blocks.append(_panel_block(panel, body))
        sections.append(Section(dashboard["title"], dashboard["description"], tuple(blocks)))
    return sections, empty


def build_report(warehouse: Warehouse, start: datetime, end: datetime, title: str) -> str:
    sections, _ = build_sections(warehouse, start, end)
    return page(
        title=title,
        start=start,
        end=end,
        generated=datetime.now(UTC),
        source=f"{warehouse.kind} warehouse, database {warehouse.database}",
        sections=[(s.title, s.description, s.blocks) for s in sections],
    )


def write_report(
    warehouse_url: str, start: datetime, end: datetime, output: Path, *, title: str
) -> Path:
    """Build the report for [start, end] from the warehouse at `warehouse_url` into `output`."""
    with opened(warehouse_url) as warehouse:
        text = build_report(warehouse, start, end, title)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output
