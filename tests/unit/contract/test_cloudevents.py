"""CloudEvents 1.0 into the event contract (pipeline/contract/cloudevents.py, docs/events.md).

The bytes and headers come from the CloudEvents SDK's own serializers wherever it can make them
(its new `cloudevents.core` bindings for Kafka and HTTP, and the legacy `cloudevents.v1` API),
so the decoder is checked against what real CloudEvents producers send, not only against
JSON written here. Invalid CloudEvents the SDK refuses to build are edited after serializing.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from pipeline.contract import cloudevents
from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.contract.events import EVENT_CLASSES, ApiCallEvent, DeployEvent
from pipeline.contract.reasons import Reason
from tests.conftest import REPO

EXAMPLES = Path(__file__).resolve().parent / "examples"
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # the example corpus lies a few days before it
GATEWAY = json.loads((EXAMPLES / "valid" / "api_call__gateway.json").read_text())
DEPLOY = json.loads((EXAMPLES / "valid" / "deploy__production_with_commits.json").read_text())


def decode(*messages: bytes | tuple[bytes, Any], now: datetime = NOW) -> DecodedBatch:
    """Decode values (or (value, headers) pairs) as messages at offsets 0, 1, ..."""
    source = []
    for offset, message in enumerate(messages):
        value, headers = message if isinstance(message, tuple) else (message, None)
        source.append(SourceMessage("uptake.events", 2, offset, value, headers))
    batch = BatchDecoder(now=lambda: now).decode(source)
    assert batch.consumed == len(batch.events) + len(batch.rejections)
    return batch


def attributes_and_data(native: dict[str, Any], ce_type: str | None = None) -> tuple[dict, dict]:
    """The CloudEvents attributes and data of a native event, by the documented mapping."""
    data = {k: v for k, v in native.items() if k not in cloudevents._CARRIED_BY}
    attributes = {
        "id": native["event_id"],
        "source": native["source"],
        "type": ce_type or f"dev.uptake.{native['event_type']}.v{int(native['schema_version'])}",
        "time": datetime.fromisoformat(native["occurred_at"]),
    }
    return attributes, data


def sdk_event(native: dict[str, Any], ce_type: str | None = None, **extra: Any) -> CloudEvent:
    attributes, data = attributes_and_data(native, ce_type)
    return CloudEvent({**attributes, **extra}, data)


def structured(native: dict[str, Any] = GATEWAY, **changes: Any) -> dict[str, Any]:
    """A structured CloudEvent (as a dict) serialized by the SDK, then edited: a change whose
    value is `...` removes the attribute."""
    event = json.loads(ce_kafka.to_structured_event(sdk_event(native)).value)
    for key, value in changes.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def rejection(batch: DecodedBatch) -> tuple[Reason, str]:
    assert not batch.events, batch.events
    [rejected] = batch.rejections
    return rejected.reason, rejected.detail


def native_event(native: dict[str, Any]) -> Any:
    batch = decode(msgspec.json.encode(native))
    [event] = batch.events
    return event


# --- the mapping, with the SDK's serializers -----------------------------------------------------


VALID = sorted((EXAMPLES / "valid").glob("*.json"))
SINGLE_VALID = [p for p in VALID if isinstance(json.loads(p.read_text()), dict)]


@pytest.mark.parametrize("path", SINGLE_VALID, ids=lambda p: p.stem)
def test_every_valid_example_as_a_cloudevent_is_the_same_event_in_every_mode(path: Path) -> None:
    native = json.loads(path.read_text())
    expected = native_event(native)
    event = sdk_event(native, subject="anything", traceparent="00-abc-def-01")
    kafka_structured = ce_kafka.to_structured_event(event)
    kafka_binary = ce_kafka.to_binary_event(event)
    http_structured = ce_http.to_structured_event(event)
    assert b"event_id" not in kafka_binary.value and "ce_id" in kafka_binary.headers
    batch = decode(
        (kafka_structured.value, kafka_structured.headers),
        (kafka_binary.value, kafka_binary.headers),
        (kafka_binary.value, list(kafka_binary.headers.items())),  # aiokafka/confluent shape
        http_structured.body,
    )
    assert batch.rejections == []
    assert batch.events == [expected] * 4
    assert batch.offsets == [0, 1, 2, 3]


def test_the_legacy_v1_sdk_api_produces_events_the_decoder_maps() -> None:
    from cloudevents.v1 import kafka as v1_kafka
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent as V1CloudEvent

    attributes, data = attributes_and_data(GATEWAY, ce_type="api_call")
    attributes["time"] = GATEWAY["occurred_at"]
    event = V1CloudEvent({**attributes, "datacontenttype": "application/json"}, data)
    _, structured_body = to_structured(event)
    http_headers, http_body = to_binary(event)
    kafka_binary = v1_kafka.to_binary(event)
    kafka_structured = v1_kafka.to_structured(event)
    assert "ce-id" in http_headers
    batch = decode(
        structured_body,
        (kafka_binary.value, kafka_binary.headers),
        kafka_structured.value,
        (http_body, [("ce_" + k[3:], v.encode()) for k, v in http_headers.items()]),
    )
    assert batch.rejections == []
    assert batch.events == [native_event(GATEWAY)] * 4


def test_the_json_batch_format_and_a_mix_with_native_events() -> None:
    events = [structured(GATEWAY), GATEWAY, structured(DEPLOY)]
    batch = decode(msgspec.json.encode(events))
    assert batch.rejections == []
    assert batch.events == [native_event(GATEWAY), native_event(GATEWAY), native_event(DEPLOY)]


def test_a_batch_keeps_each_rejected_cloudevents_own_bytes_and_index() -> None:
    bad = structured(GATEWAY, specversion="0.3")
    events = [structured(GATEWAY), bad, GATEWAY]
    value = msgspec.json.encode(events)
    batch = decode(value)
    assert len(batch.events) == 2 and batch.consumed == 3
    [rejected] = batch.rejections
    assert (rejected.reason, rejected.index, rejected.offset) == (Reason.UNSUPPORTED_VERSION, 1, 0)
    assert json.loads(rejected.raw) == bad


def test_extensions_subject_dataschema_and_datacontenttype_are_accepted() -> None:
    event = structured(
        subject="checkout-api",
        dataschema="https://uptake.dev/schemas/events/api_call.v1.json",
        datacontenttype="application/json; charset=utf-8",
        partitionkey="checkout",
        comexampleext="1",
    )
    batch = decode(msgspec.json.encode(event))
    assert batch.events == [native_event(GATEWAY)]


def test_data_base64_holding_json_is_read() -> None:
    event = structured()
    event["data_base64"] = base64.b64encode(msgspec.json.encode(event.pop("data"))).decode()
    assert decode(msgspec.json.encode(event)).events == [native_event(GATEWAY)]


def test_integral_floats_in_data_are_integers_as_for_native_events() -> None:
    value = msgspec.json.encode(structured())
    value = value.replace(b'"status_code":201', b'"status_code":2.01e2')
    assert b"2.01e2" in value
    [event_out] = decode(value).events
    assert isinstance(event_out, ApiCallEvent) and event_out.data.status_code == 201


# --- the type naming rule and schema_version -----------------------------------------------------


@pytest.mark.parametrize(
    ("ce_type", "version"),
    [
        ("api_call", 1),
        ("api_call.v1", 1),
        ("dev.uptake.api_call", 1),
        ("dev.uptake.api_call.v1", 1),
        ("dev.uptake.api_call.v7", 7),
        ("api_call.v0", 0),
    ],
)
def test_type_names_an_event_type_and_its_version(ce_type: str, version: int) -> None:
    assert cloudevents.parse_type(ce_type) == ("api_call", version)


@pytest.mark.parametrize(
    "ce_type",
    [
        "com.example.api_call",
        "dev.uptake.unknown",
        "API_CALL",
        "dev.uptake.api_call.v1.extra",
        "api_call.V1",
        "api_call.v",
        "api_call.v1\n",
        "dev.uptake.",
        "uptake.api_call",
        "dev.uptake.api_call.v1234567890",
    ],
)
def test_any_other_type_is_unknown_event_type(ce_type: str) -> None:
    assert cloudevents.parse_type(ce_type) is None
    reason, detail = rejection(decode(msgspec.json.encode(structured(type=ce_type))))
    assert reason is Reason.UNKNOWN_EVENT_TYPE
    assert repr(ce_type) in detail and detail.endswith("- at `$.type`")


def test_a_version_the_worker_does_not_know_is_unsupported_version() -> None:
    reason, detail = rejection(decode(msgspec.json.encode(structured(type="api_call.v2"))))
    assert reason is Reason.UNSUPPORTED_VERSION
    assert "schema_version 2 of api_call" in detail and detail.endswith("- at `$.type`")
    reason, detail = rejection(decode(msgspec.json.encode(structured(type="api_call.v0"))))
    assert reason is Reason.UNSUPPORTED_VERSION and detail.endswith("- at `$.type`")


def test_the_rejection_names_the_event_type_when_it_is_known() -> None:
    batch = decode(msgspec.json.encode(structured(DEPLOY, data={"capability": "x"})))
    assert [r.event_type for r in batch.rejections] == ["deploy"]


# --- every rejection -----------------------------------------------------------------------------


def _data_with(**changes: Any) -> dict[str, Any]:
    data = dict(structured()["data"])
    data.update(changes)
    return data


LATER = (NOW + timedelta(hours=1)).isoformat()
LONG_AGO = (NOW - timedelta(days=30)).isoformat()


@pytest.mark.parametrize(
    ("changes", "reason", "path", "words"),
    [
        ({"specversion": "0.3"}, Reason.UNSUPPORTED_VERSION, "$.specversion", "'0.3'"),
        ({"specversion": "1.1"}, Reason.UNSUPPORTED_VERSION, "$.specversion", "1.0"),
        ({"specversion": 1.0}, Reason.SCHEMA_VIOLATION, "$.specversion", '"1.0"'),
        ({"specversion": None}, Reason.SCHEMA_VIOLATION, "$.specversion", '"1.0"'),
        ({"id": ...}, Reason.SCHEMA_VIOLATION, "$.id", "`id` is required"),
        ({"id": ""}, Reason.SCHEMA_VIOLATION, "$.id", "`id` is required"),
        ({"id": 7}, Reason.SCHEMA_VIOLATION, "$.id", "`id` is required"),
        ({"id": "order-17"}, Reason.SCHEMA_VIOLATION, "$.id", "UUID"),
        ({"source": ...}, Reason.SCHEMA_VIOLATION, "$.source", "`source` is required"),
        ({"source": "x" * 201}, Reason.SCHEMA_VIOLATION, "$.source", "length"),
        ({"type": ...}, Reason.SCHEMA_VIOLATION, "$.type", "`type` is required"),
        ({"time": ...}, Reason.SCHEMA_VIOLATION, "$.time", "`time`"),
        ({"time": "2025-06-01T09:30:12"}, Reason.SCHEMA_VIOLATION, "$.time", "timezone"),
        ({"time": "yesterday"}, Reason.SCHEMA_VIOLATION, "$.time", "datetime"),
        ({"time": LATER}, Reason.OCCURRED_IN_FUTURE, "$.time", "time 2025-06-02T13"),
        ({"time": LONG_AGO}, Reason.OCCURRED_TOO_OLD, "$.time", "uptake backfill"),
        ({"datacontenttype": "text/plain"}, Reason.SCHEMA_VIOLATION, "$.datacontenttype", "JSON"),
        ({"datacontenttype": 5}, Reason.SCHEMA_VIOLATION, "$.datacontenttype", "JSON"),
        ({"data": ...}, Reason.SCHEMA_VIOLATION, "$.data", "no data"),
        ({"data": None}, Reason.SCHEMA_VIOLATION, "$.data", "no data"),
        ({"data": [1]}, Reason.SCHEMA_VIOLATION, "$.data", "JSON object"),
        ({"data": "team=checkout"}, Reason.SCHEMA_VIOLATION, "$.data", "JSON object"),
        ({"data_base64": "e30="}, Reason.SCHEMA_VIOLATION, "$.data_base64", "not both"),
        ({"data": ..., "data_base64": "%%%"}, Reason.SCHEMA_VIOLATION, "$.data_base64", "base64"),
        ({"data": ..., "data_base64": 5}, Reason.SCHEMA_VIOLATION, "$.data_base64", "base64"),
        ({"data": ..., "data_base64": "bm90IGpzb24="}, Reason.NOT_JSON, "$.data_base64", "JSON"),
        (
            {"data": _data_with(event_id=str(uuid.uuid4()))},
            Reason.SCHEMA_VIOLATION,
            "$.data.event_id",
            "attribute `id`",
        ),
        (
            {"data": _data_with(schema_version=1)},
            Reason.SCHEMA_VIOLATION,
            "$.data.schema_version",
            "attribute `type`",
        ),
        (
            {"data": _data_with(occurred_at=NOW.isoformat())},
            Reason.SCHEMA_VIOLATION,
            "$.data.occurred_at",
            "attribute `time`",
        ),
        (
            {"data": _data_with(source="api-gateway")},
            Reason.SCHEMA_VIOLATION,
            "$.data.source",
            "attribute `source`",
        ),
        ({"data": _data_with(capability="")}, Reason.SCHEMA_VIOLATION, "$.data.capability", ""),
        (
            {"data": {k: v for k, v in _data_with().items() if k != "capability"}},
            Reason.SCHEMA_VIOLATION,
            "$.data",
            "`capability`",
        ),
        (
            {"data": _data_with(data={**GATEWAY["data"], "status_code": 600})},
            Reason.SCHEMA_VIOLATION,
            "$.data.data.status_code",
            "599",
        ),
        (
            {"data": _data_with(team=None, service="")},
            Reason.MISSING_ATTRIBUTION,
            "$.data",
            "team or service",
        ),
    ],
)
def test_each_problem_is_a_rejection_with_a_contract_reason_and_a_cloudevents_path(
    changes: dict[str, Any], reason: Reason, path: str, words: str
) -> None:
    value = msgspec.json.encode(structured(**changes))
    batch = decode(value)
    got, detail = rejection(batch)
    assert got is reason, detail
    assert detail.endswith(f" - at `{path}`"), detail
    assert words in detail, detail
    assert batch.rejections[0].raw == value, "a rejection keeps the bytes that were sent"


def test_binary_mode_rejections_hold_the_event_in_structured_form() -> None:
    message = ce_kafka.to_binary_event(sdk_event(GATEWAY, ce_type="dev.uptake.api_call.v2"))
    batch = decode((message.value, message.headers))
    [rejected] = batch.rejections
    assert rejected.reason is Reason.UNSUPPORTED_VERSION
    raw = json.loads(rejected.raw)
    assert raw["type"] == "dev.uptake.api_call.v2" and raw["id"] == GATEWAY["event_id"]
    assert raw["data"] == json.loads(message.value)
    assert decode(rejected.raw).rejections[0].reason is Reason.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    ("headers", "value", "reason", "path"),
    [
        ({"ce_specversion": b"0.3"}, None, Reason.UNSUPPORTED_VERSION, "$.specversion"),
        ({"ce_id": None}, None, Reason.SCHEMA_VIOLATION, "$.id"),
        ({"ce_type": b"com.acme.deploy"}, None, Reason.UNKNOWN_EVENT_TYPE, "$.type"),
        ({"ce_time": b"\xff\xfe"}, None, Reason.SCHEMA_VIOLATION, "$.time"),
        ({"content-type": b"text/plain"}, None, Reason.SCHEMA_VIOLATION, "$.datacontenttype"),
        ({}, b"", Reason.SCHEMA_VIOLATION, "$.data"),
        ({}, b"{not json", Reason.NOT_JSON, "$.data_base64"),
        ({}, b'{"team": "\xff"}', Reason.NOT_JSON, "$.data_base64"),
        ({}, b"[1, 2]", Reason.SCHEMA_VIOLATION, "$.data"),
    ],
)
def test_binary_mode_problems(
    headers: dict[str, bytes | None], value: bytes | None, reason: Reason, path: str
) -> None:
    message = ce_kafka.to_binary_event(sdk_event(GATEWAY))
    merged = {**message.headers, **headers}
    pairs = [(k, v) for k, v in merged.items() if v is not None]
    batch = decode((message.value if value is None else value, pairs))
    got, detail = rejection(batch)
    assert (got, detail.rsplit(" - at ", 1)[1]) == (reason, f"`{path}`"), detail


def test_binary_mode_header_names_are_case_insensitive_and_other_headers_are_ignored() -> None:
    message = ce_kafka.to_binary_event(sdk_event(GATEWAY))
    headers = [("traceparent", b"00-1-2-01")] + [(k.upper(), v) for k, v in message.headers.items()]
    assert decode((message.value, headers)).events == [native_event(GATEWAY)]


def test_messages_with_other_headers_are_native_events() -> None:
    value = msgspec.json.encode([GATEWAY, DEPLOY])
    for headers in ([("traceparent", b"00-1-2-01")], {"content-type": b"application/json"}, ()):
        batch = decode((value, headers))
        assert batch.events == [native_event(GATEWAY), native_event(DEPLOY)]


def test_a_native_event_with_a_specversion_member_stays_native_next_to_an_invalid_one() -> None:
    """`specversion` alone does not make a CloudEvent: an `event_type` member says native, on
    the fast path and on the slow one (here forced by an invalid sibling)."""
    odd = {**GATEWAY, "specversion": "1.0"}
    assert decode(msgspec.json.encode(odd)).events == [native_event(GATEWAY)]
    batch = decode(msgspec.json.encode([odd, {**GATEWAY, "capability": ""}]))
    assert batch.events == [native_event(GATEWAY)]
    assert [r.reason for r in batch.rejections] == [Reason.SCHEMA_VIOLATION]


HOSTILE: list[bytes | tuple[bytes, Any]] = [
    b'{"specversion": "1.0"',
    b'{"specversion": "1.0", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'[{"specversion": "1.0"}, {"specversion": ' + b"[" * 5000 + b"]" * 5000 + b"}]",
    b'{"specversion": "1.0", "id": "\xed\xa0\x80"}',
    b'["specversion", {"specversion": {}}, 1]',
    b'{"specversion": "1.0", "id": "a", "source": "s", "type": "deploy", "time": 1e400,'
    b' "data": {"capability": 1e400}}',
    (b"[" * 5000 + b"]" * 5000, [("ce_specversion", b"1.0")]),
    (b"\xff\xfe", {"ce_specversion": b"1.0", "ce_id": b"\xff"}),
    (b"{}", [("ce_specversion", "1.0"), ("ce_", b"x")]),
    (b"{}", {"ce_specversion": 1}),
]


def test_hostile_cloudevents_are_rejected_never_raised() -> None:
    batch = decode(*HOSTILE)
    assert not batch.events
    assert sorted({r.offset for r in batch.rejections}) == list(range(len(HOSTILE)))
    assert all(r.reason in set(Reason) for r in batch.rejections)


# --- agreement with the native contract ----------------------------------------------------------


def _as_cloudevent(native: Any) -> dict[str, Any] | None:
    """The structured CloudEvent of a native example by the documented mapping, or None if the
    example has no CloudEvents form (attributes that are not strings, an unknown type)."""
    if not isinstance(native, dict):
        return None
    carried = ("event_id", "source", "event_type", "occurred_at")
    if not all(isinstance(native.get(k), str) and native[k] for k in carried):
        return None
    version = native.get("schema_version", 1)
    if native["event_type"] not in EVENT_CLASSES or type(version) is not int or version < 0:
        return None
    return {
        "specversion": "1.0",
        "id": native["event_id"],
        "source": native["source"],
        "type": f"dev.uptake.{native['event_type']}.v{version}",
        "time": native["occurred_at"],
        "data": {k: v for k, v in native.items() if k not in cloudevents._CARRIED_BY},
    }


EXAMPLE_FILES = sorted(EXAMPLES.glob("*/*.json"))
# Arrays, and events whose attributes are not strings, have no CloudEvents form.
CONVERTIBLE = [p for p in EXAMPLE_FILES if _as_cloudevent(json.loads(p.read_bytes())) is not None]


def test_most_of_the_corpus_has_a_cloudevents_form() -> None:
    assert len(CONVERTIBLE) > len(EXAMPLE_FILES) // 2


@pytest.mark.parametrize("path", CONVERTIBLE, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_cloudevent_gets_the_verdict_of_the_native_event_it_stands_for(path: Path) -> None:
    """Every example of the corpus that has a CloudEvents form is accepted or rejected for the
    same reason in both forms (an example without `schema_version` is version 1 both ways)."""
    native = json.loads(path.read_bytes())
    event = _as_cloudevent(native)
    assert event is not None
    if "schema_version" not in native:
        native = {**native, "schema_version": 1}
    want = decode(msgspec.json.encode(native))
    got = decode(msgspec.json.encode(event))
    assert [type(e) for e in got.events] == [type(e) for e in want.events]
    assert got.events == want.events
    assert [r.reason for r in got.rejections] == [r.reason for r in want.rejections], (
        got.rejections,
        want.rejections,
    )


# --- the paths of details ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("native", "translated"),
    [
        ("Invalid UUID - at `$.event_id`", "Invalid UUID - at `$.id`"),
        ("bad - at `$.occurred_at`", "bad - at `$.time`"),
        ("Expected `int` >= 1 - at `$.schema_version`", "Expected `int` >= 1 - at `$.type`"),
        ("too long - at `$.source`", "too long - at `$.source`"),
        ("missing `capability` - at `$`", "missing `capability` - at `$.data`"),
        ("bad - at `$.team`", "bad - at `$.data.team`"),
        ("bad - at `$.data.commits[0].sha`", "bad - at `$.data.data.commits[0].sha`"),
        ("no path here", "no path here"),
    ],
)
def test_native_paths_become_paths_into_the_cloudevent(native: str, translated: str) -> None:
    assert cloudevents.detail_for(native) == translated


def test_deploy_body_paths_point_into_data_data() -> None:
    data = dict(structured(DEPLOY)["data"])
    data["data"] = {**data["data"], "commits": [{"sha": "xyz", "committed_at": "2025-06-01Z"}]}
    reason, detail = rejection(decode(msgspec.json.encode(structured(DEPLOY, data=data))))
    assert reason is Reason.SCHEMA_VIOLATION
    assert detail.endswith("- at `$.data.data.commits[0].sha`"), detail
    event = native_event(DEPLOY)
    assert isinstance(event, DeployEvent)


# --- the docs ------------------------------------------------------------------------------------

DOCS = REPO / "docs" / "events.md"
DOC_CLOUDEVENT = re.compile(
    r"<!-- cloudevent: (?P<file>[^ ]+) -->\s*```json\n(?P<body>.*?)```", re.S
)


def test_docs_cloudevents_examples_are_the_corpus_events_they_name() -> None:
    text = DOCS.read_text(encoding="utf-8")
    examples = list(DOC_CLOUDEVENT.finditer(text))
    assert examples and len(examples) == text.count("<!-- cloudevent: ")
    for match in examples:
        native = json.loads((EXAMPLES / match["file"]).read_text())
        batch = decode(match["body"].encode())
        assert batch.rejections == [] and batch.events == [native_event(native)], match["file"]


def test_docs_binary_mode_example_is_the_structured_one() -> None:
    """The headers and value shown for binary mode carry the structured example."""
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("```text\nheaders:", 1)[1].split("```", 1)[0]
    head, value = block.split("value:", 1)
    headers = [
        (name.strip(), raw.strip().encode())
        for name, raw in (line.split(":", 1) for line in head.strip().splitlines())
    ]
    value_bytes = " ".join(value.split()).encode()
    [match] = DOC_CLOUDEVENT.finditer(text)
    binary, structured_doc = decode((value_bytes, headers)), decode(match["body"].encode())
    assert binary.rejections == [] and binary.events == structured_doc.events
