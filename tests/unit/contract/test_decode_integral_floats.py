"""BatchDecoder accepts integers written as integral floats (`201.0`, `2e2`) like JSON Schema.

msgspec rejects a JSON float for an `int` field; the decoder's slow path rewrites such an event
with its integral floats (within ±2**53) as integers and judges it again. Rejections keep the
original bytes. Valid messages never reach this path.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.contract.events import ApiCallEvent, DeployEvent
from pipeline.contract.reasons import Reason

VALID = Path(__file__).resolve().parent / "examples" / "valid"
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # the corpus lies within a few days before it
GATEWAY = (VALID / "api_call__gateway.json").read_bytes()
DEPLOY = (VALID / "deploy__production_with_commits.json").read_bytes()


def decode(*values: bytes, now: datetime = NOW) -> DecodedBatch:
    messages = [SourceMessage("uptake.events", 3, 40 + i, v) for i, v in enumerate(values)]
    return BatchDecoder(now=lambda: now).decode(messages)


def gateway(status_code: str) -> bytes:
    old = b'"status_code": 201'
    assert old in GATEWAY
    return GATEWAY.replace(old, b'"status_code": ' + status_code.encode(), 1)


def deploy(schema_version: str) -> bytes:
    old = b'"schema_version": 1'
    assert old in DEPLOY
    return DEPLOY.replace(old, b'"schema_version": ' + schema_version.encode(), 1)


@pytest.mark.parametrize("spelling", ["201.0", "2.01e2", "2.01E+2", "201.000", "20100e-2"])
def test_integral_float_status_code_is_accepted_as_an_int(spelling: str) -> None:
    batch = decode(gateway(spelling))
    assert not batch.rejections
    [event] = batch.events
    assert isinstance(event, ApiCallEvent)
    assert event.data.status_code == 201 and type(event.data.status_code) is int
    assert (batch.partitions, batch.offsets, batch.topics) == ([3], [40], ["uptake.events"])


def test_integral_float_schema_version_is_accepted_as_an_int() -> None:
    batch = decode(deploy("1.0"))
    assert not batch.rejections
    [event] = batch.events
    assert isinstance(event, DeployEvent)
    assert event.schema_version == 1 and type(event.schema_version) is int


def test_the_event_equals_the_one_written_with_integers() -> None:
    """Only the integral floats change: float fields, strings and timestamps are untouched."""
    lax = GATEWAY.replace(b'"status_code": 201', b'"status_code": 201.0', 1)
    lax = lax.replace(b'"latency_ms": 23.7', b'"latency_ms": 24.0', 1)
    strict = GATEWAY.replace(b'"latency_ms": 23.7', b'"latency_ms": 24', 1)
    [lax_event] = decode(lax).events
    [strict_event] = decode(strict).events
    assert lax_event == strict_event
    assert isinstance(lax_event, ApiCallEvent)
    assert lax_event.data.latency_ms == 24.0 and type(lax_event.data.latency_ms) is float


def test_non_integral_float_is_still_a_schema_violation_naming_the_field() -> None:
    raw = gateway("201.5")
    batch = decode(raw)
    assert not batch.events
    [rejection] = batch.rejections
    assert rejection.reason is Reason.SCHEMA_VIOLATION
    assert rejection.detail == "Expected `int`, got `float` - at `$.data.status_code`"
    assert rejection.raw == raw  # the original bytes, not the rewritten ones
    assert rejection.event_type == "api_call"


@pytest.mark.parametrize(
    ("spelling", "detail"),
    [
        ("600.0", "Expected `int` <= 599 - at `$.data.status_code`"),
        ("6e2", "Expected `int` <= 599 - at `$.data.status_code`"),
        ("99.0", "Expected `int` >= 100 - at `$.data.status_code`"),
        ("-0.0", "Expected `int` >= 100 - at `$.data.status_code`"),
        # beyond 2**53 an integral float need not be the integer written: it stays a float
        ("1e300", "Expected `int`, got `float` - at `$.data.status_code`"),
        ("9007199254740994.0", "Expected `int`, got `float` - at `$.data.status_code`"),
    ],
)
def test_rewritten_value_is_judged_with_its_bounds(spelling: str, detail: str) -> None:
    raw = gateway(spelling)
    [rejection] = decode(raw).rejections
    assert (rejection.reason, rejection.detail, rejection.raw) == (
        Reason.SCHEMA_VIOLATION,
        detail,
        raw,
    )


@pytest.mark.parametrize("spelling", ["0.0", "2.0", "2e0"])
def test_integral_float_schema_version_is_judged_like_the_integer(spelling: str) -> None:
    raw = deploy(spelling)
    [rejection] = decode(raw).rejections
    assert rejection.reason is Reason.UNSUPPORTED_VERSION
    assert rejection.detail.startswith(f"schema_version {int(float(spelling))} of deploy")
    assert rejection.raw == raw and rejection.event_type == "deploy"


def test_another_error_after_the_rewrite_is_reported_with_the_original_bytes() -> None:
    raw = gateway("201.0").replace(b'"latency_ms": 23.7', b'"latency_ms": "fast"', 1)
    [rejection] = decode(raw).rejections
    assert rejection.reason is Reason.SCHEMA_VIOLATION
    assert rejection.detail == "Expected `float`, got `str` - at `$.data.latency_ms`"
    assert rejection.raw == raw


def test_a_number_beyond_the_double_range_is_still_a_schema_violation() -> None:
    raw = gateway("201.0").replace(b'"latency_ms": 23.7', b'"latency_ms": 1e400', 1)
    [rejection] = decode(raw).rejections
    assert rejection.reason is Reason.SCHEMA_VIOLATION
    assert rejection.raw == raw


def test_clock_rules_apply_to_the_rewritten_event() -> None:
    raw = gateway("201.0")
    [rejection] = decode(raw, now=NOW + timedelta(days=30)).rejections
    assert rejection.reason is Reason.OCCURRED_TOO_OLD
    assert rejection.raw == raw and rejection.event_type == "api_call"


def test_in_a_batch_each_event_is_judged_on_its_own() -> None:
    items = [GATEWAY, gateway("201.0"), gateway("201.5"), deploy("1.0")]
    raw_items = [item.strip() for item in items]
    batch = decode(b"[" + b", ".join(raw_items) + b"]")
    assert [type(e) for e in batch.events] == [ApiCallEvent, ApiCallEvent, DeployEvent]
    assert batch.offsets == [40, 40, 40]
    [rejection] = batch.rejections
    assert (rejection.index, rejection.reason) == (2, Reason.SCHEMA_VIOLATION)
    assert rejection.raw == raw_items[2]
    assert batch.consumed == 4


def test_integral_floats_in_unknown_fields_do_not_matter() -> None:
    raw = gateway("201.0").replace(b"{", b'{"x-ratio": 3.0, "x-big": 1e300, ', 1)
    batch = decode(raw)
    assert not batch.rejections
    assert batch.events == decode(GATEWAY).events


@pytest.mark.parametrize(
    ("raw", "event"),
    [
        (b'{"a":"\xff"}', b'{"a":"\xff"}'),
        (  # an event of an array is judged, and kept, on its own
            b'[{"event_type":"api_call","source":"\xc3\x28"}]',
            b'{"event_type":"api_call","source":"\xc3\x28"}',
        ),
        (b'"\xed\xa0\x80"', b'"\xed\xa0\x80"'),
    ],
)
def test_invalid_utf8_inside_a_string_is_not_json_and_never_raises(
    raw: bytes, event: bytes
) -> None:
    batch = BatchDecoder().decode([SourceMessage("t", 0, 5, raw)])
    assert not batch.events
    assert [(r.reason, r.raw, r.offset) for r in batch.rejections] == [("not_json", event, 5)]
    assert "UTF-8" in batch.rejections[0].detail
