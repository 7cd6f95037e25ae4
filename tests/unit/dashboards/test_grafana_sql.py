"""grafana_sql expands like Grafana and the ClickHouse plugin: the examples of the plugin's docs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.dashboards.grafana_sql import (
    ALL,
    TimeRange,
    UnsupportedSql,
    Variable,
    expand,
    grafana_interval,
    interval_text,
    to_clickhouse_parameters,
)

# The plugin's README: from 2014-11-12T11:45:26.123Z, to 2015-11-12T11:45:26.456Z, interval 20 s.
RANGE = TimeRange(
    datetime(2014, 11, 12, 11, 45, 26, 123000, tzinfo=UTC),
    datetime(2015, 11, 12, 11, 45, 26, 456000, tzinfo=UTC),
)
TWENTY = timedelta(seconds=20)


def grafana(sql: str, interval: timedelta = TWENTY, **variables: Variable) -> str:
    return expand(sql, time_range=RANGE, interval=interval, variables=variables)


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("$__fromTime", "toDateTime(1415792726)"),
        ("$__toTime", "toDateTime(1447328726)"),
        ("$__fromTime_ms", "fromUnixTimestamp64Milli(1415792726123)"),
        ("$__toTime_ms", "fromUnixTimestamp64Milli(1447328726456)"),
        ("$__interval_s", "20"),
        (
            "$__timeInterval(columnName)",
            "toStartOfInterval(toDateTime(columnName), INTERVAL 20 second)",
        ),
        (
            "$__timeFilter(ts)",
            "ts >= toDateTime(1415792726) AND ts <= toDateTime(1447328726)",
        ),
        (
            "$__timeFilter_ms(ts)",
            "ts >= fromUnixTimestamp64Milli(1415792726123) AND "
            "ts <= fromUnixTimestamp64Milli(1447328726456)",
        ),
        ("$__dateFilter(d)", "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')"),
        (
            "$__dt(d, ts)",
            "(d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')) AND "
            "(ts >= toDateTime(1415792726) AND ts <= toDateTime(1447328726))",
        ),
    ],
)
def test_macros_expand_to_the_plugins_text(macro: str, expanded: str) -> None:
    assert grafana(f"SELECT {macro}") == f"SELECT {expanded}"


def test_millisecond_interval_and_the_one_second_floor() -> None:
    assert grafana("$__timeInterval_ms(t)", timedelta(milliseconds=20)) == (
        "toStartOfInterval(toDateTime64(t, 3), INTERVAL 20 millisecond)"
    )
    assert grafana("$__interval_s", timedelta(milliseconds=20)) == "1"


def test_conditional_all_is_true_for_all_and_empty_and_the_condition_otherwise() -> None:
    sql = "WHERE $__conditionalAll(team IN (${team:singlequote}), $team)"
    options = ("a", "b'c")
    assert grafana(sql, team=Variable("team", ALL, options)) == "WHERE 1=1"
    assert grafana(sql, team=Variable("team", (ALL,), options)) == "WHERE 1=1"
    assert grafana(sql, team=Variable("team", "", options)) == "WHERE 1=1"
    assert grafana(sql, team=Variable("team", ("a",), options)) == "WHERE team IN ('a')"
    assert grafana(sql, team=Variable("team", ("a", "b'c"), options)) == (
        "WHERE team IN ('a','b\\'c')"
    )


def test_variables_use_the_plugins_formatter_unless_a_format_is_given() -> None:
    multi = Variable("t", ("a", "b"))
    assert grafana("IN ($t)", t=multi) == "IN ('a','b')"
    assert grafana("= '$t'", t=Variable("t", "x")) == "= 'x'"  # single values go in raw
    assert grafana("= ${t:sqlstring}", t=Variable("t", "o'k")) == "= 'o''k'"
    assert grafana("IN (${t:csv})", t=multi) == "IN (a,b)"
    assert grafana("IN ($t)", t=Variable("t", ALL, ("a", "b"))) == "IN ('a','b')"
    assert grafana("=~ '$t'", t=Variable("t", ALL, ("a",), all_value=".*")) == "=~ '.*'"
    assert grafana("$__from $__to") == "1415792726123 1447328726456"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT $unknown",
        "SELECT $__timeFilter(toDate(t))",
        "SELECT $__timeFilter(a, b)",
        "SELECT $__fromTime()",
        "SELECT $__timeFilter (t)",
        "WHERE $__conditionalAll(x = 1)",
        "SELECT ${t.path}",
    ],
)
def test_what_grafana_would_not_run_as_written_is_refused(sql: str) -> None:
    with pytest.raises(UnsupportedSql):
        grafana(sql, t=Variable("t", "x"))


def test_the_interval_is_grafanas() -> None:
    ninety_days = TimeRange.last(timedelta(days=90), datetime(2025, 1, 1, tzinfo=UTC))
    # 90 days / 1000 px = 2.16 h, rounded to Grafana's 2 h step; at least the panel's minimum.
    assert grafana_interval(ninety_days, 1000) == timedelta(hours=2)
    assert grafana_interval(ninety_days, 1000, "1d") == timedelta(days=1)
    assert grafana_interval(ninety_days, 10) == timedelta(weeks=1)
    assert interval_text(timedelta(hours=2)) == "2h"
    assert interval_text(timedelta(milliseconds=500)) == "500ms"


def test_parameterized_form_binds_the_range_and_single_values() -> None:
    bound = to_clickhouse_parameters(
        "SELECT $__timeInterval(t) FROM x WHERE $__timeFilter(t) AND $__dateFilter(d) "
        "AND team = ${team:singlequote} AND $__conditionalAll(c IN (${c:singlequote}), $c)",
        time_range=RANGE,
        interval=TWENTY,
        variables={"team": Variable("team", "o'k"), "c": Variable("c", ALL, ("a",))},
    )
    assert "'" not in bound.sql.replace("'UTC'", "")  # no value pasted into the text
    assert "team = {team:String}" in bound.sql and bound.parameters["team"] == "o'k"
    assert "t >= toDateTime({from_s:Int64}) AND t <= toDateTime({to_s:Int64})" in bound.sql
    assert "INTERVAL {interval_s:UInt32} second" in bound.sql and "AND 1=1" in bound.sql
    assert bound.parameters["from_s"] == 1415792726 and bound.parameters["interval_s"] == 20
    with pytest.raises(UnsupportedSql):
        to_clickhouse_parameters(
            "WHERE c IN (${c:singlequote})",
            time_range=RANGE,
            interval=TWENTY,
            variables={"c": Variable("c", ("a", "b"))},
        )
