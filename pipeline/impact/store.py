"""The warehouse side of `uptake impact`: read the weekly panel, write impact_estimates.

The panel comes from dora_metrics (weekly rows), adoption_first_use and the target teams as
they were each week (capability_targets_daily, on the week's last day with data; today's
catalog list for weeks it does not cover), so the estimates use the same definitions of the
DORA keys, of "use" and of the denominator as every view.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from pipeline.impact.estimate import Estimate, Panel
from pipeline.warehouse.connection import Warehouse

PANEL_SQL = """
SELECT team, period_start, deployments, lead_time_median_s, change_failure_rate,
       recovery_time_median_s
FROM dora_metrics
WHERE period = 'week' AND team != ''
ORDER BY team, period_start
"""

FIRST_USE_SQL = "SELECT team, capability, first_used_at FROM adoption_first_use"

# Declared capabilities with their target teams (empty: every team of the panel).
TARGETS_SQL = """
SELECT name, target_teams FROM capability_catalog FINAL WHERE declared = 1 ORDER BY name
"""

# The target teams of each week: those of its last day that capability_targets_daily covers
# (the same rule as adoption_weekly's denominator).
WEEKLY_TARGETS_SQL = """
SELECT capability, toMonday(day) AS week, argMax(target_teams, day) AS teams
FROM capability_targets_daily
GROUP BY capability, week
"""

COLUMNS = [
    "capability",
    "metric",
    "method",
    "scale",
    "estimate",
    "ci_low",
    "ci_high",
    "treated_teams",
    "control_teams",
    "pretrend_p",
    "status",
    "note",
    "weeks",
    "computed_at",
]


def read_panel(warehouse: Warehouse) -> Panel:
    """The weekly team panel of the whole warehouse."""
    rows = [
        (str(team), _day(week), int(n), _num(lead), _num(cfr), _num(recovery))
        for team, week, n, lead, cfr, recovery in warehouse.rows(PANEL_SQL)
    ]
    first_use = {
        (str(team), str(capability)): _day(at)
        for team, capability, at in warehouse.rows(FIRST_USE_SQL)
    }
    targets = {str(name): [str(t) for t in teams] for name, teams in warehouse.rows(TARGETS_SQL)}
    weekly = {
        (str(capability), _day(week)): frozenset(str(t) for t in teams)
        for capability, week, teams in warehouse.rows(WEEKLY_TARGETS_SQL)
    }
    return Panel(rows, first_use, targets, weekly)


def declared_capabilities(warehouse: Warehouse) -> list[str]:
    return [str(name) for name, _ in warehouse.rows(TARGETS_SQL)]


def write(warehouse: Warehouse, estimates: Sequence[Estimate], computed_at: datetime) -> int:
    """Insert one run's estimates (all with the same computed_at)."""
    rows = [
        [
            e.capability,
            e.metric,
            e.method,
            e.scale,
            _finite(e.estimate),
            _finite(e.ci_low),
            _finite(e.ci_high),
            e.treated_teams,
            e.control_teams,
            _finite(e.pretrend_p),
            e.status,
            e.note,
            e.weeks,
            computed_at,
        ]
        for e in estimates
    ]
    if not rows:
        return 0
    columns = [list(column) for column in zip(*rows, strict=True)]
    return warehouse.insert_columns("impact_estimates", columns, COLUMNS)


def _day(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    assert isinstance(value, date)
    return value


def _num(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _finite(value: float | None) -> float | None:
    return value if value is not None and value == value and abs(value) != float("inf") else None
