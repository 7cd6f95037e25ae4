"""What a reader sees instead of warehouse names: column labels, series names, cell text.

Dashboards name their columns for SQL (`lead_time_median_s_before`, `active_28d`); the report
shows `Median lead time, before`, `Active in 28 days`. Descriptions name no setting: an
`UPTAKE_*` variable is replaced by the value in force when the report was built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime

LABELS = {
    "ci_low": "95% CI, low",
    "ci_high": "95% CI, high",
    "group_name": "Organisation unit",
    "year_month": "Month",
    "team_metric": "Team · north star",
    "p90": "90th percentile",
    "csat": "CSAT",
    "nps": "NPS",
    "gpu_hours": "GPU hours",
    "age": "Weeks since first use",
    "time": "Time",
}
WORDS = {"gpu": "GPU", "csat": "CSAT", "nps": "NPS", "ci": "CI", "ml": "ML", "dora": "DORA"}
PHRASES = {  # label values the views write, as a reader says them
    "active 28d": "active in 28 days",
    "not_adopted": "not yet adopted",
    "non_adopters": "non-adopters",
    "naive_before_after": "naive before/after",
}


def column_label(name: str) -> str:
    """`lead_time_median_s_before` -> `Median lead time, before`; `n_members` -> `Members (N)`."""
    if name in LABELS:
        return LABELS[name]
    words = name.split("_")
    count = words[0] == "n" and len(words) > 1
    if count:
        words = words[1:]
    tail = ""
    if words[-1] in ("before", "after") and len(words) > 1:
        tail = f", {words.pop()}"
    if "28d" in words:
        words.remove("28d")
        words.append("in 28 days")
    words = [w for w in words if w != "s"]  # seconds: the cell shows the unit
    if "median" in words and words[0] != "median":
        words.remove("median")
        words.insert(0, "median")
    text = " ".join(WORDS.get(w, w) for w in words) + tail + (" (N)" if count else "")
    return text[:1].upper() + text[1:]


def column_unit(name: str, unit: str) -> str:
    """The unit a column's numbers are in: the panel's, unless its name says seconds or a rate."""
    if unit not in ("short", ""):
        return unit
    words = name.split("_")
    if "s" in words[1:]:
        return "s"
    if words[-1] in ("rate", "share") or words[-2:-1] in (["rate"], ["share"]):
        return "percentunit"
    return unit


def series_label(name: str) -> str:
    """A chart series: a column name becomes its label, label values get plain words."""
    if name in PHRASES:
        return PHRASES[name]
    if (re.fullmatch(r"[a-z0-9_]+", name) and "_" in name) or name in LABELS:
        return column_label(name)
    for raw, plain in PHRASES.items():
        name = name.replace(raw, plain)
    return name


def time_text(value: date | datetime) -> str:
    """A time to the minute (a day when it is midnight), never with seconds or microseconds."""
    if isinstance(value, datetime):
        if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
            return f"{value:%Y-%m-%d}"
        return f"{value:%Y-%m-%d %H:%M}"
    return f"{value:%Y-%m-%d}"


def plain_description(text: str, settings: Mapping[str, object]) -> str:
    """`text` with each `UPTAKE_*` setting replaced by its value (`settings`: name -> value)."""

    def value(match: re.Match[str]) -> str:
        found = settings.get(match[0])
        days = " days" if match[0].endswith("_DAYS") else ""
        return f"a configured number of{days}" if found is None else f"{found}{days}"

    return re.sub(r"UPTAKE_[A-Z0-9_]+", value, text)
