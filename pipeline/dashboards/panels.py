"""Panel factories with Uptake's defaults: one function per kind of chart the dashboards use.

Every factory takes the title, a description (shown as the panel's (i) tooltip: what the number
means and where it comes from) and its target(s), and returns the SDK builder for `Board.add`.
The shape each kind of panel needs from its query is written down here and checked by
tests/integration/dashboards: a time series wants a time column first (ascending) and numbers;
a table or a bar chart wants columns; a stat wants a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from grafana_foundation_sdk.builders import barchart as sdk_barchart
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import heatmap as sdk_heatmap
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import text as sdk_text
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models import text as text_model

from pipeline.dashboards import fields
from pipeline.dashboards.board import CLICKHOUSE, PROMETHEUS, ClickHouseQuery, ClickHouseTarget

Target = cogbuilder.Builder[cogvariants.Dataquery]
Named = (
    sdk_table.Panel | sdk_barchart.Panel | sdk_timeseries.Panel | sdk_heatmap.Panel | sdk_stat.Panel
)


def _columns(targets: Sequence[Target]) -> list[str]:
    found: list[str] = []
    for target in targets:
        query = target.build()
        if isinstance(query, ClickHouseQuery):
            found += [c for c in fields.columns(query.sql) if c not in found]
    return found


def _value(key: str, value: object) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val=key, value=value)


def _name_columns(
    panel: Named,
    targets: Sequence[Target],
    skip_units: Sequence[str],
    transformations: Sequence[model.DataTransformerConfig],
) -> None:
    """Tables and bar charts: a display name, a unit and the team link per column. After a
    `groupingToMatrix` the fields are its row header (`row\\column`, named after the row
    field) and one field per value of the column field (named by the data)."""
    for matrix in transformations:
        if matrix.id_val == "groupingToMatrix":
            options = cast(dict[str, object], matrix.options)
            row, column = str(options["rowField"]), str(options["columnField"])
            properties = [_value("displayName", fields.display_name(row))]
            if fields.link(row):
                properties.append(_value("links", fields.link(row, matrix=True)))
            panel.override_by_name(f"{row}\\{column}", properties)
            return
    for column in _columns(targets):
        properties = [_value("displayName", fields.display_name(column))]
        column_unit = fields.unit(column)
        if column_unit and column not in skip_units:
            properties.append(_value("unit", column_unit))
        if fields.link(column):
            properties.append(_value("links", fields.link(column)))
        panel.override_by_name(column, properties)


def _name_series(panel: Named, targets: Sequence[Target]) -> None:
    """Time series and heatmaps: series named by their label columns, or each value column."""
    names = [c for c in _columns(targets) if c != "time"]
    labels = [c for c in names if c in fields.LABELS]
    values = [c for c in names if c not in fields.LABELS]
    if not labels:
        for column in values:
            properties = [_value("displayName", fields.display_name(column))]
            column_unit = fields.unit(column)
            if column_unit:
                properties.append(_value("unit", column_unit))
            panel.override_by_name(column, properties)
        return
    by_labels = " ".join(f"${{__field.labels.{label}}}" for label in labels)
    for column in values:
        prefix = f"{fields.display_name(column)}: " if len(values) > 1 else ""
        properties = [_value("displayName", prefix + by_labels)]
        if "team" in labels:
            properties.append(_value("links", fields.link("team", label=True)))
        panel.override_by_name(column, properties)


def _datasource(targets: Sequence[Target]) -> model.DataSourceRef:
    return CLICKHOUSE if all(isinstance(t, ClickHouseTarget) for t in targets) else PROMETHEUS


def _thresholds(*steps: tuple[float | None, str]) -> sdk.ThresholdsConfig:
    return (
        sdk.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _legend(calcs: Sequence[str] = ()) -> sdk_common.VizLegendOptions:
    return (
        sdk_common.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.TABLE if calcs else common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .calcs(list(calcs))
    )


def _tooltip() -> sdk_common.VizTooltipOptions:
    return (
        sdk_common.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )


def timeseries(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    bars: bool = False,
    stack: bool = False,
    min_value: float | None = 0,
    max_value: float | None = None,
    decimals: int | None = None,
    min_interval: str | None = None,
    legend_calcs: Sequence[str] = (),
) -> sdk_timeseries.Panel:
    """Lines (or bars) over time; `min_interval` is Grafana's minimum `$__interval`."""
    panel = (
        sdk_timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(targets))
        .targets(list(targets))
        .unit(unit)
        .legend(_legend(legend_calcs))
        .tooltip(_tooltip())
        .line_width(2 if not bars else 1)
        .fill_opacity(80 if bars else 10)
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .show_points(common.VisibilityMode.AUTO)
        .span_nulls(False)
    )
    if stack:
        panel.stacking(sdk_common.StackingConfig().mode(common.StackingMode.NORMAL))
    if min_value is not None:
        panel.min(min_value)
    if max_value is not None:
        panel.max(max_value)
    if decimals is not None:
        panel.decimals(decimals)
    if min_interval:
        panel.interval(min_interval)
    _name_series(panel, targets)
    return panel


def stat(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    decimals: int | None = None,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "blue"),),
    reducer: str = "lastNotNull",
    no_value: str = "0",
) -> sdk_stat.Panel:
    """One big number (the last value of the query's numeric column)."""
    panel = (
        sdk_stat.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(targets))
        .targets(list(targets))
        .unit(unit)
        .no_value(no_value)
        .thresholds(_thresholds(*thresholds))
        .color_mode(common.BigValueColorMode.BACKGROUND_SOLID)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.CENTER)
        .text_mode(common.BigValueTextMode.VALUE)
        .reduce_options(
            sdk_common.ReduceDataOptions().calcs([reducer]).values(False).fields("/.*/")
        )
    )
    if decimals is not None:
        panel.decimals(decimals)
    panel.display_name(title)
    return panel


def table(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    unit: str | None = None,
    decimals: int | None = None,
    heat: bool = False,
    transformations: Sequence[model.DataTransformerConfig] = (),
    sort_by: str | None = None,
    descending: bool = True,
    column_units: dict[str, str] | None = None,
) -> sdk_table.Panel:
    """Rows and columns; `heat` colours numeric cells on a continuous scale (a heatmap table)."""
    panel = (
        sdk_table.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(targets))
        .targets(list(targets))
        .filterable(False)
        .cell_height(common.TableCellHeight.SM)
    )
    for transformation in transformations:
        panel.with_transformation(transformation)
    panel.unit(unit or "short")  # numbers; time columns get a date unit (fields.unit)
    if decimals is not None:
        panel.decimals(decimals)
    _name_columns(panel, targets, list(column_units or {}), transformations)
    if heat:
        panel.color_scheme(sdk.FieldColor().mode(model.FieldColorModeId.CONTINUOUS_GREENS))
        panel.cell_options(
            common.TableColoredBackgroundCellOptions(
                mode=common.TableCellBackgroundDisplayMode.BASIC
            )
        )
    for column, column_unit in (column_units or {}).items():
        panel.override_by_name(column, [model.DynamicConfigValue(id_val="unit", value=column_unit)])
    if sort_by:
        panel.sort_by([sdk_common.TableSortByFieldState().display_name(sort_by).desc(descending)])
    return panel


def barchart(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    x_field: str,
    unit: str = "short",
    horizontal: bool = False,
    stack: bool = False,
    decimals: int | None = None,
    transformations: Sequence[model.DataTransformerConfig] = (),
) -> sdk_barchart.Panel:
    """Bars per category (`x_field`, a string column), one bar per numeric column."""
    panel = (
        sdk_barchart.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(targets))
        .targets(list(targets))
        .x_field(x_field)
        .unit(unit)
        .min(0)
        .orientation(common.VizOrientation.HORIZONTAL if horizontal else common.VizOrientation.AUTO)
        .stacking(common.StackingMode.NORMAL if stack else common.StackingMode.NONE)
        .show_value(common.VisibilityMode.AUTO)
        .legend(_legend())
        .tooltip(_tooltip())
        .fill_opacity(80)
    )
    for transformation in transformations:
        panel.with_transformation(transformation)
    if decimals is not None:
        panel.decimals(decimals)
    _name_columns(panel, targets, (), transformations)
    if "team" in _columns(targets):  # a bar of a team: the whole row's team
        panel.override_by_field_type("number", [_value("links", fields.link("team"))])
    return panel


def heatmap(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    min_interval: str | None = None,
) -> sdk_heatmap.Panel:
    """Cells over time: each numeric series of the (time-series) query is one row of cells."""
    panel = (
        sdk_heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(targets))
        .targets(list(targets))
        .calculate(False)
        .color(
            sdk_heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Greens")
            .fill("dark-green")
            .scale(heatmap_model.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .reverse(False)
        )
        .cell_gap(1)
        .show_value(common.VisibilityMode.AUTO)
        .y_axis(sdk_heatmap.YAxisConfig().unit("short").reverse(False))
        .show_legend()
        .mode(common.TooltipDisplayMode.SINGLE)
        .unit(unit)
    )
    if min_interval:
        panel.interval(min_interval)
    _name_series(panel, targets)
    return panel


def text(title: str, markdown: str) -> sdk_text.Panel:
    """A note in Markdown (how to read the dashboard)."""
    return (
        sdk_text.Panel().title(title).mode(text_model.TextMode.MARKDOWN).content(markdown.strip())
    )


def transformation(kind: str, **options: object) -> model.DataTransformerConfig:
    """A Grafana transformation (`groupingToMatrix`, `organize`, …) with its options."""
    return model.DataTransformerConfig(id_val=kind, options=dict(options))
