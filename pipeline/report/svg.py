"""Charts as inline SVG: no script, no font or stylesheet to fetch, readable offline and printed.

Every data point is an element with a `data-value` attribute and a `<title>` (the browser's
tooltip), so a reader can hover for the exact figure and a test can count what was drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from pipeline.report.frames import Series, Wide
from pipeline.report.units import format_value

PALETTE = (
    "#3274d9",
    "#56a64b",
    "#e0b400",
    "#c4162a",
    "#8f3bb8",
    "#fa6400",
    "#37872d",
    "#1f60c4",
    "#a16d00",
    "#e02f44",
    "#6e3ba8",
    "#0a8a8a",
)
WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 40


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop ends at 10


def _ticks(top: float, count: int = 4) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def _time_label(at: datetime, span_days: float) -> str:
    return at.strftime("%b %d") if span_days >= 2 else at.strftime("%H:%M")


def _legend(names: Sequence[str], title: str = "") -> str:
    """The colour keys; `title` is what every name shares (a metric and its unit), said once."""
    head = f"<strong>{escape(title)}:</strong> " if title else ""
    items = head + "".join(
        f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>'
        f"{escape(name)}</span>"
        for i, name in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def time_series(
    frame: Wide, unit: str, *, bars: bool = False, stacked: bool = False, legend_title: str = ""
) -> str:
    """A line (or bar) chart of `frame`: one colour per series, a point per value."""
    times = frame.times
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [0.0] * len(times)  # negative values are drawn at 0: the charts show counts
    for series in frame.series:
        for i, value in enumerate(series.values):
            if value is not None:
                totals[i] = totals[i] + value if stacked else max(totals[i], value)
    y_max = _nice_max(max(totals, default=0.0))
    x0, x1 = times[0].timestamp(), times[-1].timestamp()
    span = max(x1 - x0, 1.0)
    slot = plot_w / max(len(times), 1)

    def x_of(at: datetime) -> float:
        if bars or len(times) == 1:
            return LEFT + slot * (times.index(at) + 0.5)
        return LEFT + (at.timestamp() - x0) / span * plot_w

    def y_of(value: float) -> float:
        return TOP + plot_h - value / y_max * plot_h

    parts = [_axes(y_max, unit)]
    span_days = span / 86_400
    label_every = max(1, math.ceil(len(times) / 8))
    for i, at in enumerate(times):
        if i % label_every == 0:
            parts.append(
                f'<text class="tick" x="{x_of(at):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(_time_label(at, span_days))}</text>'
            )
    base = [0.0] * len(times)
    bar_w = max(1.0, slot * 0.8 / (1 if stacked else max(len(frame.series), 1)))
    for s_index, series in enumerate(frame.series):
        colour = PALETTE[s_index % len(PALETTE)]
        points: list[tuple[float, float]] = []
        marks = []
        for i, (at, value) in enumerate(zip(times, series.values, strict=True)):
            if value is None:
                if not bars and len(points) > 1:
                    marks.append(_polyline(points, colour))
                points = []
                continue
            low = base[i] if stacked else 0.0
            high = low + max(value, 0.0)
            if stacked:
                base[i] = high
            tip = escape(f"{series.name} {at:%Y-%m-%d %H:%M}: {format_value(value, unit)}")
            if bars:
                offset = 0 if stacked else s_index * bar_w
                x = x_of(at) - slot * 0.4 + offset
                marks.append(
                    f'<rect class="point" data-value="{value:.12g}" x="{x:.1f}" '
                    f'y="{y_of(high):.1f}" width="{bar_w:.1f}" '
                    f'height="{max(y_of(low) - y_of(high), 0.5):.1f}" fill="{colour}">'
                    f"<title>{tip}</title></rect>"
                )
            else:
                x, y = x_of(at), y_of(high)
                points.append((x, y))
                marks.append(
                    f'<circle class="point" data-value="{value:.12g}" cx="{x:.1f}" cy="{y:.1f}" '
                    f'r="2.5" fill="{colour}"><title>{tip}</title></circle>'
                )
        if not bars and len(points) > 1:
            marks.append(_polyline(points, colour))
        parts.append(f'<g class="series" data-name="{escape(series.name)}">{"".join(marks)}</g>')
    return _svg("".join(parts)) + _legend([s.name for s in frame.series], legend_title)


def _polyline(points: Sequence[tuple[float, float]], colour: str) -> str:
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{text}" fill="none" stroke="{colour}" stroke-width="2"/>'


def _axes(y_max: float, unit: str) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for tick in _ticks(y_max):
        y = TOP + plot_h - tick / y_max * plot_h
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(format_value(tick, unit))}</text>"
        )
    return "".join(parts)


def _svg(body: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" preserveAspectRatio="xMidYMid meet">{body}</svg>'
    )


def _row_label(label_w: int, y: str, text: str) -> str:
    """A row's name, right-aligned against the plot that starts at `label_w`."""
    return f'<text class="tick" x="{label_w - 6}" y="{y}" text-anchor="end">{escape(text)}</text>'


def bar_chart(categories: Sequence[str], series: Sequence[Series], unit: str) -> str:
    """Horizontal bars: a group per category, a bar per series."""
    row_h = 22 if len(series) == 1 else 12 * len(series) + 8
    height = TOP + BOTTOM + row_h * max(len(categories), 1)
    label_w = 150
    plot_w = WIDTH - label_w - RIGHT - 60
    values = [v for s in series for v in s.values if v is not None]
    x_max = _nice_max(max([*values, 0.0]))
    parts = []
    for c_index, category in enumerate(categories):
        y = TOP + c_index * row_h
        parts.append(_row_label(label_w, f"{y + row_h / 2 + 4:.1f}", category))
        bar_h = (row_h - 6) / max(len(series), 1)
        for s_index, line in enumerate(series):
            value = line.values[c_index]
            if value is None:
                continue
            colour = PALETTE[s_index % len(PALETTE)]
            w = max(value / x_max * plot_w, 0.5)
            bar_y = y + 3 + s_index * bar_h
            text = escape(format_value(value, unit))
            parts.append(
                f'<rect class="point" data-value="{value:.12g}" x="{label_w}" y="{bar_y:.1f}" '
                f'width="{w:.1f}" height="{bar_h:.1f}" fill="{colour}">'
                f"<title>{escape(line.name)} · {escape(category)}: {text}</title></rect>"
                f'<text class="value" x="{label_w + w + 4:.1f}" y="{bar_y + bar_h - 2:.1f}">'
                f"{text}</text>"
            )
    body = "".join(parts)
    legend = _legend([s.name for s in series]) if len(series) > 1 else ""
    return _svg(body, WIDTH, int(height)) + legend


def heat_grid(
    columns: Sequence[str], rows: Sequence[str], cells: Sequence[Sequence[float | None]], unit: str
) -> str:
    """A heatmap: a cell per (row, column), darker for larger values; empty cells stay blank."""
    label_w, cell_h = 150, 18
    plot_w = WIDTH - label_w - RIGHT
    cell_w = plot_w / max(len(columns), 1)
    height = TOP + BOTTOM + cell_h * len(rows)
    values = [v for line in cells for v in line if v is not None]
    top = max([*values, 0.0]) or 1.0
    parts = []
    for r_index, name in enumerate(rows):
        y = TOP + r_index * cell_h
        parts.append(_row_label(label_w, str(y + cell_h - 5), name))
        for c_index, value in enumerate(cells[r_index]):
            if value is None:
                continue
            x = label_w + c_index * cell_w
            shade = 0.12 + 0.88 * math.sqrt(max(value, 0.0) / top)
            tip = escape(f"{name} · {columns[c_index]}: {format_value(value, unit)}")
            parts.append(
                f'<rect class="point" data-value="{value:.12g}" x="{x:.1f}" y="{y}" '
                f'width="{max(cell_w - 1, 0.5):.1f}" height="{cell_h - 1}" '
                f'fill="#37872d" fill-opacity="{shade:.2f}"><title>{tip}</title></rect>'
            )
    label_every = max(1, math.ceil(len(columns) / 8))
    for c_index, column in enumerate(columns):
        if c_index % label_every == 0:
            x = label_w + (c_index + 0.5) * cell_w
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{height - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(column)}</text>'
            )
    return _svg("".join(parts), WIDTH, int(height))
