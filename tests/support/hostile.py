"""Generators for the hostile-input fuzzing (tests/reliability/test_hostile_*.py).

JSON written as text (`RawText`, `Obj` with repeated keys, `Stamp` in every accepted spelling),
the oracle that says what the decoder must make of any bytes, and the hypothesis strategies:
random JSON (deep nesting, ~1 MiB strings, wrong types, lone surrogates, NUL, RTL marks, emoji,
duplicate keys, `1e400`/`-0`/`NaN` as raw text, edge timestamps), valid events and their
mutations. `TRIED` and `SEEN` collect the figures tests/reliability/conftest.py prints after the
run. Every hypothesis run is derandomized and bounded (`FUZZ`).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from pipeline.contract.decode import Limits
from pipeline.contract.events import name_problem

TRIED: Counter[str] = Counter()
"""Inputs tried per target (decoder messages, collector requests, webhook deliveries)."""
SEEN: Counter[str] = Counter()
"""Outcomes worth quoting: reasons, known-bug hits, accepted events."""

NOW = datetime(2028, 2, 29, 12, 0, 0, tzinfo=UTC)  # a leap day: valid events fall on it
LIMITS = Limits()  # the worker's defaults: 1 MiB, 5 minutes of skew, 7 days of lateness
MAX_BYTES = LIMITS.max_message_bytes
MAX_DEPTH = 300
"""Deepest nesting the property tests generate ("a few hundred levels"). Deeper input crashes
the decoder and the collector: see BUG-2 below."""

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)

# =============================================================================== JSON as text


@dataclass(frozen=True)
class RawText:
    """JSON text written verbatim: `1e400`, `NaN`, `-0`, deep nesting, invalid numbers."""

    text: str


class Obj(list):  # type: ignore[type-arg]
    """A JSON object as a list of [key, value] pairs: keys may repeat, in the order written."""


@dataclass(frozen=True)
class Stamp:
    """A timestamp `age_s` seconds before the clock's now, in one of the accepted spellings."""

    age_s: float
    tz_minutes: int
    style: str

    def render(self, now: datetime) -> str:
        tz = timezone(timedelta(minutes=self.tz_minutes))
        moment = (now - timedelta(seconds=self.age_s)).astimezone(tz)
        date, clock = moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S")
        plain = moment.strftime("%z")  # +HHMM
        colon = f"{plain[:3]}:{plain[3:]}"
        zulu = "Z" if self.tz_minutes == 0 else colon
        micros = f"{moment.microsecond:06d}"
        return {
            "rfc": f"{date}T{clock}{zulu}",
            "ms": f"{date}T{clock}.{micros[:3]}{colon}",
            "ns": f"{date}T{clock}.{micros}789{zulu}",  # 9 digits, rounded to microseconds
            "long": f"{date}T{clock}.{micros}1234567890123{colon}",  # 19 digits
            "space": f"{date} {clock}{colon}",
            "lower": f"{date}t{clock}{zulu.lower()}",
            "nocolon": f"{date}T{clock}{plain}",
            "minus0": f"{date}T{clock}{'-00:00' if self.tz_minutes == 0 else colon}",
        }[self.style]


def dump(value: Any, now: datetime = NOW, ascii_only: bool = True) -> str:
    """JSON text of `value`; `ascii_only=False` writes non-ASCII (and lone surrogates) raw."""
    if isinstance(value, RawText):
        return value.text
    if isinstance(value, Stamp):
        return json.dumps(value.render(now))
    if isinstance(value, Obj):
        pairs = (f"{dump(k, now, ascii_only)}:{dump(v, now, ascii_only)}" for k, v in value)
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, dict):
        return dump(Obj([k, v] for k, v in value.items()), now, ascii_only)
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v, now, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(text: str) -> bytes:
    """UTF-8, except that lone surrogates become their (invalid) 3-byte forms."""
    return text.encode("utf-8", "surrogatepass")


# =============================================================================== the oracle


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def structure(value: bytes) -> tuple[bool, Any]:
    """Whether `value` is structurally valid JSON (RFC 8259 grammar, no NaN/Infinity, strings
    judged byte-wise) and what it holds. Independent of msgspec: Python's json on latin-1."""
    try:
        parsed = json.loads(
            value.decode("latin-1"),
            parse_constant=_no_constant,
            parse_int=lambda _: 0,  # no 4300-digit limit, no range: the grammar only
            parse_float=lambda _: 0.0,
        )
    except (ValueError, RecursionError):
        return False, None
    return True, parsed


def strict_json(value: bytes) -> bool:
    """Valid JSON text in every respect: grammar, UTF-8 and no lone surrogate escapes."""
    try:
        text = value.decode("utf-8")
        parsed = json.loads(
            text,
            parse_constant=_no_constant,
            parse_int=lambda _: 0,
            parse_float=lambda _: 0.0,
            object_pairs_hook=list,  # keep every pair: a duplicate key must not hide a bad value
        )
        # A lone surrogate escape decodes to a str that has no UTF-8 form.
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError is a ValueError
        return False
    return True


@dataclass(frozen=True)
class Expected:
    """How many events a message carries (`counts`: the allowed totals) and what it is."""

    kind: str  # too_large | not_json | empty_array | array | single | array_unclean
    counts: frozenset[int]


def expected(value: bytes | None, max_bytes: int = MAX_BYTES) -> Expected:
    data = value or b""
    if len(data) > max_bytes:
        return Expected("too_large", frozenset({1}))
    ok, parsed = structure(data)
    if not ok:
        return Expected("not_json", frozenset({1}))
    if isinstance(parsed, list):
        if not parsed:
            return Expected("empty_array", frozenset({1}))
        if strict_json(data):
            return Expected("array", frozenset({len(parsed)}))
        # An array with invalid UTF-8 in some element is judged per element (BUG-5, fixed); a
        # lone surrogate escape (`"\ud800"`) is not JSON to msgspec, the message is one reject.
        return Expected("array_unclean", frozenset({1, len(parsed)}))
    return Expected("single", frozenset({1}))


def may_hit_bug1(value: bytes | None, max_bytes: int = MAX_BYTES) -> bool:
    """An array-looking message that is not clean JSON: the decoder may raise on it (BUG-1)."""
    data = value or b""
    if len(data) > max_bytes or data.lstrip(b" \t\r\n")[:1] != b"[":
        return False
    return expected(data, max_bytes).kind in ("not_json", "array_unclean")


# =============================================================================== strategies

SPECIAL_STRINGS = [
    "",
    " ",
    "\x00",
    "nul\x00inside",
    "\u202eevil\u202c",  # RTL override
    "\u200f\u200e",  # RTL / LTR marks
    "\U0001f600",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\ud800",  # lone surrogates: escaped with ensure_ascii, invalid bytes without
    "\udfff",
    "\ud83d\ude00",  # a valid pair when escaped, CESU-8 bytes when raw
    "\udc80",
    "e\u0301",
    "\\",
    '"',
    "'",
    "`",
    "\n\r\t\b\f",
    "x" * 200,
    "x" * 201,
    "\u00e9" * 200,
    "\u00e9" * 201,
    "\U0001f600" * 200,
    "x'; DROP TABLE events; --",
    "{x:String}",
]
RAW_NUMBERS = [
    "1e400",
    "-1e400",
    "1E-400",
    "-0",
    "-0.0",
    "0e0",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1.0",
    "2e2",
    "2.0E+2",
    "200.0",
    "200.5",
    "9007199254740993",
    "18446744073709551616",
    "-9223372036854775809",
    "1" + "0" * 400,
    "0.1e1",
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
]
EDGE_TIMESTAMPS = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.9999995Z",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59+23:59",
    "0000-01-01T00:00:00Z",
    "2024-02-29T12:00:00Z",
    "2025-02-29T12:00:00Z",
    "1900-02-29T00:00:00Z",
    "2028-02-29T12:00:00+24:00",
    "2028-02-29T12:00:00-24:00",
    "2028-02-29T12:00:60Z",
    "2028-02-29T24:00:00Z",
    "2028-02-29T11:59:59.123456789Z",
    "2028-02-29T11:59:59.1234567891234567891234Z",
    "2028-02-29T11:59:59.Z",
    "2028-02-29T11:59:59",
    "2028-02-29",
    "2028-02-29T11:59Z",
    "2028-02-29T11:59:59,5Z",
    "2028-02-29T11:59:59+02",
    "2028-02-29T11:59:59Z\n",
    " 2028-02-29T11:59:59Z",
    "2028-02-29T11:59:59\u200fZ",
    "\uff12\uff10\uff12\uff18-02-29T11:59:59Z",  # full-width digits
    "",
]
NAME_SAMPLES = [
    "checkout",
    "payments",
    "o'brien",
    "x'; DROP TABLE events; --",
    "{team:String}",
    "\u202eevil\u202c",
    "\U0001f600" * 200,
    "x" * 200,
    " ",
    "\x00",
    "back\\slash",
    "tab\tand\nnewline",
]
EVENT_TYPES = ("api_call", "deploy", "model_training", "incident")
TZ_MINUTES = [0, 0, 60, 330, -300, 23 * 60 + 59, -(23 * 60 + 59)]
STYLES = ["rfc", "ms", "ns", "long", "space", "lower", "nocolon", "minus0"]

names = st.one_of(st.sampled_from(NAME_SAMPLES), st.text(min_size=1, max_size=40))
optional_names = st.one_of(st.none(), names)
# Team, service and capability names: the legal set of docs/events.md#names.
_NAME_EXCLUDED = "\\,{}\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
entity_names = st.one_of(
    st.sampled_from([n for n in NAME_SAMPLES if name_problem(n) is None]),
    st.text(
        st.characters(exclude_categories=["Cc", "Cs"], exclude_characters=_NAME_EXCLUDED),
        min_size=1,
        max_size=40,
    ),
)
optional_entity_names = st.one_of(st.none(), entity_names)
hostile_strings = st.one_of(
    st.sampled_from(SPECIAL_STRINGS),
    st.text(max_size=30),
    st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=12),
)
huge_strings = st.builds(
    lambda n, ch: ch * n,
    st.sampled_from([1_000, 70_000, MAX_BYTES - 600, MAX_BYTES + 10]),
    st.sampled_from(["x", "\u00e9", "\U0001f600", "\\"]),
)


def stamps(min_age: float, max_age: float) -> st.SearchStrategy[Stamp]:
    return st.builds(
        Stamp,
        st.floats(min_age, max_age, allow_nan=False),
        st.sampled_from(TZ_MINUTES),
        st.sampled_from(STYLES),
    )


valid_occurred_at = stamps(-250, 6.5 * 86400)  # inside the 5-minute skew and 7-day lateness
VALID_EDGE_TIMES = [  # valid wherever no clock rule applies (commits, started_at, opened_at)
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",  # before year 1 in UTC
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59+23:59",
    "9999-12-31T23:59:59-23:59",  # after year 9999 in UTC
    "2024-02-29T12:00:00Z",
    "2000-02-29T00:00:00+0000",
    "2028-02-29T11:59:59.123456789Z",
    "2028-02-29 11:59:59.1234567891234567891-00:00",
]
any_valid_time = st.one_of(
    stamps(-5 * 365 * 86400, 5 * 365 * 86400), st.sampled_from(VALID_EDGE_TIMES)
)
timestamps = st.one_of(
    st.sampled_from(EDGE_TIMESTAMPS), stamps(-30 * 86400, 30 * 86400), any_valid_time
)


def _nest(depth: int, kind: str, leaf: str) -> RawText:
    if kind == "array":
        return RawText("[" * depth + leaf + "]" * depth)
    return RawText('{"a":' * depth + leaf + "}" * depth)


def deep() -> st.SearchStrategy[RawText]:
    """Nesting up to MAX_DEPTH levels, with leaves that include a number beyond the double range
    (a valid event may carry one in an unknown field, BUG-6)."""
    leaves = ["1", '"x"', "null", "[]", "{}", "2e2", "1e400"]
    return st.builds(
        _nest,
        st.integers(1, MAX_DEPTH),
        st.sampled_from(["array", "object"]),
        st.sampled_from(leaves),
    )


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(RAW_NUMBERS).map(RawText),
    hostile_strings,
    timestamps,
)
keys = st.one_of(
    st.sampled_from(
        [
            "event_id",
            "event_type",
            "schema_version",
            "occurred_at",
            "source",
            "capability",
            "team",
            "service",
            "user",
            "data",
            "status_code",
            "commits",
        ]
    ),
    hostile_strings,
)
json_values = st.one_of(
    st.recursive(
        json_scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.builds(Obj),
            st.lists(st.tuples(keys, children).map(list), max_size=5).map(Obj),
        ),
        max_leaves=25,
    ),
    deep(),
    huge_strings,
)
safe_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(["x" * 5_000, "\u00e9" * 20_000]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)


EXTRAS = st.dictionaries(  # unknown fields (allowed, ignored), under a prefix no field has
    st.text(max_size=8).map(lambda k: "x_" + k),
    st.one_of(safe_values, deep()),
    max_size=2,
)


def _uuid_text(u: uuid.UUID, form: int) -> str:
    return [str(u), u.hex, str(u).upper(), u.hex.upper()][form]


event_ids = st.builds(_uuid_text, st.uuids(), st.integers(0, 3))
bad_event_ids = st.one_of(
    st.builds(lambda u: "{" + str(u) + "}", st.uuids()),
    st.builds(lambda u: "urn:uuid:" + str(u), st.uuids()),
    st.builds(lambda u: str(u) + "\n", st.uuids()),
    st.builds(lambda u: str(u)[:-1], st.uuids()),
    st.builds(lambda u: str(u).replace("-", "", 1), st.uuids()),
    st.sampled_from(["", "a", "00000000-0000-0000-0000-00000000000g"]),
)
shas = st.text(alphabet="0123456789abcdefABCDEF", min_size=7, max_size=64)
finite = st.floats(min_value=0, max_value=1e300, allow_nan=False)


def _with(extra: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {**data, **extra}


optional_times = st.one_of(st.none(), any_valid_time)
DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "api_call": st.fixed_dictionaries(
        {
            "api": names,
            "operation": names,
            "status_code": st.one_of(
                st.integers(100, 599), st.sampled_from(["200.0", "2e2"]).map(RawText)
            ),
            "latency_ms": st.one_of(finite, st.integers(0, 10**9)),
        },
        optional={
            "outcome": st.fixed_dictionaries(
                {
                    "name": names,
                    "value": st.floats(allow_nan=False, allow_infinity=False),
                    "decision": optional_names,
                    "unit": optional_names,
                }
            )
        },
    ),
    "deploy": st.fixed_dictionaries(
        {
            "deployment_id": names,
            "service": entity_names,
            "environment": names,
            "status": st.sampled_from(["succeeded", "failed", "rolled_back"]),
            "commits": st.lists(
                st.fixed_dictionaries({"sha": shas, "committed_at": any_valid_time}), max_size=3
            ),
            "started_at": optional_times,
        }
    ),
    "model_training": st.fixed_dictionaries(
        {
            "run_id": names,
            "model": names,
            "status": st.sampled_from(["succeeded", "failed", "cancelled"]),
            "duration_s": finite,
            "gpu_hours": finite,
            "registered_model": optional_names,
        }
    ),
    "incident": st.fixed_dictionaries(
        {
            "incident_id": names,
            "service": entity_names,
            "severity": st.sampled_from(["sev1", "sev2", "sev3", "sev4"]),
            "status": st.sampled_from(["opened", "resolved"]),
            "opened_at": any_valid_time,
            "resolved_at": optional_times,
            "caused_by_deployment": optional_names,
        }
    ),
}
DATA = {name: st.builds(_with, EXTRAS, data) for name, data in DATA.items()}
SCHEMA_VERSIONS = st.sampled_from([1, 1, RawText("1.0")])
SERVICE_BESIDE_A_TEAM = st.one_of(optional_entity_names, st.just(""))


@st.composite
def valid_events(draw: st.DrawFn, sources: st.SearchStrategy[Any] = names) -> dict[str, Any]:
    """An event the worker must accept when read at NOW (or the collector's now)."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    team = draw(optional_entity_names)
    event: dict[str, Any] = {
        "event_id": draw(event_ids),
        "event_type": event_type,
        "schema_version": draw(SCHEMA_VERSIONS),
        "occurred_at": draw(valid_occurred_at),
        "source": draw(sources),
        "capability": draw(entity_names),
        "team": team,
        "service": draw(entity_names if team is None else SERVICE_BESIDE_A_TEAM),
        "data": draw(DATA[event_type]),
    }
    if draw(st.booleans()):
        event["user"] = draw(optional_names)
    event.update(draw(EXTRAS))
    return event


# --- mutations of a document (Obj / list tree) ----------------------------------------------


def to_doc(value: Any) -> Any:
    if isinstance(value, dict):
        return Obj([k, to_doc(v)] for k, v in value.items())
    if isinstance(value, list) and not isinstance(value, Obj):
        return [to_doc(v) for v in value]
    return value


def _slots(doc: Any) -> list[tuple[list[Any], int]]:
    found: list[tuple[list[Any], int]] = []

    def walk(node: Any) -> None:
        if isinstance(node, Obj):
            for i, pair in enumerate(node):
                found.append((node, i))
                walk(pair[1])
        elif isinstance(node, list):
            for i, item in enumerate(node):
                found.append((node, i))
                walk(item)

    walk(doc)
    return found


MUTATIONS = ["set", "set", "delete", "dup_before", "dup_after", "rename", "root"]
hostile_values = st.one_of(json_scalars, json_values, bad_event_ids, timestamps)
mutations = st.lists(
    st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 10_000), hostile_values),
    min_size=1,
    max_size=3,
)


def mutate(value: Any, changes: list[tuple[str, int, Any]]) -> Any:
    """`value` (a dict) as a document with each (operation, where, new value) applied."""
    doc = to_doc(copy.deepcopy(value))
    for operation, where, new in changes:
        new = copy.deepcopy(new)
        if operation == "root":
            doc = new
            continue
        spots = _slots(doc)
        if not spots:
            continue
        node, i = spots[where % len(spots)]
        is_obj = isinstance(node, Obj)
        if operation == "set":
            if is_obj:
                node[i][1] = new
            else:
                node[i] = new
        elif operation == "delete":
            del node[i]
        elif is_obj and operation == "dup_before":  # the original value is written last: wins
            node.insert(i, [node[i][0], new])
        elif is_obj and operation == "dup_after":  # the hostile value is written last: wins
            node.insert(i + 1, [node[i][0], new])
        elif is_obj and operation == "rename":
            key = node[i][0]
            node[i][0] = key.upper() if isinstance(key, str) and key != key.upper() else f"{key} "
    return doc


mutated_events = st.builds(mutate, valid_events(), mutations)
