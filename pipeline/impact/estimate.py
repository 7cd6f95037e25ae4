"""Staggered-adoption difference-in-differences of DORA keys (Callaway & Sant'Anna, 2021).

Input: a weekly team panel (`Panel`); output: one `Estimate` per capability and metric, with the
naive before/after beside it. Method, scales and the pre-trend screen: docs/analysts.md, "Impact
estimates". The `differences` library is imported only when an estimate is computed (it takes
seconds). Pure; never touches the warehouse; raises nothing for thin data (status
`insufficient_data` with the reason) and reports a library failure as status `failed`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import date
from typing import Any

METHOD = "callaway_santanna_not_yet_treated"
NAIVE = "naive_before_after"
METRICS = ("deployment_frequency", "lead_time", "change_failure_rate", "recovery_time")
# Below these the estimate is reported as insufficient data.
MIN_TREATED_TEAMS = 3
MIN_CONTROL_TEAMS = 3
MIN_PRE_WEEKS = 2
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """One row of impact_estimates (see migration 0007 for the columns)."""

    capability: str
    metric: str
    method: str
    scale: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    treated_teams: int
    control_teams: int
    pretrend_p: float | None
    status: str
    note: str
    weeks: int

    def covers(self, value: float) -> bool:
        return (
            self.ci_low is not None
            and self.ci_high is not None
            and self.ci_low <= value <= self.ci_high
        )


@dataclass
class Panel:
    """Weekly DORA figures per team, and first use per (team, capability).

    `rows`: (team, week Monday, deployments, lead_time_median_s, change_failure_rate,
    recovery_time_median_s), None where the week has nothing to compute a figure from; a
    team-week without a row has 0 deployments and no other figure. `targets`: per capability
    the teams it is meant for (empty: every team of the panel). `weekly_targets`: per
    (capability, week Monday) the teams that were its targets that week; where it has the
    week, it decides (a team's weeks outside its targets are left out), else `targets` does.
    """

    rows: list[tuple[str, date, int, float | None, float | None, float | None]]
    first_use: dict[tuple[str, str], date]
    targets: dict[str, list[str]] = field(default_factory=dict)
    weekly_targets: dict[tuple[str, date], frozenset[str]] = field(default_factory=dict)

    def is_target(self, capability: str, team: str, week: date) -> bool:
        """Whether `team` was a target of `capability` in `week` (as it was then, if known)."""
        then = self.weekly_targets.get((capability, week))
        if then is not None:
            return team in then
        today = self.targets.get(capability)
        return not today or team in today


def _scale(metric: str) -> str:
    return "difference" if metric == "change_failure_rate" else "factor"


def _frame(panel: Panel, capability: str, metric: str) -> tuple[Any, list[date]]:
    """The long frame (team, t, y, cohort) of one capability and metric; t counts weeks from 1."""
    import pandas as pd

    weeks = sorted({row[1] for row in panel.rows})
    if not weeks:
        return pd.DataFrame(columns=["team", "t", "y", "cohort"]), []
    index = {week: i + 1 for i, week in enumerate(_all_weeks(weeks[0], weeks[-1]))}
    weeks = list(index)
    teams = sorted({row[0] for row in panel.rows})
    # A team is in the sample in the weeks it was a target (as it was then).
    weeks_in = {
        team: {t for week, t in index.items() if panel.is_target(capability, team, week)}
        for team in teams
    }
    teams = [t for t in teams if weeks_in[t]]
    values: dict[tuple[str, int], float] = {}
    for team, week, deployments, lead, cfr, recovery in panel.rows:
        if index[week] not in weeks_in.get(team, ()):
            continue
        value: float | None
        if metric == "deployment_frequency":
            value = float(deployments)
        elif metric == "lead_time":
            value = math.log(lead) if lead and lead > 0 else None
        elif metric == "change_failure_rate":
            value = cfr
        else:
            value = math.log(recovery) if recovery and recovery > 0 else None
        if value is not None:
            values[team, index[week]] = value
    records = []
    for team in teams:
        adopted = panel.first_use.get((team, capability))
        cohort = float(index[_monday(adopted)]) if adopted is not None else math.nan
        for t in sorted(weeks_in[team]):
            if metric == "deployment_frequency":
                y: float | None = values.get((team, t), 0.0)
            else:
                y = values.get((team, t))
            if y is not None:
                records.append((team, t, y, cohort))
    return pd.DataFrame(records, columns=["team", "t", "y", "cohort"]), weeks


def _all_weeks(first: date, last: date) -> list[date]:
    from datetime import timedelta

    out, week = [], first
    while week <= last:
        out.append(week)
        week += timedelta(weeks=1)
    return out


def _monday(day: date) -> date:
    from datetime import timedelta

    return day - timedelta(days=day.weekday())


def _counts(frame: Any) -> tuple[int, int, int]:
    """Treated teams (adopted after the first week, with data before and after), control
    teams (not yet adopted when some treated team adopted), and the most weeks any treated
    team has before its adoption (the pre-trend check needs 2)."""
    if frame.empty:
        return 0, 0, 0
    treated, pre_weeks = [], []
    for team, rows in frame.groupby("team"):
        cohort = rows["cohort"].iloc[0]
        if math.isnan(cohort) or cohort <= 1:
            continue
        before = int((rows["t"] < cohort).sum())
        after = int((rows["t"] >= cohort).sum())
        if before and after:
            treated.append(team)
            pre_weeks.append(before)
    if not treated:
        return 0, 0, 0
    first = frame.loc[frame["team"].isin(treated), "cohort"].min()
    cohorts = frame.groupby("team")["cohort"].first()
    controls = [team for team, c in cohorts.items() if math.isnan(c) or c > first]
    return len(treated), len(controls), max(pre_weeks)


def naive(panel: Panel, capability: str, metric: str) -> Estimate:
    """Mean after minus mean before adoption over the adopting teams: no control, no interval."""
    frame, weeks = _frame(panel, capability, metric)
    treated, _, _ = _counts(frame)
    if treated == 0:
        note = "no team adopted with data before and after"
        return _row(capability, metric, NAIVE, len(weeks), 0, 0, "insufficient_data", note)
    adopted = frame[(frame["cohort"] > 1) & frame["cohort"].notna()]
    before = adopted[adopted["t"] < adopted["cohort"]]["y"].mean()
    after = adopted[adopted["t"] >= adopted["cohort"]]["y"].mean()
    effect = float(after - before)
    value = _to_scale(metric, effect, float(before))
    note = "naive: no control for the organisation's trend, not an effect"
    return _row(capability, metric, NAIVE, len(weeks), treated, 0, "ok", note, estimate=value)


def _to_scale(metric: str, effect: float, baseline: float) -> float:
    if metric in ("lead_time", "recovery_time"):
        return math.exp(effect)
    if metric == "deployment_frequency":
        return (baseline + effect) / baseline if baseline > 0 else math.nan
    return effect


def did(panel: Panel, capability: str, metric: str) -> Estimate:
    """The Callaway & Sant'Anna estimate with not-yet-adopted teams as controls."""
    frame, weeks = _frame(panel, capability, metric)
    treated, controls, pre_weeks = _counts(frame)
    sizes = (len(weeks), treated, controls)
    short = []
    if treated < MIN_TREATED_TEAMS:
        short.append(f"{treated} adopting teams with data before and after (< {MIN_TREATED_TEAMS})")
    if controls < MIN_CONTROL_TEAMS:
        short.append(f"{controls} not-yet-adopted control teams (< {MIN_CONTROL_TEAMS})")
    if treated and pre_weeks < MIN_PRE_WEEKS:
        short.append(f"at most {pre_weeks} weeks before an adoption (< {MIN_PRE_WEEKS})")
    if short:
        return _row(capability, metric, METHOD, *sizes, "insufficient_data", "; ".join(short))
    try:
        effect, se, pre = _fit(frame)
    except Exception as exc:  # the library's own validation (e.g. a degenerate panel)
        note = f"{type(exc).__name__}: {exc}"[:500]
        return _row(capability, metric, METHOD, *sizes, "failed", note)
    adopted = frame[(frame["cohort"] > 1) & frame["cohort"].notna()]
    baseline = float(adopted[adopted["t"] < adopted["cohort"]]["y"].mean())
    low, high = effect - Z95 * se, effect + Z95 * se
    return _row(
        capability,
        metric,
        METHOD,
        *sizes,
        "ok",
        "",
        estimate=_to_scale(metric, effect, baseline),
        ci=(_to_scale(metric, low, baseline), _to_scale(metric, high, baseline)),
        pretrend_p=pre,
    )


def _row(
    capability: str,
    metric: str,
    method: str,
    weeks: int,
    treated: int,
    controls: int,
    status: str,
    note: str,
    *,
    estimate: float | None = None,
    ci: tuple[float | None, float | None] = (None, None),
    pretrend_p: float | None = None,
) -> Estimate:
    return Estimate(
        capability=capability,
        metric=metric,
        method=method,
        scale=_scale(metric),
        estimate=estimate,
        ci_low=ci[0],
        ci_high=ci[1],
        treated_teams=treated,
        control_teams=controls,
        pretrend_p=pretrend_p,
        status=status,
        note=note,
        weeks=weeks,
    )


def _fit(frame: Any) -> tuple[float, float, float | None]:
    """Overall ATT, its standard error, and the pre-trend p-value."""
    from differences import ATTgt
    from scipy import stats

    data = frame.set_index(["team", "t"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        att = ATTgt(data=data, cohort_column="cohort", base_period="universal")
        att.fit(
            formula="y",
            est_method="reg",
            control_group="not_yet_treated",
            progress_bar=False,
        )
        simple = att.aggregate("simple")
        event = att.aggregate("event")
    effect = float(simple.iloc[0, 0])
    se = float(simple.iloc[0, 1])
    pre = event[event.index < -1]
    z = [
        (float(a) / float(s)) ** 2
        for a, s in zip(pre.iloc[:, 0], pre.iloc[:, 1], strict=True)
        if s == s and float(s) > 0
    ]
    pretrend = float(stats.chi2.sf(sum(z), len(z))) if z else None
    return effect, se, pretrend


def estimate_all(panel: Panel, capabilities: list[str]) -> list[Estimate]:
    """Both methods for every capability and metric."""
    out = []
    for capability in capabilities:
        for metric in METRICS:
            out.append(did(panel, capability, metric))
            out.append(naive(panel, capability, metric))
    return out
