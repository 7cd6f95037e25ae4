"""Values formatted like Grafana formats the units the dashboards use."""

from __future__ import annotations

import math


def _short(value: float, decimals: int | None = None) -> str:
    """Exact below a million, with thousands separators (3,000, not 3 K); M and B above."""
    size = abs(value)
    for limit, suffix in ((1e9, " B"), (1e6, " M")):
        if size >= limit:
            return f"{value / limit:.{1 if decimals is None else decimals}f}{suffix}"
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.2f}" if size < 10 else f"{value:,.1f}"


def _duration(seconds: float) -> str:
    size = abs(seconds)
    for limit, suffix in ((86_400, " day"), (3_600, " hour"), (60, " min")):
        if size >= limit:
            amount = seconds / limit
            return f"{amount:.1f}{suffix}{'' if abs(amount) == 1 else 's'}"
    return f"{seconds:.1f} s" if size >= 1 else f"{seconds * 1000:.0f} ms"


def format_value(value: float | None, unit: str = "short", decimals: int | None = None) -> str:
    """`value` as Grafana shows it in `unit` (short, percentunit, percent, s, h, d, …)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "percent":
        return f"{value:.{1 if decimals is None else decimals}f}%"
    if unit == "s":
        return _duration(value)
    if unit == "h":
        return _duration(value * 3_600)
    if unit == "d":
        return _duration(value * 86_400)
    if unit.startswith("currency"):
        return f"{_short(value, decimals)} {unit.removeprefix('currency')}"
    suffix = {"deploys/week": " /week", "ops": " /s"}.get(unit, "")
    return _short(value, decimals) + suffix
