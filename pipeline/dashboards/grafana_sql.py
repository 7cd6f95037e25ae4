"""A ClickHouse panel's SQL, expanded as Grafana and the ClickHouse plugin (v4) expand it.

Pure. `expand()` applies `$__conditionalAll`, then the dashboard variables, then the macros;
anything outside the subset every v4 release parses alike, and any `$` left after expansion,
raises `UnsupportedSql`. `to_clickhouse_parameters()` turns the same SQL into a query with
server-side parameters for `uptake report`. The steps: docs/dashboards.md#how-they-are-tested.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ALL = "$__all"


class UnsupportedSql(ValueError):
    """The panel SQL uses something Grafana or the plugin would not expand as intended."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range, both ends inclusive, timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("TimeRange needs timezone-aware datetimes")
        if self.end < self.start:
            raise ValueError("TimeRange ends before it starts")

    @classmethod
    def last(cls, span: timedelta, now: datetime | None = None) -> TimeRange:
        end = now or datetime.now(UTC)
        return cls(end - span, end)

    @property
    def span(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's current value as Grafana holds it.

    `value` is a string (single-value variable) or a tuple (multi-value); `ALL` (alone or as
    the only element) means All, which stands for `all_value` when set, else for every option.
    """

    name: str
    value: str | tuple[str, ...]
    options: tuple[str, ...] = ()
    all_value: str | None = None

    @property
    def is_all(self) -> bool:
        return self.value == ALL or self.value == (ALL,)

    @property
    def conditional_all_text(self) -> str:
        # The plugin reads `current.value.toString()`: JS joins arrays with ",".
        return ",".join(self.value) if isinstance(self.value, tuple) else self.value


# --- Grafana's interval --------------------------------------------------------------------

_ROUND_STEPS_MS: tuple[tuple[int, int], ...] = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_ONE_YEAR_MS = 31_536_000_000
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_UNIT_MS["y"] = _ONE_YEAR_MS


def round_interval_ms(interval_ms: float) -> int:
    """Grafana's `rangeutil.roundInterval`: a raw interval to the next "nice" step."""
    for below, step in _ROUND_STEPS_MS:
        if interval_ms < below:
            return step
    return _ONE_YEAR_MS


def parse_interval(text: str) -> timedelta:
    """A Grafana interval such as `1d`, `15m`, `500ms` (the panel's minimum interval)."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip())
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return timedelta(milliseconds=int(match[1]) * _UNIT_MS[match[2]])


def grafana_interval(
    time_range: TimeRange, max_data_points: int, min_interval: str | None = None
) -> timedelta:
    """Grafana's `calculateInterval`: span / max data points, rounded, at least `min_interval`."""
    if max_data_points <= 0:
        raise ValueError("max_data_points must be positive")
    span_ms = time_range.span / timedelta(milliseconds=1)
    interval_ms: float = round_interval_ms(span_ms / max_data_points)
    if min_interval:
        interval_ms = max(interval_ms, parse_interval(min_interval) / timedelta(milliseconds=1))
    return timedelta(milliseconds=interval_ms)


def interval_text(interval: timedelta) -> str:
    """Grafana's `secondsToHms` (what `$__interval` shows): `1d`, `6h`, `30s`, `500ms`."""
    seconds = interval.total_seconds()
    for unit, size in (("y", 31_536_000), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    if seconds >= 1:
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


# --- step 1: $__conditionalAll (plugin frontend) ---------------------------------------------

_CONDITIONAL_ALL = "$__conditionalAll("
_VAR_IN_ARG = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _macro_args(text: str, open_paren: int) -> list[str] | None:
    """The plugin's `getMacroArgs`: split at top-level commas up to the matching `)`."""
    depth, start, args = 0, open_paren + 1, []
    for index in range(open_paren, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 1:
            args.append(text[start:index])
            start = index + 1
        if depth == 0:
            args.append(text[start:index])
            return args
    return None


def apply_conditional_all(sql: str, variables: Mapping[str, Variable]) -> str:
    """Replace every `$__conditionalAll(condition, $var)` as the plugin's frontend does."""
    while (index := sql.rfind(_CONDITIONAL_ALL)) != -1:
        args = _macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if args is None or len(args) != 2:
            raise UnsupportedSql(
                "$__conditionalAll needs exactly two arguments, the second a variable: "
                f"{sql[index : index + 80]!r}"
            )
        condition, var_arg = args
        found = _VAR_IN_ARG.search(var_arg.strip())
        if not found:
            raise UnsupportedSql(f"$__conditionalAll's second argument is no variable: {var_arg!r}")
        variable = variables.get(found[1] or found[2])
        if variable is None:
            raise UnsupportedSql(f"$__conditionalAll names an unknown variable: {var_arg!r}")
        text = variable.conditional_all_text
        phrase = "1=1" if text in ("", ALL) else condition
        sql = sql.replace(f"{_CONDITIONAL_ALL}{condition},{var_arg})", phrase, 1)
    return sql


# --- step 2: dashboard variables (Grafana's template service) --------------------------------

# Grafana's variable pattern: $name, [[name:fmt]], ${name.fieldPath:fmt}
_TEMPLATE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)


def _format(value: str | list[str], fmt: str | None) -> str:
    if fmt is None:  # the ClickHouse plugin's formatter
        return "'" + "','".join(value) + "'" if isinstance(value, list) else value
    values = value if isinstance(value, list) else [value]
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return value if isinstance(value, str) else ",".join(value)
    raise UnsupportedSql(f"variable format {fmt!r} is not supported here")


_BUILTIN_NAMES = ("__from", "__to", "__interval", "__interval_ms", "__range_s", "__rate_interval")


def _builtins(time_range: TimeRange, interval: timedelta) -> dict[str, str]:
    return {
        "__from": str(_epoch_ms(time_range.start)),
        "__to": str(_epoch_ms(time_range.end)),
        "__interval": interval_text(interval),
        "__interval_ms": str(int(interval / timedelta(milliseconds=1))),
        "__range_s": str(int(time_range.span.total_seconds())),
    }


def replace_variables(
    sql: str,
    variables: Mapping[str, Variable],
    time_range: TimeRange,
    interval: timedelta,
) -> str:
    """Grafana's `templateSrv.replace` with the ClickHouse plugin's formatter."""
    builtins = _builtins(time_range, interval)

    def substitute(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[4]
        fmt = match[3] or match[6]
        if match[5]:
            raise UnsupportedSql(f"variable field paths are not supported: {match[0]!r}")
        if name in builtins:
            if fmt:
                raise UnsupportedSql(f"formats of built-in variables are not supported: {match[0]}")
            return builtins[name]
        variable = variables.get(name)
        if variable is None:
            return match[0]  # not a variable: Grafana leaves it (macros such as $__timeFilter)
        if variable.is_all:
            if variable.all_value is not None:
                return variable.all_value  # a custom all-value is inserted as written
            return _format(list(variable.options), fmt)
        value = variable.value
        return _format(list(value) if isinstance(value, tuple) else value, fmt)

    return _TEMPLATE.sub(substitute, sql)


# --- step 3: macros (plugin backend through sqlds) --------------------------------------------


def _epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _interval_s(interval: timedelta) -> int:
    return int(max(interval.total_seconds(), 1))


def _interval_ms(interval: timedelta) -> int:
    return int(max(interval / timedelta(milliseconds=1), 1))


# name -> number of arguments (the plugin's pkg/macros table).
MACRO_ARITY: dict[str, int] = {
    "fromTime": 0,
    "toTime": 0,
    "fromTime_ms": 0,
    "toTime_ms": 0,
    "timeFilter": 1,
    "timeFilter_ms": 1,
    "dateFilter": 1,
    "dateTimeFilter": 2,
    "dt": 2,
    "timeInterval": 1,
    "timeInterval_ms": 1,
    "interval_s": 0,
}
_MACRO = re.compile(r"\$__(" + "|".join(sorted(MACRO_ARITY, key=len, reverse=True)) + r")\b")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _expand_macro(
    name: str, args: Sequence[str], time_range: TimeRange, interval: timedelta
) -> str:
    start, end = time_range.start, time_range.end
    seconds = (f"toDateTime({int(start.timestamp())})", f"toDateTime({int(end.timestamp())})")
    millis = (
        f"fromUnixTimestamp64Milli({_epoch_ms(start)})",
        f"fromUnixTimestamp64Milli({_epoch_ms(end)})",
    )
    dates = (f"toDate('{start:%Y-%m-%d}')", f"toDate('{end:%Y-%m-%d}')")
    if name == "fromTime":
        return seconds[0]
    if name == "toTime":
        return seconds[1]
    if name == "fromTime_ms":
        return millis[0]
    if name == "toTime_ms":
        return millis[1]
    if name == "interval_s":
        return str(_interval_s(interval))
    column = args[0]
    if name == "timeFilter":
        return f"{column} >= {seconds[0]} AND {column} <= {seconds[1]}"
    if name == "timeFilter_ms":
        return f"{column} >= {millis[0]} AND {column} <= {millis[1]}"
    if name == "dateFilter":
        return f"{column} >= {dates[0]} AND {column} <= {dates[1]}"
    if name in ("dateTimeFilter", "dt"):
        date_column, time_column = args
        return (
            f"({date_column} >= {dates[0]} AND {date_column} <= {dates[1]}) AND "
            f"({time_column} >= {seconds[0]} AND {time_column} <= {seconds[1]})"
        )
    if name == "timeInterval":
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {_interval_s(interval)} second)"
    if name == "timeInterval_ms":
        return (
            f"toStartOfInterval(toDateTime64({column}, 3), "
            f"INTERVAL {_interval_ms(interval)} millisecond)"
        )
    raise UnsupportedSql(f"unknown macro $__{name}")  # pragma: no cover - MACRO_ARITY guards


@dataclass(frozen=True)
class MacroUse:
    """One macro in a query: its name, arguments and where it stands."""

    name: str
    args: tuple[str, ...]
    start: int
    end: int


def find_macros(sql: str) -> list[MacroUse]:
    """Every plugin macro in `sql`, checked against the subset all plugin versions parse alike."""
    uses = []
    for match in _MACRO.finditer(sql):
        name, end = match[1], match.end()
        arity = MACRO_ARITY[name]
        if arity == 0:
            if sql[end : end + 1] == "(":
                raise UnsupportedSql(
                    f"$__{name} takes no arguments: {sql[match.start() : end + 20]}"
                )
            uses.append(MacroUse(name, (), match.start(), end))
            continue
        if sql[end : end + 1] != "(":
            raise UnsupportedSql(f"$__{name} needs ({arity} argument(s)) right after its name")
        close = sql.find(")", end)
        inner = sql[end + 1 : close] if close != -1 else ""
        args = tuple(arg.strip() for arg in inner.split(","))
        if close == -1 or "(" in inner or len(args) != arity:
            raise UnsupportedSql(
                f"$__{name} takes {arity} plain column name(s): {sql[match.start() : close + 1]}"
            )
        for arg in args:
            if not _COLUMN.fullmatch(arg):
                raise UnsupportedSql(f"$__{name}: {arg!r} is not a plain column name")
        uses.append(MacroUse(name, args, match.start(), close + 1))
    return uses


def apply_macros(sql: str, time_range: TimeRange, interval: timedelta) -> str:
    """Expand the plugin's macros (what sqlds does in the plugin's backend)."""
    out, position = [], 0
    for use in find_macros(sql):
        out.append(sql[position : use.start])
        out.append(_expand_macro(use.name, use.args, time_range, interval))
        position = use.end
    out.append(sql[position:])
    return "".join(out)


_LEFTOVER = re.compile(r"\$\w+|\$\{|\[\[\w+")


def expand(
    sql: str,
    *,
    time_range: TimeRange,
    interval: timedelta,
    variables: Mapping[str, Variable] | None = None,
) -> str:
    """The SQL ClickHouse receives for a panel: conditional-alls, variables, then macros."""
    variables = variables or {}
    sql = apply_conditional_all(sql, variables)
    sql = replace_variables(sql, variables, time_range, interval)
    sql = apply_macros(sql, time_range, interval)
    leftover = _LEFTOVER.search(sql)
    if leftover:
        raise UnsupportedSql(
            f"{leftover[0]!r} is left after expansion: an unknown variable or macro"
        )
    return sql


# --- the same SQL with ClickHouse server-side parameters (uptake report) ---------------------


@dataclass
class Parameterized:
    """A query with `{name:Type}` placeholders and the values to bind to them."""

    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)


def to_clickhouse_parameters(
    sql: str,
    *,
    time_range: TimeRange,
    interval: timedelta,
    variables: Mapping[str, Variable] | None = None,
) -> Parameterized:
    """The panel SQL with the time range and variables bound as ClickHouse query parameters.

    Macros become expressions over `{from_s:Int64}`, `{to_s:Int64}`, `{from_ms:Int64}`,
    `{to_ms:Int64}` and `{interval_s:UInt32}`; a variable `$v`/`${v:singlequote}` becomes
    `{v:String}` (All and multi-values are refused: the report runs with single values, and
    `$__conditionalAll` with an All variable is `1=1` as in Grafana).
    """
    variables = variables or {}
    sql = apply_conditional_all(sql, variables)
    params: dict[str, Any] = {
        "from_s": int(time_range.start.timestamp()),
        "to_s": int(time_range.end.timestamp()),
        "from_ms": _epoch_ms(time_range.start),
        "to_ms": _epoch_ms(time_range.end),
        "interval_s": _interval_s(interval),
        "interval_ms": _interval_ms(interval),
    }

    def substitute(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[4]
        fmt = match[3] or match[6]
        variable = variables.get(name)
        if variable is None:
            if name in _BUILTIN_NAMES:
                raise UnsupportedSql(f"{match[0]} has no parameterized form")
            return match[0]  # a macro, bound below
        if variable.is_all or isinstance(variable.value, tuple):
            raise UnsupportedSql(f"${name}: only single values can be bound as parameters")
        params[name] = variable.value
        if fmt in ("singlequote", "sqlstring"):
            return f"{{{name}:String}}"
        raise UnsupportedSql(f"${name} must be written ${{{name}:singlequote}} to be bound")

    sql = _TEMPLATE.sub(substitute, sql)
    bound = {
        "fromTime": "toDateTime({from_s:Int64})",
        "toTime": "toDateTime({to_s:Int64})",
        "fromTime_ms": "fromUnixTimestamp64Milli({from_ms:Int64})",
        "toTime_ms": "fromUnixTimestamp64Milli({to_ms:Int64})",
        "interval_s": "{interval_s:UInt32}",
    }
    out, position = [], 0
    for use in find_macros(sql):
        out.append(sql[position : use.start])
        if use.name in bound:
            out.append(bound[use.name])
        elif use.name == "timeFilter":
            column = use.args[0]
            out.append(f"{column} >= {bound['fromTime']} AND {column} <= {bound['toTime']}")
        elif use.name == "timeFilter_ms":
            column = use.args[0]
            out.append(f"{column} >= {bound['fromTime_ms']} AND {column} <= {bound['toTime_ms']}")
        elif use.name == "dateFilter":
            column = use.args[0]
            out.append(
                f"{column} >= toDate(toDateTime({{from_s:Int64}}, 'UTC')) AND "
                f"{column} <= toDate(toDateTime({{to_s:Int64}}, 'UTC'))"
            )
        elif use.name == "timeInterval":
            out.append(
                f"toStartOfInterval(toDateTime({use.args[0]}), "
                "INTERVAL {interval_s:UInt32} second)"
            )
        else:
            raise UnsupportedSql(f"$__{use.name} has no parameterized form yet")
        position = use.end
    out.append(sql[position:])
    sql = "".join(out)
    leftover = _LEFTOVER.search(sql)
    if leftover:
        raise UnsupportedSql(f"{leftover[0]!r} is left after binding parameters")
    return Parameterized(sql, params)


def is_finite_number(value: object) -> bool:
    """True for an int/float that is not NaN or infinite (bools excluded)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
