"""Display names, units and team links for the fields of a ClickHouse panel, from its SQL.

A field is an output column of the outermost SELECT of a target (its alias, or the column
itself). Tables and bar charts name each column with an override; a time series whose query
has label columns (strings that become series labels, `LABELS`) names its series by them;
a stat names its value after the panel. Columns ending `_at` and dates get a date unit;
`_s` / `_h` columns seconds / hours; `team` links to the team drill-down.
"""

from __future__ import annotations

import re

from pipeline.dashboards.navigation import team_link

LABELS = frozenset({"capability", "series", "kind", "team", "status", "cohort", "metric"})
"""String columns of time-series queries: the plugin turns them into series labels."""

DATES = frozenset({"first_use", "last_active", "day", "month", "adopted_at"})
WORDS = {
    "n": "",
    "28d": "(28 days)",
    "28": "(last 28)",
    "s": "",
    "h": "",
    "ci": "CI",
    "p90": "p90",
    "nps": "NPS",
    "csat": "CSAT",
    "gpu": "GPU",
    "dora": "DORA",
    "pretrend": "pre-trend",
}
NAMES = {
    "year_month": "Month",
    "group_name": "Organisation unit",
    "team_metric": "Team and metric",
    "n_treated": "Treated teams",
    "n_control": "Control teams",
    "pretrend_p": "Pre-trend p-value",
}
"""Columns whose words alone would not say it (the rest: `display_name`)."""
_TOKENS = re.compile(r"\(|\)|'(?:[^'\\]|\\.)*'|\bSELECT\b|\bFROM\b", re.IGNORECASE)


def columns(sql: str) -> list[str]:
    """The output column names of the outermost SELECT of `sql`."""
    depth, start = 0, None
    for match in _TOKENS.finditer(sql):
        token = match[0].upper()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0 and token == "SELECT" and start is None:
            start = match.end()
        elif depth == 0 and token == "FROM" and start is not None:
            return [_name(item) for item in _split(sql[start : match.start()])]
    raise ValueError(f"no top-level SELECT ... FROM in {sql[:80]!r}")


def _split(text: str) -> list[str]:
    items: list[str] = []
    depth, current = 0, ""
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current]


def _name(item: str) -> str:
    alias = re.search(r"\bAS\s+(\w+)\s*$", item.strip(), re.IGNORECASE)
    return alias[1] if alias else item.strip().split(".")[-1]


def display_name(column: str) -> str:
    """`active_target_teams_28d` -> `Active target teams (28 days)`; a unit suffix (`_s`,
    `_h`) is left to the unit."""
    if column in NAMES:
        return NAMES[column]
    words = [WORDS.get(word, word) for word in column.split("_")]
    text = " ".join(word for word in words if word)
    return text[:1].upper() + text[1:]


def unit(column: str) -> str | None:
    if column in DATES or column.endswith("_day"):
        return "time:YYYY-MM-DD"
    if column.endswith("_at"):
        return "dateTimeAsIso"
    if column.endswith("_s") or column.startswith("time_to_first"):
        return "s"
    if column.endswith("_h"):
        return "h"
    return None


def link(column: str, *, label: bool = False, matrix: bool = False) -> list[dict[str, str]]:
    """The team drill-down link of a `team` field: a column (the row's team), a series label,
    or the row header of a matrix (the cell's own value)."""
    if column != "team":
        return []
    if label:
        return [team_link("__field.labels.team")]
    return [team_link("__value.raw" if matrix else "__data.fields.team")]
