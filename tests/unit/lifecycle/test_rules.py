"""The pure lifecycle rules against a literal day-by-day reading of them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.lifecycle.rules import (
    Milestone,
    Rules,
    day_of,
    day_of_iso,
    milestones,
    summarize,
)
from tests.support.lifecycle_brute import brute_force

RULES = Rules(activation_days=3, activation_window_days=14, churn_days=28)


def test_first_use_activation_churn_and_reactivation() -> None:
    days = [100, 105, 110, 120]  # third day 110 is within 14 days of 100
    assert milestones(days, watermark=148, rules=RULES) == [
        Milestone("first_use", 100, 1),
        Milestone("activated", 110, 1),
        Milestone("churned", 148, 1),  # 121..148: 28 idle days
    ]
    # one day earlier the watermark has not reached the churn day yet
    assert Milestone("churned", 148, 1) not in milestones(days, 147, RULES)
    again = [*days, 149]
    assert milestones(again, 149, RULES)[-2:] == [
        Milestone("churned", 148, 1),
        Milestone("reactivated", 149, 2),
    ]


def test_a_gap_of_exactly_churn_days_is_no_churn() -> None:
    assert [m.kind for m in milestones([0, 28], 1000, RULES)] == ["first_use", "churned"]
    assert milestones([0, 28], 1000, RULES)[-1] == Milestone("churned", 56, 1)


def test_activation_needs_the_days_inside_the_window() -> None:
    assert "activated" not in [m.kind for m in milestones([0, 7, 14], 0, RULES)]
    assert Milestone("activated", 13, 1) in milestones([0, 7, 13], 0, RULES)


def test_a_reactivated_episode_can_activate_again() -> None:
    found = milestones([0, 40, 41, 42], 42, RULES)
    assert found == [
        Milestone("first_use", 0, 1),
        Milestone("churned", 28, 1),
        Milestone("reactivated", 40, 2),
        Milestone("activated", 42, 2),
    ]
    summary = summarize([0, 40, 41, 42], found)
    assert (summary.state, summary.activated_at, summary.churned_at, summary.episode) == (
        "activated",
        42,
        28,
        2,
    )


def test_days_are_utc_days_of_the_event_time() -> None:
    assert day_of(datetime(1970, 1, 2, 0, 0, tzinfo=UTC)) == 1
    assert day_of_iso("2024-03-01T23:59:59.999Z") == day_of_iso("2024-03-01T00:00:00Z")
    assert day_of_iso("2024-03-02T00:30:00+02:00") == day_of_iso("2024-03-01T12:00:00Z")


def test_rules_refuse_an_impossible_activation() -> None:
    with pytest.raises(ValueError):
        Rules(activation_days=5, activation_window_days=4)


rules_st = st.builds(
    Rules,
    activation_days=st.integers(1, 4),
    activation_window_days=st.integers(4, 20),
    churn_days=st.integers(1, 30),
)


@settings(max_examples=400, deadline=None)
@given(
    days=st.sets(st.integers(0, 200), max_size=40), watermark=st.integers(-10, 260), rules=rules_st
)
def test_milestones_equal_the_day_by_day_reading(
    days: set[int], watermark: int, rules: Rules
) -> None:
    assert milestones(sorted(days), watermark, rules) == brute_force(days, watermark, rules)
