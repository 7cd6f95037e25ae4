"""What the report shows instead of warehouse names."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from pipeline.report.labels import (
    column_label,
    column_unit,
    plain_description,
    series_label,
    time_text,
)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("lead_time_median_s_before", "Median lead time, before"),
        ("time_to_restore_median_s_after", "Median time to restore, after"),
        ("active_28d", "Active in 28 days"),
        ("n_members", "Members (N)"),
        ("gpu_hours", "GPU hours"),
        ("deploys_per_week_before", "Deploys per week, before"),
        ("group_name", "Organisation unit"),
        ("team", "Team"),
    ],
)
def test_columns_get_display_names(name: str, label: str) -> None:
    assert column_label(name) == label


def test_units_follow_the_column_name_unless_the_panel_sets_one() -> None:
    assert column_unit("lead_time_median_s_before", "short") == "s"
    assert column_unit("change_failure_rate_after", "short") == "percentunit"
    assert column_unit("active_member_share", "short") == "percentunit"
    assert column_unit("deployments", "short") == "short"
    assert column_unit("lead_time_median_s", "h") == "h"


def test_series_and_times_and_descriptions_read_plainly() -> None:
    assert series_label("fs · active 28d") == "fs · active in 28 days"
    assert series_label("not_adopted (N=3)") == "not yet adopted (N=3)"
    assert series_label("non_adopters") == "non-adopters"
    assert series_label("gpu_hours") == "GPU hours"
    assert time_text(datetime(2026, 12, 8, 10, 0, 59, 123_456)) == "2026-12-08 10:00"
    assert time_text(datetime(2026, 12, 8)) == "2026-12-08"
    assert time_text(date(2026, 12, 8)) == "2026-12-08"
    text = "for UPTAKE_CHURN_DAYS; UPTAKE_UNKNOWN_DAYS"
    assert plain_description(text, {"UPTAKE_CHURN_DAYS": 28}) == (
        "for 28 days; a configured number of days"
    )
