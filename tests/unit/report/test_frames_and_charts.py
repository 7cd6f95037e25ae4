"""The report's shaping (as Grafana shapes results), number formats and SVG charts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from pipeline.report import svg
from pipeline.report.frames import ShapeError, Table, grouping_to_matrix, long_to_wide
from pipeline.report.units import format_value

D1, D2 = date(2025, 1, 6), date(2025, 1, 13)


def test_long_to_wide_makes_a_series_per_label_and_fills_gaps_with_none() -> None:
    table = Table(
        ("time", "capability", "teams"),
        ((D1, "a", 1), (D1, "b", 2), (D2, "a", 3)),
    )
    wide = long_to_wide(table)
    assert wide.times == (datetime(2025, 1, 6), datetime(2025, 1, 13))
    assert {s.name: s.values for s in wide.series} == {"a": (1.0, 3.0), "b": (2.0, None)}


def test_long_to_wide_refuses_what_the_plugin_cannot_convert() -> None:
    with pytest.raises(ShapeError, match="sorted"):
        long_to_wide(Table(("time", "v"), ((D2, 1), (D1, 2))))
    with pytest.raises(ShapeError, match="time"):
        long_to_wide(Table(("team", "v"), (("a", 1),)))
    with pytest.raises(ShapeError, match="numeric"):
        long_to_wide(Table(("time", "team"), ((D1, "a"),)))
    with pytest.raises(ShapeError, match="no rows"):
        long_to_wide(Table(("time", "v"), ()))


def test_grouping_to_matrix_pivots_rows_and_columns_in_order_of_appearance() -> None:
    table = Table(("team", "cap", "n"), (("x", "a", 1), ("x", "b", 2), ("y", "b", 3)))
    matrix = grouping_to_matrix(table, "team", "cap", "n")
    assert matrix.columns == ("team\\cap", "a", "b")
    assert matrix.rows == (("x", 1, 2), ("y", None, 3))


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.1234, "percentunit", "12.3%"),
        (5400, "s", "1.5 hours"),
        (2.5, "d", "2.5 days"),
        (12_345, "short", "12,345"),
        (3_000, "short", "3,000"),
        (999_999, "short", "999,999"),
        (1_250.5, "short", "1,250.5"),
        (2_500_000, "short", "2.5 M"),
        (7, "short", "7"),
        (None, "short", "-"),
    ],
)
def test_values_are_formatted_like_grafana_units(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_a_time_series_chart_draws_a_titled_point_per_value_and_escapes_names() -> None:
    wide = long_to_wide(
        Table(("time", "team", "v"), ((D1, "<b>&", 1), (D2, "<b>&", 2), (D2, "c", 4)))
    )
    chart = svg.time_series(wide, "short")
    assert chart.count('class="point"') == 3 and chart.count("<title>") == 3
    assert "<b>&" not in chart and "&lt;b&gt;&amp;" in chart
    bars = svg.time_series(wide, "short", bars=True, stacked=True)
    assert bars.count("<rect") == 3


def test_bar_and_heat_charts_skip_missing_values() -> None:
    chart = svg.bar_chart(["a", "b"], [svg.Series("n", (1.0, None))], "short")
    assert chart.count('class="point"') == 1
    grid = svg.heat_grid(["w1", "w2"], ["x"], [[None, 2.0]], "short")
    assert grid.count('class="point"') == 1 and 'data-value="2"' in grid


def test_aware_times_stay_aware() -> None:
    wide = long_to_wide(Table(("t", "v"), ((datetime(2025, 1, 1, tzinfo=UTC), 1),)))
    assert wide.times[0].tzinfo is UTC
