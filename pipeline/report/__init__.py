"""`uptake report`: the adoption, impact and ML platform dashboards as one self-contained HTML file.

For people without Grafana. The report walks the same dashboard definitions Grafana gets
(`pipeline.dashboards`), runs every ClickHouse panel's own SQL against the warehouse with the
period bound as ClickHouse query parameters (`grafana_sql.to_clickhouse_parameters`: no value
is pasted into SQL text), shapes the result as Grafana would (`frames`) and draws it as inline
SVG (`svg`) or an HTML table. Variables are at their defaults (All), so the charts are the
dashboards' charts for the whole organisation; `--capability`, `--team` and `--org-unit` bind
the dashboards' `capability`, `team` (drill-down), `teams` and `org_unit` variables, so a
narrowed panel is the panel
Grafana shows with the same choice.

The file needs nothing else to be read: no script, stylesheet, font or image is fetched.
"""

from __future__ import annotations

import csv
import difflib
import html
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, date, datetime
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
from pipeline.report.labels import (
    column_label,
    column_unit,
    plain_description,
    series_label,
    time_text,
)
from pipeline.report.page import page
from pipeline.report.units import format_value
from pipeline.warehouse.connection import Warehouse, opened

RESOLUTION = 1000  # Grafana computes $__interval from the panel width; the report is ~1000 px


@dataclass(frozen=True)
class Export:
    """One panel's data as the page shows it: display-named columns and the exact values."""

    file_name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def write(self, folder: Path) -> Path:
        path = folder / self.file_name
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(self.columns)
            writer.writerows([_csv_cell(v) for v in row] for row in self.rows)
        return path


@dataclass(frozen=True)
class Section:
    """One dashboard's part of the report."""

    title: str
    description: str
    blocks: tuple[str, ...]
    exports: tuple[Export, ...] = ()


class FilterError(ValueError):
    """A --capability, --team or --org-unit the warehouse does not know."""


@dataclass(frozen=True)
class Filters:
    """What the report is narrowed to (None: everything)."""

    capability: str | None = None
    team: str | None = None
    org_unit: str | None = None


@dataclass(frozen=True)
class Scope:
    """Filters resolved against the warehouse: the teams an --org-unit covers, a caption."""

    capability: str | None = None
    team: str | None = None  # bound to `team` (drill-down) and `teams` (multi-value)
    org_unit: str | None = None  # bound to the dashboards' `org_unit` variable
    teams: frozenset[str] | None = None  # rows of these teams only (None: every team)
    caption: str = ""


CAPABILITIES = "SELECT name FROM capability_catalog FINAL WHERE declared = 1 ORDER BY name"
TEAMS = (
    "SELECT DISTINCT team FROM (SELECT team FROM team_groups UNION ALL "
    "SELECT DISTINCT team FROM usage_day_counted UNION ALL "
    "SELECT DISTINCT team FROM model_trainings) WHERE team != '' ORDER BY team"
)
ORG_UNITS = "SELECT DISTINCT arrayJoin(groups) AS unit FROM team_groups ORDER BY unit"
TEAMS_OF_UNIT = "SELECT team FROM team_groups WHERE has(groups, {org_unit:String}) ORDER BY team"


def _known(warehouse: Warehouse, sql: str, params: dict[str, Any] | None = None) -> list[str]:
    return [str(row[0]) for row in warehouse.query(sql, params or {})[1]]


def _check(value: str, known: list[str], option: str, kind: tuple[str, str]) -> None:
    """Raise FilterError unless `value` is `known`; `kind` is (singular, plural)."""
    if value in known:
        return
    near = difflib.get_close_matches(value, known, n=5, cutoff=0.5)
    more = f" and {len(known) - 20:,} more" if len(known) > 20 else ""
    hint = (
        f"did you mean {', '.join(near)}?"
        if near
        else f"known {kind[1]}: {', '.join(known[:20]) or 'none'}{more}"
    )
    raise FilterError(f"{option} {value!r} is not a {kind[0]} in the warehouse; {hint}")


def resolve(warehouse: Warehouse, filters: Filters) -> Scope:
    """Check each filter against the warehouse; raise FilterError naming the nearest names."""
    captions, teams = [], None
    if filters.capability is not None:
        _check(
            filters.capability,
            _known(warehouse, CAPABILITIES),
            "--capability",
            ("capability", "capabilities"),
        )
        captions.append(f"capability {filters.capability}")
    if filters.team is not None:
        _check(filters.team, _known(warehouse, TEAMS), "--team", ("team", "teams"))
        teams = frozenset([filters.team])
        captions.append(f"team {filters.team}")
    if filters.org_unit is not None:
        _check(
            filters.org_unit, _known(warehouse, ORG_UNITS), "--org-unit", ("org unit", "org units")
        )
        under = frozenset(_known(warehouse, TEAMS_OF_UNIT, {"org_unit": filters.org_unit}))
        teams = under if teams is None else teams & under
        captions.append(f"org unit {filters.org_unit} ({len(under):,} teams)")
    return Scope(filters.capability, filters.team, filters.org_unit, teams, "; ".join(captions))


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


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return time_text(value)
    return "" if value is None else value


def _cell_text(value: Any) -> str:
    if isinstance(value, datetime | date):
        return time_text(value)
    return "" if value is None else str(value)


def _table_html(table: Table, panel: dict[str, Any], header: tuple[str, ...]) -> str:
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
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = []
    for row in table.rows:
        cells = []
        for column, value in zip(table.columns, row, strict=True):
            if is_number(value):
                column_in = overrides.get(column, column_unit(column, unit))
                text = format_value(float(value), column_in, decimals)
                style = (
                    f' style="background:rgba(55,135,45,{0.1 + 0.8 * float(value) / top:.2f})"'
                    if heat and float(value) > 0
                    else ""
                )
                cells.append(
                    f'<td class="num" data-value="{float(value):.12g}"{style}>'
                    f"{html.escape(text)}</td>"
                )
            else:
                cells.append(f"<td>{html.escape(_cell_text(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _shared_label(names: list[str]) -> tuple[str, list[str]]:
    """What every series name starts with (`orders (count), t1`, `orders (count), t2`), once."""
    heads = {name.split(", ", 1)[0] for name in names}
    if len(names) > 1 and len(heads) == 1 and all(", " in n for n in names):
        return heads.pop(), [n.split(", ", 1)[1] for n in names]
    return "", names


def _wide_export(frame: Wide, names: list[str]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    rows = [
        (time_text(at), *(s.values[i] for s in frame.series)) for i, at in enumerate(frame.times)
    ]
    return ("Time", *names), rows


Shaped = tuple[str, tuple[str, ...], list[tuple[Any, ...]]]  # HTML, CSV header, CSV rows


def _render(panel: dict[str, Any], tables: list[Table]) -> Shaped:
    kind, unit = panel["type"], _unit(panel)
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    if kind in ("timeseries", "heatmap"):
        frame = _merge([long_to_wide(t) for t in tables])
        full = [series_label(s.name) for s in frame.series]
        title, names = _shared_label(full)
        frame = Wide(
            frame.times,
            tuple(Series(n, s.values) for n, s in zip(names, frame.series, strict=True)),
        )
        header, rows = _wide_export(frame, full)
        if kind == "heatmap":
            columns = [t.strftime("%b %d") for t in frame.times]
            chart = svg.heat_grid(columns, names, [s.values for s in frame.series], unit)
            return chart, header, rows
        chart = svg.time_series(
            frame,
            unit,
            bars=custom.get("drawStyle") == "bars",
            stacked=custom.get("stacking", {}).get("mode") == "normal",
            legend_title=title,
        )
        return chart, header, rows
    table = tables[0]
    if not table.rows:
        raise ShapeError("no rows")
    if kind == "stat":
        value = _stat_value(table)
        text = format_value(value, unit, _decimals(panel))
        chart = f'<div class="stat" data-value="{value:.12g}">{html.escape(text)}</div>'
        return chart, (panel["title"],), [(value,)]
    if kind == "barchart":
        x_field = panel["options"]["xField"]
        categories = [str(v) for v in table.column(x_field)]
        series = [
            Series(
                series_label(name),
                tuple(None if v is None else float(v) for v in table.column(name)),
            )
            for name in table.columns
            if name != x_field and all(v is None or is_number(v) for v in table.column(name))
        ]
        rows = [(c, *(s.values[i] for s in series)) for i, c in enumerate(categories)]
        header = (column_label(x_field), *(s.name for s in series))
        return svg.bar_chart(categories, series, unit), header, rows
    if kind == "table":
        header = tuple(column_label(c) for c in table.columns)
        for transformation in panel.get("transformations", []):
            if transformation["id"] == "groupingToMatrix":
                options = transformation["options"]
                table = grouping_to_matrix(
                    table, options["rowField"], options["columnField"], options["valueField"]
                )
                corner = (
                    f"{column_label(options['rowField'])} / {column_label(options['columnField'])}"
                )
                header = (corner, *table.columns[1:])
        return _table_html(table, panel, header), header, list(table.rows)
    raise ShapeError(f"the report cannot draw a {kind} panel")


def _stat_value(table: Table) -> float:
    values = [float(v) for v in table.rows[-1] if is_number(v)] if table.rows else []
    if not values:
        raise ShapeError(f"no number in {table.columns}")
    return values[0]


def _change(value: float, previous: float | None, unit: str, decimals: int | None) -> str:
    """The headline's previous-period figure and the change, as a line under it."""
    if previous is None:
        return '<p class="change" data-previous="">Previous period: no data</p>'
    delta = value - previous
    if unit == "percentunit":
        moved = f"{delta * 100:+.1f} points"
    else:
        moved = ("+" if delta >= 0 else "-") + format_value(abs(delta), unit, decimals)
        if previous:
            moved += f" ({delta / abs(previous):+.0%})"
    return (
        f'<p class="change" data-previous="{previous:.12g}" data-delta="{delta:.12g}">'
        f"Previous period: {html.escape(format_value(previous, unit, decimals))} · "
        f"change {html.escape(moved)}</p>"
    )


def _panel_block(panel: dict[str, Any], body: str, description: str, csv_href: str) -> str:
    kind = panel["type"]
    width = "half" if panel.get("gridPos", {}).get("w", 24) <= 12 else "full"
    if kind == "stat":
        width = "quarter"
    link = f'<a class="csv" href="{html.escape(csv_href)}">CSV</a>' if csv_href else ""
    return (
        f'<figure class="panel {width}" data-panel-type="{html.escape(kind)}">'
        f"<figcaption><strong>{html.escape(panel['title'])}</strong>{link}"
        f"<span>{html.escape(description)}</span></figcaption>"
        f"{body}</figure>"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _uses(sql: str, variable: str) -> bool:
    return re.search(rf"\$\{{?{variable}\b", sql) is not None


def _narrow(tables: list[Table], sql: str, scope: Scope) -> tuple[list[Table], list[str]]:
    """Rows of the scope's capability and teams; the filters this panel cannot apply."""
    missed = []
    if scope.capability is not None and not _uses(sql, "capability"):
        if all("capability" in t.columns for t in tables):
            tables = [_keep(t, "capability", {scope.capability}) for t in tables]
        else:
            missed.append(f"capability {scope.capability}")
    in_sql = (scope.team is None or _uses(sql, "team") or _uses(sql, "teams")) and (
        scope.org_unit is None or _uses(sql, "org_unit")
    )
    if scope.teams is not None and not in_sql:
        if all("team" in t.columns for t in tables):
            tables = [_keep(t, "team", scope.teams) for t in tables]
        else:
            missed.append("team" if scope.team else "org unit")
    return tables, missed


def _keep(table: Table, column: str, values: Iterable[str]) -> Table:
    index, wanted = table.columns.index(column), set(values)
    return Table(table.columns, tuple(r for r in table.rows if r[index] in wanted))


def settings_values(settings: object) -> dict[str, object]:
    """Every setting's environment name and value in force (for descriptions)."""
    found: dict[str, object] = {}
    if not is_dataclass(settings):
        return found
    for item in fields(settings):
        value = getattr(settings, item.name)
        if "env" in item.metadata:
            found[item.metadata["env"].name] = value
        elif is_dataclass(value):
            found.update(settings_values(value))
    return found


def build_sections(
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    *,
    scope: Scope | None = None,
    settings: Mapping[str, object] | None = None,
    csv_href: str | None = None,
) -> tuple[list[Section], list[str]]:
    """The report's sections, and the panels that had no data (named, not hidden).

    Stat panels (the headline figures) are also computed for the previous period of the same
    length, ending where this one starts. `csv_href`: the folder the page links CSVs in.
    """
    scope = scope or Scope()
    time_range = grafana_sql.TimeRange(start, end)
    previous_range = grafana_sql.TimeRange(start - (end - start), start)
    sections, empty = [], []
    taken: set[str] = set()
    for build in report_dashboards():
        dashboard = build().to_json()
        variables = _defaults(dashboard)
        if scope.capability is not None and "capability" in variables:
            variables["capability"] = grafana_sql.Variable("capability", scope.capability)
        chosen = (("team", scope.team), ("teams", scope.team), ("org_unit", scope.org_unit))
        for name, value in chosen:
            if value is not None and name in variables:
                variables[name] = grafana_sql.Variable(name, value)
        blocks: list[str] = []
        exports: list[Export] = []
        for panel in _panels(dashboard):
            if panel["type"] == "row":
                blocks.append(f"<h3>{html.escape(panel['title'])}</h3>")
                continue
            targets = [
                t for t in panel.get("targets", []) if t["datasource"]["uid"] == CLICKHOUSE_UID
            ]
            if not targets:
                continue
            sql = " ".join(t["rawSql"] for t in targets)
            tables = [_run(warehouse, panel, t, time_range, variables) for t in targets]
            tables, missed = _narrow(tables, sql, scope)
            name = f"{_slug(dashboard['title'].split('—')[-1])}--{_slug(panel['title'])}"
            while name in taken:
                name += "-2"
            taken.add(name)
            description = plain_description(panel.get("description", ""), settings or {})
            if missed:
                description += (
                    f" Not narrowed to {' or '.join(missed)}: the panel has no such breakdown."
                )
            try:
                body, header, rows = _render(panel, tables)
                if panel["type"] == "stat":
                    before, _ = _narrow(
                        [_run(warehouse, panel, t, previous_range, variables) for t in targets],
                        sql,
                        scope,
                    )
                    try:
                        previous: float | None = _stat_value(before[0])
                    except ShapeError:
                        previous = None
                    value = rows[0][0]
                    body += _change(value, previous, _unit(panel), _decimals(panel))
                    delta = None if previous is None else value - previous
                    header = (*header, "Previous period", "Change")
                    rows = [(value, previous, delta)]
                exports.append(Export(f"{name}.csv", header, tuple(tuple(r) for r in rows)))
                href = f"{csv_href}/{name}.csv" if csv_href is not None else ""
            except ShapeError as exc:
                empty.append(f"{dashboard['title']} / {panel['title']}: {exc}")
                body, href = '<p class="nodata">No data in this period.</p>', ""
            blocks.append(_panel_block(panel, body, description, href))
        sections.append(
            Section(dashboard["title"], dashboard["description"], tuple(blocks), tuple(exports))
        )
    return sections, empty


def build_report(
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    title: str,
    *,
    filters: Filters | None = None,
    settings: Mapping[str, object] | None = None,
    csv_href: str | None = None,
) -> tuple[str, list[Export]]:
    """The page, and every panel's data for CSV files (raises FilterError for unknown names)."""
    scope = resolve(warehouse, filters or Filters())
    sections, _ = build_sections(
        warehouse, start, end, scope=scope, settings=settings, csv_href=csv_href
    )
    text = page(
        title=title,
        start=start,
        end=end,
        generated=datetime.now(UTC),
        source=f"{warehouse.kind} warehouse, database {warehouse.database}",
        sections=[(s.title, s.description, s.blocks) for s in sections],
        scope=scope.caption,
    )
    return text, [e for s in sections for e in s.exports]


def write_report(
    warehouse_url: str,
    start: datetime,
    end: datetime,
    output: Path,
    csv_dir: Path | None,
    *,
    title: str,
    filters: Filters | None = None,
    settings: Mapping[str, object] | None = None,
) -> list[Path]:
    """Build the report for [start, end] into `output` (and a CSV per panel into `csv_dir`)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    href = None
    if csv_dir is not None:
        csv_dir.mkdir(parents=True, exist_ok=True)
        href = Path(os.path.relpath(csv_dir.resolve(), output.parent.resolve())).as_posix()
    with opened(warehouse_url) as warehouse:
        text, exports = build_report(
            warehouse, start, end, title, filters=filters, settings=settings, csv_href=href
        )
    output.write_text(text, encoding="utf-8")
    written = [output]
    if csv_dir is not None:
        written += [export.write(csv_dir) for export in exports]
    return written
