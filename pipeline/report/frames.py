"""Query results shaped as Grafana shapes them before a panel draws them.

- `long_to_wide`: what the ClickHouse plugin does with a time-series query (format 0): rows of
  (time, label columns…, value columns…) become one series per value column and combination of
  label values, on the sorted, distinct times (missing points are None, as the plugin fills
  them with null).
- `grouping_to_matrix`: Grafana's "Grouping to matrix" transformation (rows, columns, values).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any


class ShapeError(ValueError):
    """A query result does not have the shape its panel needs."""


@dataclass(frozen=True)
class Table:
    """A query result: column names and rows."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@dataclass(frozen=True)
class Series:
    """One line of a time-series panel: its name and a value (or None) per time."""

    name: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Wide:
    """A time-series frame: sorted distinct times and the series over them."""

    times: tuple[datetime, ...]
    series: tuple[Series, ...]


def is_time(value: object) -> bool:
    return isinstance(value, datetime | date)


def is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, int | float) and math.isfinite(float(value))


def as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, time())


def _numeric_columns(table: Table, skip: Sequence[int]) -> list[int]:
    numeric = []
    for index in range(len(table.columns)):
        if index in skip:
            continue
        values = [row[index] for row in table.rows if row[index] is not None]
        if values and all(is_number(v) for v in values):
            numeric.append(index)
    return numeric


def long_to_wide(table: Table) -> Wide:
    """The plugin's long-to-wide conversion of a time-series query result.

    The first time column is the time; string columns are labels; numeric columns are values.
    Raises ShapeError for what Grafana would refuse or draw empty: no rows, no time column, no
    numeric column, or times that are not sorted ascending (the conversion requires it).
    """
    if not table.rows:
        raise ShapeError("no rows")
    time_index = next(
        (i for i in range(len(table.columns)) if all(is_time(r[i]) for r in table.rows)), None
    )
    if time_index is None:
        raise ShapeError(f"no time column among {table.columns}")
    times = [as_datetime(row[time_index]) for row in table.rows]
    if any(later < earlier for earlier, later in itertools.pairwise(times)):
        raise ShapeError("rows are not sorted by time ascending (ORDER BY the time column)")
    values = _numeric_columns(table, [time_index])
    if not values:
        raise ShapeError(f"no numeric column among {table.columns}")
    labels = [
        i
        for i in range(len(table.columns))
        if i != time_index
        and i not in values
        and all(isinstance(row[i], str) for row in table.rows)
    ]
    distinct_times = sorted(set(times))
    position = {t: i for i, t in enumerate(distinct_times)}
    series: dict[tuple[int, tuple[str, ...]], list[float | None]] = {}
    for row, at in zip(table.rows, times, strict=True):
        key_labels = tuple(str(row[i]) for i in labels)
        for value_index in values:
            line = series.setdefault((value_index, key_labels), [None] * len(distinct_times))
            value = row[value_index]
            line[position[at]] = None if value is None else float(value)
    named = []
    for (value_index, key_labels), line in series.items():
        label_text = ", ".join(key_labels)
        column = table.columns[value_index]
        if label_text:
            name = label_text if len(values) == 1 else f"{column} {label_text}"
        else:
            name = column
        named.append(Series(name, tuple(line)))
    return Wide(tuple(distinct_times), tuple(named))


def grouping_to_matrix(table: Table, row_field: str, column_field: str, value_field: str) -> Table:
    """Grafana's "Grouping to matrix": one row per `row_field`, one column per `column_field`."""
    for name in (row_field, column_field, value_field):
        if name not in table.columns:
            raise ShapeError(f"grouping to matrix needs column {name!r}, got {table.columns}")
    rows: list[str] = []
    columns: list[str] = []
    cells: dict[tuple[str, str], Any] = {}
    for row_key, column_key, value in zip(
        table.column(row_field),
        table.column(column_field),
        table.column(value_field),
        strict=True,
    ):
        row_text, column_text = str(row_key), str(column_key)
        if row_text not in rows:
            rows.append(row_text)
        if column_text not in columns:
            columns.append(column_text)
        cells[row_text, column_text] = value
    header = (f"{row_field}\\{column_field}", *columns)
    return Table(
        header,
        tuple((r, *(cells.get((r, c)) for c in columns)) for r in rows),
    )
