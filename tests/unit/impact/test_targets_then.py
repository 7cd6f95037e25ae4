"""The impact panel takes each week's target teams as they were then (Panel.weekly_targets).

A team that became a target of a capability only in a later week (a re-org, a new target
list) is in the sample only from that week: its earlier weeks are no "before adoption" of a
capability it was not meant to use. Unit level: no warehouse.
"""

from __future__ import annotations

from datetime import date, timedelta

from pipeline.impact.estimate import Panel, naive

WEEKS = [date(2026, 1, 5) + timedelta(weeks=i) for i in range(6)]


def _panel(weekly: dict[tuple[str, date], frozenset[str]]) -> Panel:
    rows: list[tuple[str, date, int, float | None, float | None, float | None]] = [
        (team, week, 3, 3600.0 * (2 if team == "late" and i < 3 else 1), 0.1, 600.0)
        for team in ("early", "late")
        for i, week in enumerate(WEEKS)
    ]
    first_use = {("early", "gw"): WEEKS[2], ("late", "gw"): WEEKS[3]}
    return Panel(rows, first_use, {"gw": ["early", "late"]}, weekly)


def test_weeks_outside_the_targets_of_then_are_left_out() -> None:
    # "late" joined the capability's targets in week 4, the week it adopted: no week before.
    weekly = {
        ("gw", week): frozenset({"early", "late"} if i >= 3 else {"early"})
        for i, week in enumerate(WEEKS)
    }
    then = naive(_panel(weekly), "gw", "lead_time")
    assert then.treated_teams == 1
    assert then.estimate is not None and abs(then.estimate - 1.0) < 1e-9


def test_todays_list_would_count_the_weeks_before() -> None:
    """Negative control: with today's list only, "late"'s weeks before it was a target count
    as its "before" and its lead time halves at adoption."""
    today = naive(_panel({}), "gw", "lead_time")
    assert today.treated_teams == 2
    assert today.estimate is not None and today.estimate < 0.9


def test_a_week_the_daily_targets_do_not_cover_keeps_todays_list() -> None:
    panel = _panel({("gw", WEEKS[5]): frozenset({"early"})})
    assert panel.is_target("gw", "late", WEEKS[0])  # not covered: today's list
    assert not panel.is_target("gw", "late", WEEKS[5])
    assert Panel([], {}).is_target("gw", "anyone", WEEKS[0])  # no list: every team
