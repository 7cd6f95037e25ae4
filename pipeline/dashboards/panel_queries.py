"""Every ClickHouse query of a dashboard, expanded as Grafana would send it with its defaults.

Pure (the warehouse is a callback). Shared by the panel tests (tests/integration/dashboards),
which check each result's shape, and `uptake bench --queries`, which times each query:
1. the dashboard's ClickHouse variables are expanded and run in order (`options_of`); each
   takes Grafana's default: All where offered, else its saved value or the first option;
2. every ClickHouse target of every panel (rows' panels included) is expanded over the
   dashboard's default time range with the interval Grafana computes for a 1000 px panel;
   a target with `$__conditionalAll` over an All variable also gives a variant with the
   variable's first option chosen (the other branch of the macro).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipeline.dashboards import grafana_sql
from pipeline.dashboards.board import CLICKHOUSE_UID

WIDTH_PX = 1000
"""Grafana's resolution for $__interval: the panel's width in pixels."""


def panels_of(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def has_clickhouse_targets(dashboard: dict[str, Any]) -> bool:
    return any(
        t["datasource"]["uid"] == CLICKHOUSE_UID
        for panel in panels_of(dashboard)
        for t in panel.get("targets", [])
    )


def time_range_of(dashboard: dict[str, Any], now: datetime) -> grafana_sql.TimeRange:
    """The dashboard's default time range (`now-<n><d|h|w>` to `now`), ending at `now`."""
    match = re.fullmatch(r"now-(\d+)([dhw])", dashboard["time"]["from"])
    if not match or dashboard["time"]["to"] != "now":
        raise ValueError(f"unsupported default time range: {dashboard['time']}")
    unit = {"d": timedelta(days=1), "h": timedelta(hours=1), "w": timedelta(weeks=1)}[match[2]]
    return grafana_sql.TimeRange(now - int(match[1]) * unit, now)


def clickhouse_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        v
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("datasource", {}).get("uid") == CLICKHOUSE_UID
    ]


def default_value(variable: dict[str, Any], options: list[str]) -> grafana_sql.Variable:
    """The value Grafana starts with: All if offered, else the saved one if listed, else first."""
    name = variable["name"]
    if variable.get("includeAll"):
        return grafana_sql.Variable(name, grafana_sql.ALL, tuple(options), variable.get("allValue"))
    saved = (variable.get("current") or {}).get("value")
    value = saved if isinstance(saved, str) and saved in options else options[0]
    return grafana_sql.Variable(name, (value,) if variable.get("multi") else value, tuple(options))


def single(variable: grafana_sql.Variable) -> grafana_sql.Variable:
    """The same variable with only its first option chosen."""
    return grafana_sql.Variable(variable.name, (variable.options[0],), variable.options)


def default_variables(
    dashboard: dict[str, Any],
    time_range: grafana_sql.TimeRange,
    options_of: Callable[[str], list[str] | str],
) -> tuple[dict[str, grafana_sql.Variable], list[str]]:
    """Each ClickHouse variable at its default, and the problems of those that listed nothing.

    `options_of(sql)` runs a variable's expanded query: its first column, or an error message.
    """
    variables: dict[str, grafana_sql.Variable] = {}
    problems = []
    for variable in clickhouse_variables(dashboard):
        sql = grafana_sql.expand(
            variable["query"],
            time_range=time_range,
            interval=timedelta(days=1),
            variables=variables,
        )
        options = options_of(sql)
        if isinstance(options, str) or not options:
            problems.append(f"variable {variable['name']}: {options or 'no options'}")
            continue
        variables[variable["name"]] = default_value(variable, options)
    return variables, problems


@dataclass(frozen=True)
class PanelQuery:
    """One query a dashboard sends: its panel, target and variant, and the expanded SQL."""

    dashboard: str
    panel: dict[str, Any]
    ref_id: str
    variant: str
    sql: str

    @property
    def key(self) -> str:
        panel = f"{self.panel['id']}:{self.panel['title']}"
        return f"{self.dashboard}/{panel}/{self.ref_id}/{self.variant}"


def panel_queries(
    name: str,
    dashboard: dict[str, Any],
    time_range: grafana_sql.TimeRange,
    variables: dict[str, grafana_sql.Variable],
) -> list[PanelQuery]:
    """Every ClickHouse target of every panel, expanded (see the module docstring)."""
    found = []
    for panel in panels_of(dashboard):
        interval = grafana_sql.grafana_interval(
            time_range, int(panel.get("maxDataPoints") or WIDTH_PX), panel.get("interval")
        )
        for target in panel.get("targets", []):
            if target["datasource"]["uid"] != CLICKHOUSE_UID:
                continue
            sql = target["rawSql"]
            variants = {"default": variables}
            for var in variables.values():
                if "$__conditionalAll(" in sql and f"${var.name}" in sql and var.is_all:
                    variants[f"{var.name}={var.options[0]}"] = {**variables, var.name: single(var)}
            for variant, values in variants.items():
                expanded = grafana_sql.expand(
                    sql, time_range=time_range, interval=interval, variables=values
                )
                found.append(PanelQuery(name, panel, target["refId"], variant, expanded))
    return found
