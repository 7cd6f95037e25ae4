"""The published JSON Schemas (schemas/events/) and the worker's msgspec decoder agree.

Plain unit tests, no services. They check, in order:

* the schema files themselves: valid draft 2020-12, `$id`s, a description on every field, no
  `additionalProperties: false` (unknown fields must stay allowed), no `format` (the standard
  formats disagree with msgspec; exact patterns describe timestamps and UUIDs instead);
* structure: every msgspec struct and the schema for it name the same fields, the same required
  fields and the same types, bounds, lengths, patterns and enums;
* the timestamp and UUID patterns accept exactly the strings msgspec accepts (and `is_rfc3339`,
  the same rule in Python), on examples and on hypothesis-generated near misses;
* the example corpus (examples/valid, examples/invalid): both validators accept every valid file
  and reject every invalid one, and the decoder rejects with the reason the file name starts with;
* docs/events.md: every JSON example in it is a valid corpus file, every reason and field is
  documented;
* agreement beyond the corpus: a deterministic sweep of every one-step mutation of the documented
  examples (each field dropped, retyped, set to the edges of its bounds and to timestamp, UUID and
  enum near misses), and a hypothesis test that applies random chains of such mutations to every
  valid example. A disagreement fails with the mutated message and both verdicts.

There are no known disagreements, and none may be tolerated: the lax spellings msgspec accepts
(integral floats such as `201.0` for integers, UUIDs without hyphens, a space instead of `T`,
`+0200` offsets) are valid in the schemas too; see LAX_SPELLINGS.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing.jsonschema import DRAFT202012

from pipeline.contract import events as contract
from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.contract.reasons import Reason
from pipeline.contract.schemas import (
    BASE_URI,
    SCHEMA_DIR,
    errors,
    is_rfc3339,
    load_registry,
    validator,
)
from tests.conftest import REPO

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
DOCS = REPO / "docs" / "events.md"
# The complete example per type that docs/events.md shows (test_docs_examples_... checks it).
DOC_EXAMPLE_FILES = [
    "valid/api_call__risk_decision_outcome.json",
    "valid/deploy__production_with_commits.json",
    "valid/model_training__registered.json",
    "valid/incident__resolved_caused_by_deploy.json",
    "valid/feedback__csat_with_comment.json",
]

# The corpus' occurred_at values lie within a few days before NOW, so the decoder's time-window
# rules (worker-side, not in the schema) never fire for it.
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
TIME_RULES = frozenset({Reason.OCCURRED_IN_FUTURE, Reason.OCCURRED_TOO_OLD})
MAX_DOUBLE = 1.7976931348623157e308

TYPE_SCHEMAS = {t: f"{t}.v1.json" for t in contract.EVENT_TYPES}  # the version-1 schema per type
BODIES: dict[str, type[msgspec.Struct]] = {
    "api_call": contract.ApiCall,
    "deploy": contract.Deploy,
    "model_training": contract.ModelTraining,
    "incident": contract.Incident,
    "feedback": contract.Feedback,
}

# The patterns every timestamp and UUID field of the schemas uses (the structure test checks
# that), and msgspec decoders for the same types, to compare them string by string.
_DEFS = load_registry().contents(BASE_URI + "envelope.v1.json")["$defs"]
TIME_PATTERN = re.compile(_DEFS["utcTime"]["pattern"])
UUID_PATTERN = re.compile(_DEFS["uuid"]["pattern"])
MSGSPEC_TIME = msgspec.json.Decoder(contract.UtcTime)
MSGSPEC_UUID = msgspec.json.Decoder(uuid.UUID)


# ----------------------------------------------------------------------------- judging a message


def parse(raw: bytes) -> Any:
    """Strict JSON as the worker reads it: UTF-8 without a BOM, no NaN or Infinity."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=no_constant)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8")


def decoder(now: datetime = NOW) -> BatchDecoder:
    return BatchDecoder(now=lambda: now)


DECODER = decoder()


@dataclass
class Verdicts:
    """What the JSON Schema (message.json) and the msgspec decoder say about one message."""

    raw: bytes
    schema_errors: list[str]
    batch: DecodedBatch

    @property
    def schema_ok(self) -> bool:
        return not self.schema_errors

    @property
    def decoder_ok(self) -> bool:
        """Every event accepted, or rejected only by clock rules the schema cannot express."""
        return all(r.reason in TIME_RULES for r in self.batch.rejections)

    @property
    def reasons(self) -> set[Reason]:
        return {r.reason for r in self.batch.rejections}

    def explain(self) -> str:
        text = self.raw.decode("utf-8", "replace")
        rejections = [f"  [{r.index}] {r.reason.value}: {r.detail}" for r in self.batch.rejections]
        return "\n".join(
            [
                f"message: {text if len(text) < 4000 else text[:4000] + '...'}",
                f"JSON Schema: {'valid' if self.schema_ok else 'invalid'}",
                *(f"  {e}" for e in self.schema_errors),
                f"decoder: {len(self.batch.events)} accepted, "
                f"{len(self.batch.rejections)} rejected",
                *rejections,
            ]
        )


def judge(raw: bytes, dec: BatchDecoder = DECODER) -> Verdicts:
    try:
        schema_errors = errors(parse(raw))
    except ValueError as exc:  # includes UnicodeDecodeError and json.JSONDecodeError
        schema_errors = [f"$: not JSON: {exc}"]
    batch = dec.decode([SourceMessage("t", 0, 0, raw)])
    return Verdicts(raw, schema_errors, batch)


def events_in(doc: Any) -> int:
    """How many events the decoder must account for: a non-empty array's items, else one."""
    return len(doc) if isinstance(doc, list) and doc else 1


# ----------------------------------------------------------------------------- the schema files


def schema_files() -> list[Path]:
    return sorted(SCHEMA_DIR.glob("*.json"))


def test_schema_folder_has_every_file() -> None:
    names = {p.name for p in schema_files()}
    assert names == {"envelope.v1.json", "event.json", "message.json", *TYPE_SCHEMAS.values()}
    for event_type, versions in contract.SUPPORTED_VERSIONS.items():
        for version in versions:
            assert f"{event_type}.v{version}.json" in names, "a schema per supported version"


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_schema_file_is_valid_draft_2020_12(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == BASE_URI + path.name
    assert schema.get("description"), "every schema explains itself"
    for where, node in walk_schema(schema):
        assert node.get("additionalProperties", True) is not False, (
            f"{path.name} {where}: unknown fields must stay allowed (forward compatibility)"
        )
        for ref in [node["$ref"]] if isinstance(node.get("$ref"), str) else []:
            assert not ref.startswith("http"), f"{path.name} {where}: use relative $refs"
        assert not isinstance(node.get("format"), str), (
            f"{path.name} {where}: no `format` (standard date-time and uuid are stricter than the "
            "decoder, and annotation-only by default): describe the value with an exact pattern"
        )


def walk_schema(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk_schema(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_schema(value, f"{where}/{i}")


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_every_field_has_a_description(path: Path) -> None:
    registry = load_registry()
    schema = json.loads(path.read_text(encoding="utf-8"))
    resolver = registry.resolver(base_uri=schema["$id"])
    for where, node in walk_schema(schema):
        if "/if" in where or "/anyOf" in where:  # dispatch conditions and attribution branches
            continue
        for name, prop in node.get("properties", {}).items():
            if not isinstance(prop, dict):
                continue
            resolved, _ = resolve(prop, resolver)
            assert resolved.get("description"), f"{path.name} {where}: {name} needs a description"


def resolve(schema: dict[str, Any], resolver: Any) -> tuple[dict[str, Any], Any]:
    """`schema` with its `$ref` chain merged in (keywords next to a `$ref` win)."""
    merged: dict[str, Any] = {}
    while "$ref" in schema:
        merged = {**{k: v for k, v in schema.items() if k != "$ref"}, **merged}
        looked = resolver.lookup(schema["$ref"])
        schema, resolver = looked.contents, looked.resolver
    return {**schema, **merged}, resolver


# ----------------------------------------------------------------------------- structure


def declared_types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def assert_same_type(t: mi.Type, schema: dict[str, Any], resolver: Any, where: str) -> None:
    """The JSON Schema `schema` accepts exactly the values the msgspec type `t` accepts."""
    schema, resolver = resolve(schema, resolver)
    null: set[str] = set()
    if isinstance(t, mi.UnionType):
        others = [x for x in t.types if not isinstance(x, mi.NoneType)]
        assert len(others) == 1, f"{where}: only `X | None` unions are expected"
        null = {"null"} if len(others) < len(t.types) else set()
        t = others[0]
    if isinstance(t, mi.StrType):
        assert declared_types(schema) == {"string"} | null, where
        assert schema.get("minLength", 0) == (t.min_length or 0), f"{where}: minLength"
        assert schema.get("maxLength") == t.max_length, f"{where}: maxLength"
        assert schema.get("pattern") == t.pattern, f"{where}: pattern"
    elif isinstance(t, mi.IntType):
        assert declared_types(schema) == {"integer"} | null, where
        assert (t.gt, t.lt, t.multiple_of) == (None, None, None), f"{where}: unexpected bound"
        assert schema.get("minimum") == t.ge, f"{where}: minimum"
        assert schema.get("maximum") == t.le, f"{where}: maximum"
    elif isinstance(t, mi.FloatType):
        assert declared_types(schema) == {"number"} | null, where
        assert (t.gt, t.lt, t.multiple_of) == (None, None, None), f"{where}: unexpected bound"
        # msgspec only takes finite doubles ("Number out of range" otherwise).
        assert schema.get("minimum") == (-MAX_DOUBLE if t.ge is None else t.ge), where
        assert schema.get("maximum") == (MAX_DOUBLE if t.le is None else t.le), where
    elif isinstance(t, mi.LiteralType):
        assert not null, f"{where}: nullable enums are not expected"
        assert set(schema["enum"]) == set(t.values), f"{where}: enum"
    elif isinstance(t, mi.DateTimeType):
        # test_timestamp_rule_* prove that TIME_PATTERN accepts what msgspec accepts for it.
        assert t.tz is True, f"{where}: timestamps must carry an offset"
        assert declared_types(schema) == {"string"} | null, where
        assert schema.get("pattern") == TIME_PATTERN.pattern, f"{where}: the utcTime pattern"
    elif isinstance(t, mi.UUIDType):
        # test_uuid_rule_* prove that UUID_PATTERN accepts what msgspec accepts for it.
        assert declared_types(schema) == {"string"} | null, where
        assert schema.get("pattern") == UUID_PATTERN.pattern, f"{where}: the uuid pattern"
    elif isinstance(t, mi.ListType):
        assert declared_types(schema) == {"array"} | null, where
        assert schema.get("minItems", 0) == (t.min_length or 0), where
        assert schema.get("maxItems") == t.max_length, where
        assert_same_type(t.item_type, schema["items"], resolver, f"{where}[]")
    elif isinstance(t, mi.StructType):
        assert declared_types(schema) == {"object"} | null, where
        assert_same_struct(t, schema, resolver, where)
    else:  # pragma: no cover - a new type in events.py needs a branch here
        raise AssertionError(f"{where}: no JSON Schema mapping for {t!r}")


def assert_same_struct(
    t: mi.StructType,
    schema: dict[str, Any],
    resolver: Any,
    where: str,
    skip: frozenset[str] = frozenset(),
) -> None:
    assert not t.forbid_unknown_fields, f"{where}: unknown fields must stay allowed"
    props = schema["properties"]
    fields = [f for f in t.fields if f.encode_name not in skip]
    assert set(props) - skip == {f.encode_name for f in fields}, f"{where}: field names"
    required = {f.encode_name for f in fields if f.required}
    assert set(schema.get("required", [])) - skip == required, f"{where}: required fields"
    for f in fields:
        prop, _ = resolve(props[f.encode_name], resolver)
        if "default" in prop:
            default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
            assert prop["default"] == default, f"{where}.{f.encode_name}: default"
        assert_same_type(f.type, props[f.encode_name], resolver, f"{where}.{f.encode_name}")


@pytest.mark.parametrize("event_type", contract.EVENT_TYPES)
def test_schema_matches_msgspec_struct(event_type: str) -> None:
    registry = load_registry()
    name = TYPE_SCHEMAS[event_type]
    schema = registry.contents(BASE_URI + name)
    resolver = registry.resolver(base_uri=BASE_URI + name)
    info = mi.type_info(contract.EVENT_CLASSES[event_type])
    assert isinstance(info, mi.StructType)
    assert (info.tag_field, info.tag) == ("event_type", event_type)

    # the type file pins event_type, schema_version and data ...
    assert schema["properties"]["event_type"]["const"] == event_type
    version = schema["properties"]["schema_version"]["const"]
    assert name == f"{event_type}.v{version}.json"
    assert version in contract.SUPPORTED_VERSIONS[event_type]
    data = next(f for f in info.fields if f.name == "data")
    assert isinstance(data.type, mi.StructType) and data.type.cls is BODIES[event_type]
    assert_same_type(data.type, schema["properties"]["data"], resolver, f"{name}:$.data")

    # ... and takes everything else from the envelope, which must match the struct's fields.
    envelope, env_resolver = resolve(schema["allOf"][0], resolver)
    assert envelope["$id"] == BASE_URI + "envelope.v1.json"
    skip = frozenset({"data", "event_type"})  # the body, and the tag: not fields of the struct
    assert_same_struct(info, envelope, env_resolver, "envelope.v1.json:$", skip)
    assert {"event_type", "data"} <= set(envelope["required"])
    assert declared_types(envelope["properties"]["data"]) == {"object"}


def test_dispatch_covers_every_type_and_version() -> None:
    event_schema = load_registry().contents(BASE_URI + "event.json")
    assert event_schema["properties"]["event_type"]["enum"] == list(contract.EVENT_TYPES)
    dispatch = {
        rule["if"]["properties"]["event_type"]["const"]: rule["then"]["$ref"]
        for rule in event_schema["allOf"]
    }
    assert dispatch == TYPE_SCHEMAS


# ----------------------------------------------------------------------------- the corpus


def corpus() -> list[Path]:
    return sorted(EXAMPLES.glob("*/*.json"))


def expected_reason(path: Path) -> Reason:
    return Reason(path.name.split("__", 1)[0])


@pytest.mark.parametrize("path", corpus(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_corpus_example(path: Path) -> None:
    raw = path.read_bytes()
    verdicts = judge(raw)
    doc = parse(raw)
    assert verdicts.batch.consumed == events_in(doc), "every event is accepted or rejected"
    if path.parent.name == "valid":
        assert verdicts.schema_ok, f"the schema rejects a valid example\n{verdicts.explain()}"
        assert not verdicts.batch.rejections, f"the decoder rejects it\n{verdicts.explain()}"
    else:
        assert path.parent.name == "invalid"
        assert not verdicts.schema_ok, (
            f"the schema accepts an invalid example\n{verdicts.explain()}"
        )
        assert verdicts.batch.rejections, f"the decoder accepts it\n{verdicts.explain()}"
        assert verdicts.reasons == {expected_reason(path)}, verdicts.explain()


def test_corpus_is_complete() -> None:
    valid = sorted((EXAMPLES / "valid").glob("*.json"))
    invalid = sorted((EXAMPLES / "invalid").glob("*.json"))
    assert {p.parent.name for p in corpus()} == {"valid", "invalid"}
    for path in corpus():
        assert re.fullmatch(r"[a-z0-9_]+__[a-z0-9_]+\.json", path.name), f"name: {path.name}"

    single = [parse(p.read_bytes()) for p in valid]
    events = [e for doc in single for e in (doc if isinstance(doc, list) else [doc])]
    singles = {d["event_type"] for d in single if isinstance(d, dict)}
    assert singles == set(contract.EVENT_TYPES), "a single-event valid example per type"
    assert any(isinstance(d, list) and len(d) > 1 for d in single), "a valid batch"
    assert any(isinstance(d, list) and len(d) == 1 for d in single), "a one-event batch"

    # every optional field is both present and absent somewhere in the valid corpus
    def objects(kind: type[msgspec.Struct]) -> list[dict[str, Any]]:
        if kind is contract.Envelope:
            return events
        if kind is contract.BusinessOutcome:
            return [
                e["data"]["outcome"] for e in events if isinstance(e["data"].get("outcome"), dict)
            ]
        return [e["data"] for e in events if BODIES[e["event_type"]] is kind]

    kinds: list[type[msgspec.Struct]] = [contract.Envelope, contract.BusinessOutcome]
    for kind in [*kinds, *BODIES.values()]:
        for f in msgspec.structs.fields(kind):
            if not f.required:
                seen = [f.encode_name in obj for obj in objects(kind)]
                assert any(seen) and not all(seen), f"{kind.__name__}.{f.name} present and absent"
    extra = {"trace_id", "pipeline_run"}  # unknown fields, accepted for forward compatibility
    assert extra <= {k for e in events for k in e}

    reasons = {expected_reason(p) for p in invalid}
    not_in_corpus = {Reason.NOT_JSON, Reason.TOO_LARGE, Reason.INTERNAL_ERROR, *TIME_RULES}
    assert reasons == set(Reason) - not_in_corpus


def test_time_window_rules_are_worker_side() -> None:
    """The schema cannot know the clock: the decoder alone rejects too old / future events."""
    raw = (EXAMPLES / "valid" / "api_call__gateway.json").read_bytes()
    for now, reason in [
        (NOW + timedelta(days=30), Reason.OCCURRED_TOO_OLD),
        (NOW - timedelta(days=2), Reason.OCCURRED_IN_FUTURE),
    ]:
        verdicts = judge(raw, decoder(now))
        assert verdicts.schema_ok
        assert verdicts.reasons == {reason}


def test_errors_name_the_path() -> None:
    api = parse((EXAMPLES / "valid" / "api_call__gateway.json").read_bytes())
    bad = copy.deepcopy(api)
    bad["data"]["status_code"] = 600
    del bad["team"], bad["service"]
    found = errors([api, bad])
    assert "$[1].data.status_code: 600 is greater than the maximum of 599" in found
    assert any(e.startswith("$[1]: missing attribution") for e in found), found
    assert errors(api) == []
    assert errors([]) == ["$: [] should be non-empty"]
    assert errors(api["data"], name=TYPE_SCHEMAS["api_call"]) != []  # a body is no event
    assert errors(api, name="event.json") == []


def msgspec_accepts(decoder: msgspec.json.Decoder[Any], text: str) -> bool:
    try:
        decoder.decode(msgspec.json.encode(text))
    except msgspec.ValidationError:
        return False
    return True


def assert_timestamp_rules_agree(text: str) -> bool:
    """msgspec, the schemas' utcTime pattern and `is_rfc3339` agree on `text`; their verdict."""
    verdict = msgspec_accepts(MSGSPEC_TIME, text)
    assert (TIME_PATTERN.search(text) is not None) is verdict, f"pattern vs msgspec: {text!r}"
    assert is_rfc3339(text) is verdict, f"is_rfc3339 vs msgspec: {text!r}"
    return verdict


def assert_uuid_rules_agree(text: str) -> bool:
    """msgspec and the schemas' uuid pattern agree on `text`; their verdict."""
    verdict = msgspec_accepts(MSGSPEC_UUID, text)
    assert (UUID_PATTERN.search(text) is not None) is verdict, f"pattern vs msgspec: {text!r}"
    return verdict


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2025-06-01T09:30:12Z", True),
        ("2025-06-01t09:30:12.123456789z", True),
        ("2025-06-01T09:30:12-05:30", True),
        ("2025-06-01T09:30:12-00:00", True),
        ("2025-06-01T09:30:12+23:59", True),
        ("2024-02-29T00:00:00Z", True),
        ("2000-02-29T00:00:00Z", True),
        ("0001-01-01T00:00:00Z", True),
        ("2025-06-01 09:30:12Z", True),  # a space instead of T
        ("2025-06-01T09:30:12+0530", True),  # an offset without a colon
        ("2025-06-01 09:30:12.5-0000", True),
        ("2025-06-01T09:30:12." + "1" * 40 + "Z", True),  # rounded to microseconds
        ("9999-12-31T23:59:59.9999994Z", True),
        ("9999-12-31T23:59:59.9999995Z", False),  # rounds past the last datetime
        ("9999-12-31T23:59:59.9999995+01:00", False),
        ("2025-02-29T00:00:00Z", False),
        ("1900-02-29T00:00:00Z", False),
        ("2025-04-31T00:00:00Z", False),
        ("0000-01-01T00:00:00Z", False),
        ("2025-06-01T09:30:12", False),
        ("2025-06-01 09:30:12", False),
        ("2025-06-01", False),
        ("2025-06-01T09:30Z", False),
        ("2025-06-01T09:30:12.Z", False),
        ("2025-06-01T09:30:12,5Z", False),
        ("2025-06-01T09:30:12+05", False),
        ("2025-06-01T09:30:12+5:00", False),
        ("2025-06-01T09:30:12+24:00", False),
        ("2025-06-01T09:30:12+0560", False),
        ("2025-06-01T09:30:12 Z", False),
        ("2025-06-01T09:30:12UTC", False),
        ("2025-06-01_09:30:12Z", False),
        ("2025-06-01  09:30:12Z", False),
        ("2025-06-01\t09:30:12Z", False),
        ("2025-06-01T23:59:60Z", False),
        ("2025-06-01T24:00:00Z", False),
        ("2025-06-01T09:30:12Z\n", False),
        (" 2025-06-01T09:30:12Z", False),
        ("٢٠٢٥-06-01T09:30:12Z", False),
    ],
)
def test_timestamp_rule_examples(text: str, ok: bool) -> None:
    assert assert_timestamp_rules_agree(text) is ok


def test_rfc3339_passes_non_strings() -> None:
    assert is_rfc3339(12) is True  # like `pattern`, it only constrains strings; `type` rejects


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a", True),
        ("3F2B8C1E-6D4A-4E8B-9A7C-1F0E2D3C4B5A", True),
        ("3f2b8c1e6d4a4e8b9a7c1f0e2d3c4b5a", True),  # 32 hex digits, no hyphens
        ("3F2B8C1E6D4A4E8B9A7C1F0E2D3C4B5A", True),
        ("{3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a}", False),
        ("urn:uuid:3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a", False),
        ("3f2b8c1e-6d4a4e8b-9a7c-1f0e2d3c4b5a", False),
        ("3f2b8c1e-6d4a4e8b9a7c1f0e2d3c4b5a", False),
        ("3f2b8c1e6d4a4e8b9a7c1f0e2d3c4b5", False),
        ("3f2b8c1e6d4a4e8b9a7c1f0e2d3c4b5a\n", False),
        ("3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a\n", False),
        ("g" * 32, False),
    ],
)
def test_uuid_rule_examples(text: str, ok: bool) -> None:
    assert assert_uuid_rules_agree(text) is ok


def test_validator_is_cached_and_asserts_formats() -> None:
    assert validator() is validator("message.json")
    assert validator().format_checker.conforms("not-a-uuid", "uuid") is False
    assert DRAFT202012.id_of(validator().schema) == BASE_URI + "message.json"


# ----------------------------------------------------------------------------- the docs

DOC_EXAMPLE = re.compile(r"<!-- example: (?P<file>[^ ]+) -->\s*```json\n(?P<body>.*?)```", re.S)


def test_docs_examples_are_valid_corpus_files() -> None:
    text = DOCS.read_text(encoding="utf-8")
    examples = list(DOC_EXAMPLE.finditer(text))
    cloudevents = text.count("<!-- cloudevent: ")  # tests/unit/contract/test_cloudevents.py
    assert len(examples) + cloudevents == text.count("```json"), (
        "every JSON block names its corpus file"
    )
    shown = set()
    for match in examples:
        path = EXAMPLES / match["file"]
        assert path.parent.name == "valid" and path.is_file(), match["file"]
        body = match["body"].encode("utf-8")
        assert parse(body) == parse(path.read_bytes()), f"docs and {match['file']} differ"
        verdicts = judge(body)
        assert verdicts.schema_ok and verdicts.decoder_ok, verdicts.explain()
        doc = parse(body)
        shown |= {e["event_type"] for e in (doc if isinstance(doc, list) else [doc])}
    assert shown == set(contract.EVENT_TYPES), "a complete example per type"
    assert set(DOC_EXAMPLE_FILES) <= {m["file"] for m in examples}


def test_docs_name_every_reason_and_field() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for reason in Reason:
        assert f"`{reason.value}`" in text, f"docs/events.md must document {reason.value}"
    names = {f.encode_name for f in msgspec.structs.fields(contract.Envelope)}
    nested: list[type[msgspec.Struct]] = [contract.BusinessOutcome, contract.Commit]
    for body in [*BODIES.values(), *nested]:
        names |= {f.encode_name for f in msgspec.structs.fields(body)}
    for name in sorted(names | {"event_type", "data"}):
        assert f"| `{name}`" in text, f"docs/events.md has no table row for {name}"


# ----------------------------------------------------------------------------- lax spellings


def example(name: str) -> bytes:
    return (EXAMPLES / "valid" / f"{name}.json").read_bytes()


def replaced(name: str, old: str, new: str) -> bytes:
    raw = example(name)
    assert old.encode() in raw, old
    return raw.replace(old.encode(), new.encode(), 1)


# Spellings beyond the strict forms that msgspec accepts and the schemas now describe (they were
# the known disagreements): integral floats for integers (JSON Schema counts 201.0 and 2.01e2 as
# integers; the decoder rewrites them on its slow path), UUIDs as 32 hex digits without hyphens,
# and timestamps with a space instead of T or an offset without a colon.
LAX_SPELLINGS = [
    pytest.param(
        replaced("api_call__gateway", '"status_code": 201', '"status_code": 201.0'),
        id="status_code_201.0",
    ),
    pytest.param(
        replaced("api_call__gateway", '"status_code": 201', '"status_code": 2.01e2'),
        id="status_code_2.01e2",
    ),
    pytest.param(
        replaced("deploy__production_with_commits", '"schema_version": 1', '"schema_version": 1.0'),
        id="schema_version_1.0",
    ),
    pytest.param(
        replaced(
            "api_call__gateway",
            "3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a",
            "3f2b8c1e6d4a4e8b9a7c1f0e2d3c4b5a",
        ),
        id="event_id_without_hyphens",
    ),
    pytest.param(
        replaced("api_call__gateway", "2025-06-01T09:30:12.481Z", "2025-06-01 09:30:12.481Z"),
        id="occurred_at_space_separator",
    ),
    pytest.param(
        replaced("api_call__risk_decision_outcome", "+02:00", "+0200"),
        id="occurred_at_offset_without_colon",
    ),
    pytest.param(
        replaced(
            "deploy__production_with_commits",
            "2025-06-01T08:47:53+01:00",
            "2025-06-01T08:47:53+0100",
        ),
        id="committed_at_offset_without_colon",
    ),
]


@pytest.mark.parametrize("raw", LAX_SPELLINGS)
def test_lax_spelling_is_valid_for_both(raw: bytes) -> None:
    verdicts = judge(raw)
    assert verdicts.schema_ok, verdicts.explain()
    assert verdicts.batch.events and not verdicts.batch.rejections, verdicts.explain()


NEAR_MISSES = [
    pytest.param(
        replaced("api_call__gateway", '"status_code": 201', '"status_code": 201.5'),
        id="status_code_201.5",
    ),
    pytest.param(
        replaced("api_call__gateway", '"status_code": 201', '"status_code": 599.0000001'),
        id="status_code_599.0000001",
    ),
    pytest.param(
        replaced("api_call__gateway", '"status_code": 201', '"status_code": 6e2'),
        id="status_code_6e2",
    ),
    pytest.param(
        replaced("deploy__production_with_commits", '"schema_version": 1', '"schema_version": 1.5'),
        id="schema_version_1.5",
    ),
    pytest.param(
        replaced(
            "api_call__gateway",
            "3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a",
            "3f2b8c1e6d4a-4e8b-9a7c-1f0e2d3c4b5a",
        ),
        id="event_id_some_hyphens",
    ),
    pytest.param(
        replaced("api_call__gateway", "2025-06-01T09:30:12.481Z", "2025-06-01 09:30:12.481"),
        id="occurred_at_space_separator_naive",
    ),
    pytest.param(
        replaced("api_call__risk_decision_outcome", "+02:00", "+02"),
        id="occurred_at_offset_hours_only",
    ),
    pytest.param(
        replaced("api_call__risk_decision_outcome", "+02:00", "+0260"),
        id="occurred_at_offset_0260",
    ),
]


@pytest.mark.parametrize("raw", NEAR_MISSES)
def test_near_miss_is_rejected_by_both(raw: bytes) -> None:
    verdicts = judge(raw)
    assert not verdicts.schema_ok, verdicts.explain()
    assert verdicts.reasons == {Reason.SCHEMA_VIOLATION}, verdicts.explain()


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_number_beyond_double_range_is_a_schema_violation(number: str) -> None:
    raw = replaced("api_call__gateway", '"latency_ms": 23.7', f'"latency_ms": {number}')
    verdicts = judge(raw)  # the schema rejects it: inf is above the maximum
    assert not verdicts.schema_ok
    assert verdicts.reasons == {Reason.SCHEMA_VIOLATION}, verdicts.explain()


def test_sha_with_trailing_newline_is_rejected() -> None:
    raw = replaced("deploy__production_with_commits", '"e83c516"', '"e83c516\\n"')
    verdicts = judge(raw)
    assert not verdicts.schema_ok and not verdicts.decoder_ok, verdicts.explain()


# ----------------------------------------------------------------------------- hypothesis

DocPath = tuple[str | int, ...]
VALID_DOCS = [(p.stem, parse(p.read_bytes())) for p in sorted((EXAMPLES / "valid").glob("*.json"))]


def contract_fields() -> dict[str, list[mi.Type]]:
    """Every field name of the contract's structs -> the msgspec types it has (None dropped)."""
    found: dict[str, list[mi.Type]] = {}

    def leaves(t: mi.Type) -> list[mi.Type]:
        if isinstance(t, mi.UnionType):
            return [leaf for x in t.types for leaf in leaves(x)]
        return [] if isinstance(t, mi.NoneType) else [t]

    def visit(t: mi.Type) -> None:
        for leaf in leaves(t):
            if isinstance(leaf, mi.ListType):
                visit(leaf.item_type)
            elif isinstance(leaf, mi.StructType):
                for f in leaf.fields:
                    found.setdefault(f.encode_name, []).extend(leaves(f.type))
                    visit(f.type)

    for cls in contract.EVENT_CLASSES.values():
        visit(mi.type_info(cls))
    return found


FIELDS = contract_fields()
TIME_FIELDS = {k for k, ts in FIELDS.items() if any(isinstance(t, mi.DateTimeType) for t in ts)}
ENUM_VALUES = sorted(
    {*contract.EVENT_TYPES}
    | {
        v
        for ts in FIELDS.values()
        for t in ts
        if isinstance(t, mi.LiteralType)
        for v in t.values
        if isinstance(v, str)
    }
)
NEAR_ENUMS = sorted(
    {*ENUM_VALUES, *(v.upper() for v in ENUM_VALUES), *(f"{v} " for v in ENUM_VALUES)}
    | {"", "sev0", "sev5", "success", "closed", "api-call", "ApiCall", "foo"}
)
GENERIC_NUMBERS = [-1, -0.5, -0.0, 0, 0.5, 1, 1.0, 2**63, 2**64, -(2**63), MAX_DOUBLE, -MAX_DOUBLE]


def number_edges(key: object) -> list[int | float]:
    """Values at and just beyond the bounds msgspec sets for field `key` (integral floats too)."""
    edges: list[int | float] = []
    for t in FIELDS.get(str(key), []):
        if isinstance(t, mi.IntType | mi.FloatType):
            for bound in (t.ge, t.le):
                if bound is not None:
                    edges += [bound - 1, bound - 0.5, bound, bound + 0.5, bound + 1, float(bound)]
    return edges or GENERIC_NUMBERS


def string_edges(key: object) -> list[str]:
    """Strings at and just beyond the lengths and pattern msgspec sets for field `key`."""
    edges = ["", " ", "\n"]
    for t in FIELDS.get(str(key), []):
        if isinstance(t, mi.StrType):
            for n in {t.min_length or 0, t.max_length or 0} - {0}:
                edges += ["a" * (n - 1), "a" * n, "a" * (n + 1), "é" * n, "\U0001f600" * (n + 1)]
            if t.pattern:
                edges += ["abcdef0123", "ABCDEF0123", "abcdefg123", "0x1234567", " 1234567"]
    return edges


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def kind_of(value: Any) -> str:
    """The JSON type of a parsed value: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array" if isinstance(value, list) else "object"


OF_KIND: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "number": st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False),
    "string": st.text(max_size=30),
    "array": st.lists(json_values, max_size=3),
    "object": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
}


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 timestamps and near misses: syntax variants, impossible dates, odd offsets."""
    if draw(st.booleans()):
        at = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
        sep = draw(st.sampled_from(["T", "t", " ", "_", ""]))
        frac = draw(
            st.sampled_from(
                ["", ".", ".5", ".123", ".123456", ".1234567891", ",5", ".9999994", ".9999995"]
            )
        )
        zone = draw(
            st.sampled_from(
                [
                    *("Z", "z", "", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59", "+24:00"),
                    *("+0200", "-0000", "+02", "+2:00", " Z", "UTC", "+05:60"),
                ]
            )
        )
        date, time = f"{at.year:04d}-{at.month:02d}-{at.day:02d}", at.strftime("%H:%M:%S")
        if draw(st.booleans()):  # mostly keep it inside the decoder's time window
            date = draw(st.sampled_from(["2025-05-31", "2025-06-01", "2025-06-02"]))
        elif draw(st.integers(0, 9)) == 0:  # the last second, where rounding overflows
            date, time = "9999-12-31", "23:59:59"
        return f"{date}{sep}{time}{frac}{zone}"
    y, mo, d = draw(st.integers(0, 10000)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    h, mi_, s = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi_:02d}:{s:02d}Z"


uuid_like = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: u.hex.upper()),
    st.uuids().map(lambda u: f"{u.hex}\n"),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.uuids().map(lambda u: str(u)[:-1]),
    st.uuids().map(lambda u: f" {u}"),
    st.uuids().map(lambda u: f"{u}\n"),
    st.text(alphabet="0123456789abcdefABCDEF-", min_size=30, max_size=38),
)


def paths(doc: Any, path: DocPath = ()) -> Iterator[tuple[DocPath, Any]]:
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from paths(value, (*path, i))


def get(doc: Any, path: DocPath) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@dataclass
class Mutation:
    """A valid corpus example and what was done to it; the repr shows the resulting JSON."""

    example: str
    steps: list[str] = field(default_factory=list)
    doc: Any = None

    def __repr__(self) -> str:
        return (
            f"Mutation(example={self.example!r}, steps={self.steps!r},\n"
            f"  doc={json.dumps(self.doc, ensure_ascii=False)})"
        )


def operations(path: DocPath, value: Any) -> list[str]:
    """The mutations that make sense for `value` at `path`; repeats weigh the targeted ones."""
    key = path[-1] if path else None
    ops = ["retype"] + (["drop"] if path else [])
    if kind_of(value) == "number":
        ops += ["number"] * 4
    elif isinstance(value, str):
        ops += ["string"] * 2
        ops += ["time"] * 4 if key in TIME_FIELDS else []
        ops += ["uuid"] * 4 if key == "event_id" else []
        ops += ["enum"] * 4 if value in ENUM_VALUES else []
    elif isinstance(value, dict):
        ops += ["extra"] * 2 + (["attribution"] * 3 if "event_type" in value else [])
    elif isinstance(value, list):
        ops += ["duplicate", "empty"] if value else []
    return ops


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    """Mutate a valid example 1-3 times: drop a field, change a value's type, put numbers and
    strings at and beyond their bounds, garble enums, timestamps and UUIDs, add unknown fields,
    remove attribution, duplicate or empty lists."""
    name, original = draw(st.sampled_from(VALID_DOCS))
    mutation = Mutation(name, doc=copy.deepcopy(original))
    for _ in range(draw(st.integers(1, 3))):
        path, value = draw(st.sampled_from(list(paths(mutation.doc))))
        key = path[-1] if path else None
        op = draw(st.sampled_from(operations(path, value)))
        new: Any = value
        if op == "drop":
            del get(mutation.doc, path[:-1])[key]
        elif op == "retype":
            new = draw(OF_KIND[draw(st.sampled_from(sorted(set(OF_KIND) - {kind_of(value)})))])
        elif op == "number":
            edges = st.sampled_from(number_edges(key))
            new = draw(edges | edges | st.sampled_from(GENERIC_NUMBERS) | OF_KIND["number"])
        elif op == "string":
            edges = st.sampled_from(string_edges(key))
            new = draw(edges | edges | st.sampled_from(NEAR_ENUMS) | st.text(max_size=40))
        elif op == "time":
            new = draw(timestamps())
        elif op == "uuid":
            new = draw(uuid_like)
        elif op == "enum":
            new = draw(st.sampled_from(NEAR_ENUMS) | st.text(max_size=12))
        elif op == "extra":
            value["x-" + draw(st.text(max_size=8))] = draw(json_values)
        elif op == "attribution":
            for field_name in ("team", "service"):
                choice = draw(st.sampled_from(["absent", None, "", " ", "payments"]))
                if choice == "absent":
                    value.pop(field_name, None)
                else:
                    value[field_name] = choice
        elif op == "duplicate":
            value.append(copy.deepcopy(draw(st.sampled_from(value))))
        elif op == "empty":
            value.clear()
        if new is not value:
            if path:
                get(mutation.doc, path[:-1])[key] = new
            else:
                mutation.doc = new
        shown = "$" + "".join(f"[{k!r}]" for k in path)
        mutation.steps.append(f"{op} {shown}" + (f" = {new!r:.80}" if new is not value else ""))
    return mutation


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutations())
def test_schema_and_decoder_agree_on_mutated_examples(mutation: Mutation) -> None:
    raw = dumps(mutation.doc)
    note(f"raw message: {raw.decode('utf-8')}")
    verdicts = judge(raw)
    assert verdicts.batch.consumed == events_in(mutation.doc), verdicts.explain()
    if verdicts.schema_ok != verdicts.decoder_ok:
        pytest.fail(
            f"JSON Schema and decoder disagree on {mutation.example} after {mutation.steps}\n"
            f"{verdicts.explain()}"
        )
    event("both accept" if verdicts.schema_ok else "both reject")


@st.composite
def garbled(draw: st.DrawFn, text: st.SearchStrategy[str], alphabet: str) -> str:
    """`text`, then 0-3 characters replaced, inserted or deleted at random places."""
    chars = list(draw(text))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(chars)))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        if op == "insert" or (op == "replace" and at == len(chars)):
            chars.insert(at, draw(st.sampled_from(alphabet)))
        elif op == "replace":
            chars[at] = draw(st.sampled_from(alphabet))
        elif at < len(chars):
            del chars[at]
    return "".join(chars)


@settings(max_examples=3000, deadline=None, database=None)
@given(garbled(timestamps(), "0123456789TtZz +-:._,\n\u00a0\u0660"))
def test_timestamp_rule_agrees_with_msgspec(text: str) -> None:
    """The utcTime pattern and `is_rfc3339` accept exactly the timestamps msgspec accepts."""
    event("accepted" if assert_timestamp_rules_agree(text) else "rejected")


@settings(max_examples=2000, deadline=None, database=None)
@given(garbled(uuid_like, "0123456789abcdefABCDEF-{}:ug \n\u0660"))
def test_uuid_rule_agrees_with_msgspec(text: str) -> None:
    """The uuid pattern accepts exactly the UUID spellings msgspec accepts."""
    event("accepted" if assert_uuid_rules_agree(text) else "rejected")


# ----------------------------------------------------------------------------- exhaustive sweep

KIND_SAMPLES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "number": 1.5,
    "string": "x",
    "array": [],
    "object": {},
}
TIME_SAMPLES = [
    "2025-06-01T09:30:12Z",
    "2025-06-01t09:30:12.5z",
    "2025-06-01T11:30:12.123456789+02:00",
    "2025-06-01T09:30:12-00:00",
    "2025-06-01T09:30:12",
    "2025-06-01 09:30:12Z",
    "2025-06-01T11:30:12+0200",
    "2025-06-01T11:30:12+02",
    "2025-06-01T09:30:12.Z",
    "2025-06-01T09:30:12,5Z",
    "2025-06-01T09:30Z",
    "2025-06-01",
    "2025-02-29T09:30:12Z",
    "2024-02-29T09:30:12Z",
    "2025-04-31T09:30:12Z",
    "2025-06-01T24:00:00Z",
    "2025-05-31T23:59:60Z",
    "2025-06-01T09:30:12+24:00",
    "2025-06-01T09:30:12+05:60",
    "2025-06-01T11:30:12+0560",
    "2025-06-01 09:30:12.5-0000",
    "2025-06-01 09:30:12",
    "9999-12-31T23:59:59.9999994Z",
    "9999-12-31T23:59:59.9999995Z",
    "1900-02-29T09:30:12Z",
    "2000-02-29T09:30:12Z",
    "0000-06-01T09:30:12Z",
    "2025-06-01T09:30:12 UTC",
    "Sun, 01 Jun 2025 09:30:12 GMT",
]
UUID_SAMPLES = [
    "3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a",
    "3F2B8C1E-6D4A-4E8B-9A7C-1F0E2D3C4B5A",
    "00000000-0000-0000-0000-000000000000",
    "3f2b8c1e6d4a4e8b9a7c1f0e2d3c4b5a",
    "3F2B8C1E6D4A4E8B9A7C1F0E2D3C4B5A",
    "3f2b8c1e6d4a4e8b9a7c1f0e2d3c4b5a\n",
    "3f2b8c1e6d4a-4e8b-9a7c-1f0e2d3c4b5a",
    "{3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a}",
    "urn:uuid:3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a",
    "3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5",
    "3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a0",
    "3f2b8c1e-6d4a4e8b-9a7c-1f0e2d3c4b5a",
    "3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a\n",
    "g f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a",
]
ATTRIBUTION = ["absent", None, "", " ", "payments"]


def single_mutations(doc: Any) -> Iterator[tuple[str, Any]]:
    """Every one-step mutation of `doc` the sweep tries: (what was done, mutated document)."""

    def at(path: DocPath, value: Any) -> Any:
        if not path:
            return value
        copied = copy.deepcopy(doc)
        get(copied, path[:-1])[path[-1]] = value
        return copied

    for path, value in paths(doc):
        key, shown = (path[-1] if path else None), "$" + "".join(f"[{k!r}]" for k in path)
        if path:
            dropped = copy.deepcopy(doc)
            del get(dropped, path[:-1])[path[-1]]
            yield f"drop {shown}", dropped
        for kind, sample in KIND_SAMPLES.items():
            if kind != kind_of(value):
                yield f"{shown} = {sample!r}", at(path, sample)
        candidates: list[Any] = []
        if kind_of(value) == "number":
            candidates += number_edges(key)
        elif isinstance(value, str):
            candidates += string_edges(key)
            candidates += TIME_SAMPLES if key in TIME_FIELDS else []
            candidates += UUID_SAMPLES if key == "event_id" else []
            candidates += NEAR_ENUMS if value in ENUM_VALUES else []
        elif isinstance(value, dict) and "event_type" in value:
            for team in ATTRIBUTION:
                for service in ATTRIBUTION:
                    changed = {k: v for k, v in value.items() if k not in ("team", "service")}
                    changed |= {"team": team} if team != "absent" else {}
                    changed |= {"service": service} if service != "absent" else {}
                    yield f"{shown} team={team!r} service={service!r}", at(path, changed)
        for candidate in candidates:
            yield f"{shown} = {candidate!r:.60}", at(path, candidate)


@pytest.mark.parametrize("name", DOC_EXAMPLE_FILES)
def test_schema_and_decoder_agree_on_every_single_mutation(name: str) -> None:
    """Deterministic complement of the hypothesis test: every field of the documented examples
    dropped, retyped, and set to every bound-edge, timestamp, UUID and enum sample."""
    doc = parse((EXAMPLES / name).read_bytes())
    disagreements, tried = [], 0
    for what, mutated in single_mutations(doc):
        tried += 1
        verdicts = judge(dumps(mutated))
        if verdicts.schema_ok != verdicts.decoder_ok:
            disagreements.append(f"--- {what}\n{verdicts.explain()}")
    assert tried > 100
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements)
