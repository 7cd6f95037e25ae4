"""Hostile input to the batch decoder (`pipeline.contract.decode.BatchDecoder`), which the worker
runs on every Kafka message: random bytes, random JSON, valid events with mutations, and batches
mixing all of them (generators: tests/support/hostile.py). Properties: decode never raises; every
message yields exactly its expected number of events (`accepted + rejected`: one per array
element, else one); every rejection carries a `Reason` and the original bytes.

Bugs found in the decoder (BUG-1, BUG-2, BUG-4 to BUG-6; BUG-3 is in test_hostile_collector.py,
BUG-7 to BUG-9 in test_security.py), all fixed, are pinned by regression tests at the end.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.contract.events import SUPPORTED_VERSIONS, event_type_of
from pipeline.contract.reasons import Reason
from tests.support.hostile import (
    FUZZ,
    LIMITS,
    MAX_BYTES,
    MAX_DEPTH,
    NOW,
    SEEN,
    TRIED,
    dump,
    encode,
    expected,
    json_values,
    may_hit_bug1,
    mutated_events,
    strict_json,
    valid_events,
)

pytestmark = pytest.mark.reliability

# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    """A Kafka message value and, when known, how many of its events must be accepted."""

    value: bytes | None
    all_valid: int | None = None


def _render(item: Any, ascii_only: bool, spaced: bool) -> bytes:
    text = dump(item, NOW, ascii_only)
    return encode(f" \n{text}\t " if spaced else text)


def _valid(events: Any, ascii_only: bool, spaced: bool) -> Msg:
    value = _render(events, ascii_only, spaced)
    count = len(events) if isinstance(events, list) else 1
    return Msg(value, count if len(value) <= MAX_BYTES else None)  # else: too_large


valid_messages = st.one_of(
    st.builds(_valid, valid_events(), st.booleans(), st.booleans()),
    st.builds(
        _valid, st.lists(valid_events(), min_size=1, max_size=5), st.booleans(), st.booleans()
    ),
)
mutated_messages = st.one_of(
    st.builds(lambda e, a: Msg(_render(e, a, False)), mutated_events, st.booleans()),
    st.builds(
        lambda es, a: Msg(_render(es, a, False)),
        st.lists(st.one_of(mutated_events, valid_events()), min_size=1, max_size=5),
        st.booleans(),
    ),
)
random_json_messages = st.one_of(
    st.builds(lambda v, a: Msg(_render(v, a, False)), json_values, st.booleans()),
    st.builds(
        lambda vs, a: Msg(_render(vs, a, False)),
        st.lists(st.one_of(json_values, valid_events()), max_size=6),
        st.booleans(),
    ),
)


def _truncate(msg: Msg, cut: int) -> Msg:
    data = msg.value or b""
    return Msg(data[: cut % (len(data) + 1)])


def _flip(msg: Msg, where: int, byte: int) -> Msg:
    data = bytearray(msg.value or b"")
    if data:
        data[where % len(data)] = byte
    return Msg(bytes(data))


def _sized(event: dict[str, Any], delta: int) -> Msg:
    """`event` padded with an unknown field to exactly MAX_BYTES + delta bytes."""
    padded = {**event, "x_pad": ""}
    size = len(encode(dump(padded)))
    padded["x_pad"] = "a" * max(0, MAX_BYTES + delta - size)
    value = encode(dump(padded))
    assert len(value) == MAX_BYTES + delta
    return Msg(value, 1 if delta <= 0 else None)


byte_messages = st.one_of(
    st.binary(max_size=600).map(Msg),
    st.none().map(Msg),
    st.sampled_from([b"", b" ", b"\xef\xbb\xbf{}", b"\x00", b"[", b"]", b"{", b"null"]).map(Msg),
    st.builds(_truncate, st.one_of(valid_messages, mutated_messages), st.integers(0, 10**6)),
    st.builds(_flip, valid_messages, st.integers(0, 10**6), st.integers(0, 255)),
)
boundary_messages = st.builds(_sized, valid_events(), st.sampled_from([-1, 0, 1, 4096]))
any_messages = st.one_of(
    valid_messages, mutated_messages, random_json_messages, byte_messages, boundary_messages
)


# =============================================================================== decoder checks


def decoder() -> BatchDecoder:
    return BatchDecoder(LIMITS, now=lambda: NOW)


def check_batch(batch: DecodedBatch, messages: list[SourceMessage], specs: list[Msg]) -> None:
    """Every property of one decoded batch (see the module docstring)."""
    assert len(batch.events) == len(batch.partitions) == len(batch.offsets) == len(batch.topics)
    by_message: Counter[tuple[int, int]] = Counter(
        zip(batch.partitions, batch.offsets, strict=True)
    )
    positions: set[tuple[int, int, int]] = set()
    for rejection in batch.rejections:
        key = (rejection.partition, rejection.offset, rejection.index)
        assert key not in positions, f"two rejections for one event: {key}"
        positions.add(key)
        by_message[(rejection.partition, rejection.offset)] += 1
    values = {
        (m.partition, m.offset): (m.value or b"", spec)
        for m, spec in zip(messages, specs, strict=True)
    }
    assert set(by_message) <= set(values), "an event came from no message of the batch"
    for (partition, offset), (value, spec) in values.items():
        want = expected(value)
        got = by_message[(partition, offset)]
        assert got in want.counts, (
            f"message {value[:200]!r}... ({len(value)} bytes, {want.kind}): "
            f"{got} events, expected {sorted(want.counts)}"
        )
        SEEN[f"decoder message kind: {want.kind}"] += 1
        if spec.all_valid is not None:
            accepted = sum(
                1
                for p, o in zip(batch.partitions, batch.offsets, strict=True)
                if (p, o) == (partition, offset)
            )
            mine = [r for r in batch.rejections if (r.partition, r.offset) == (partition, offset)]
            assert accepted == spec.all_valid, (
                f"a valid message was not accepted whole: {[(r.reason, r.detail) for r in mine]}"
                f" in {value[:300]!r}"
            )
    for rejection in batch.rejections:
        value, _ = values[(rejection.partition, rejection.offset)]
        want = expected(value)
        assert isinstance(rejection.reason, Reason) and rejection.reason in set(Reason)
        assert isinstance(rejection.detail, str) and rejection.detail
        assert isinstance(rejection.raw, bytes)
        assert rejection.raw == value or rejection.raw in value, "the original bytes are lost"
        assert 0 <= rejection.index < max(want.counts)
        SEEN[f"decoder rejected: {rejection.reason.value}"] += 1
        if want.kind == "too_large":
            assert (rejection.reason, rejection.raw) == (Reason.TOO_LARGE, value)
        elif want.kind == "empty_array":
            assert rejection.reason == Reason.EMPTY_BATCH
        elif want.kind == "not_json":
            # NOT_JSON even when typed validation failed before the syntax error (BUG-4, fixed);
            # nesting deeper than either parser follows may be named instead.
            if rejection.reason != Reason.NOT_JSON:
                assert rejection.reason == Reason.SCHEMA_VIOLATION, rejection
                assert "nested too deeply" in rejection.detail, rejection
        elif want.kind in ("array", "single") and strict_json(value):
            assert rejection.reason not in (Reason.NOT_JSON, Reason.TOO_LARGE, Reason.EMPTY_BATCH)
    for event in batch.events:
        assert event.team or event.service
        assert event.schema_version in SUPPORTED_VERSIONS[event_type_of(event)]
        assert NOW - LIMITS.max_lateness <= event.occurred_at <= NOW + LIMITS.max_future_skew
    SEEN["decoder accepted events"] += len(batch.events)


def check_decode(specs: list[Msg], target: str) -> None:
    """Decode `specs` as one batch (suspects of BUG-1 one by one) and check every property."""
    messages = [SourceMessage("fuzz", i % 3, i, spec.value) for i, spec in enumerate(specs)]
    clean = [(m, s) for m, s in zip(messages, specs, strict=True) if not may_hit_bug1(m.value)]
    suspects = [(m, s) for m, s in zip(messages, specs, strict=True) if may_hit_bug1(m.value)]
    TRIED["decoder"] += len(specs)
    TRIED[f"decoder: {target}"] += len(specs)
    if clean:
        batch = decoder().decode([m for m, _ in clean])  # must not raise
        check_batch(batch, [m for m, _ in clean], [s for _, s in clean])
    for message, spec in suspects:
        try:
            batch = decoder().decode([message])
        except msgspec.DecodeError:
            SEEN["BUG-1 hits: decode raised on a malformed array"] += 1
            continue
        check_batch(batch, [message], [spec])


# =============================================================================== decoder tests


@settings(FUZZ, max_examples=250)
@given(st.lists(st.one_of(st.binary(max_size=2_000).map(Msg), byte_messages), max_size=8))
def test_decoder_random_bytes(specs: list[Msg]) -> None:
    check_decode(specs, "random bytes")


@settings(FUZZ, max_examples=350)
@given(st.lists(random_json_messages, min_size=1, max_size=6))
def test_decoder_random_json(specs: list[Msg]) -> None:
    check_decode(specs, "random JSON")


@settings(FUZZ, max_examples=350)
@given(st.lists(st.one_of(valid_messages, mutated_messages), min_size=1, max_size=6))
def test_decoder_valid_and_mutated_events(specs: list[Msg]) -> None:
    check_decode(specs, "valid and mutated events")


@settings(FUZZ, max_examples=120)
@given(st.lists(any_messages, min_size=1, max_size=12))
def test_decoder_mixed_batches(specs: list[Msg]) -> None:
    check_decode(specs, "mixed batches")


@settings(FUZZ, max_examples=40)
@given(boundary_messages)
def test_decoder_message_size_boundary(spec: Msg) -> None:
    """Exactly MAX_BYTES is accepted, one byte more is `too_large` with its bytes kept."""
    check_decode([spec], "size boundary")


def test_the_properties_catch_a_miscount_or_a_lost_byte() -> None:
    """Negative controls: the oracle and `check_batch` fail on a decoder that drops an event,
    invents one or keeps bytes that are not the message's."""
    good = encode(dump(_example_event()))
    pair = b"[" + good + b"," + good + b"]"
    assert expected(pair).counts == {2}
    assert expected(b"[]").kind == "empty_array"
    assert expected(b"[1,]").kind == "not_json"
    assert expected(b"[NaN]").kind == "not_json"
    assert expected(b'["\\ud800", 1]').kind == "array_unclean"
    assert expected(b"[1e400, 1]").counts == {2}
    assert expected(b"x" * (MAX_BYTES + 1)).kind == "too_large"
    message = SourceMessage("t", 0, 0, pair)
    batch = decoder().decode([message])
    check_batch(batch, [message], [Msg(pair, 2)])
    dropped = DecodedBatch(events=batch.events[:1], partitions=[0], offsets=[0], topics=["t"])
    with pytest.raises(AssertionError, match="events, expected"):
        check_batch(dropped, [message], [Msg(pair)])
    alien = decoder().decode([SourceMessage("t", 0, 0, b"[1, 2]")])
    alien.rejections[0].raw = b"not from the message"
    with pytest.raises(AssertionError, match="original bytes"):
        check_batch(alien, [SourceMessage("t", 0, 0, b"[1, 2]")], [Msg(b"[1, 2]")])


def _example_event() -> dict[str, Any]:
    return {
        "event_id": "3f2b8c1e-6d4a-4e8b-9a7c-1f0e2d3c4b5a",
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": (NOW - timedelta(minutes=1)).isoformat(),
        "source": "fuzz",
        "capability": "api-gateway",
        "team": "checkout",
        "data": {"api": "orders", "operation": "GET /x", "status_code": 200, "latency_ms": 1},
    }


# =============================================================================== known bugs

BUG1 = (
    "BUG-1: BatchDecoder.decode raises msgspec.DecodeError for an array message that is not "
    "well-formed JSON when an element before the syntax error fails validation: the typed "
    "decode raises ValidationError, and _decode_slowly's list[Raw] split then raises "
    "DecodeError uncaught (a truncated batch stops the worker)"
)
BUG2 = (
    "BUG-2: nesting deeper than Python's recursion limit (~1000 levels, ~450 on the "
    "integral-float slow path through _as_ints) raises RecursionError from the decoder and "
    "the collector (500)"
)

BUG4 = (
    "BUG-4: a single message that is not JSON is rejected as schema_violation instead of "
    "not_json when typed validation fails before the syntax error is reached"
)
BUG5 = (
    "BUG-5: an event with invalid UTF-8 inside an array makes the whole message not_json and "
    "loses the valid events before it, while the same bytes as a plain string element are "
    "judged per element"
)


@pytest.mark.parametrize(
    "value",
    [
        b"[1, }",
        b'["x"',
        b"[1,2,3",
        b"[1] x",
        b"[1,]",
        b'[{"event_type": "api_call"}, nonsense',
        b'[1, "\\ud800"]',
        b"[1,2]\x00",
    ],
)
def test_bug1_a_malformed_array_is_one_not_json_rejection(value: bytes) -> None:
    batch = decoder().decode([SourceMessage("t", 0, 7, value)])
    assert batch.consumed == 1
    assert batch.rejections[0].reason == Reason.NOT_JSON
    assert batch.rejections[0].raw == value


def _valid_event_bytes(**changes: Any) -> bytes:
    return json.dumps({**_example_event(), **changes}).encode()


def _deep_event(depth: int, status_code: Any = 200) -> bytes:
    event = _example_event()
    event["data"]["status_code"] = status_code
    text = json.dumps(event)
    return (text[:-1] + ', "x_deep": ' + "[" * depth + "]" * depth + "}").encode()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"[" * 1000 + b"]" * 1000, id="array-1000"),
        pytest.param(b'{"a":' * 1000 + b"1" + b"}" * 1000, id="object-1000"),
        pytest.param(_deep_event(1000), id="unknown-field-1000"),
        pytest.param(_deep_event(600, 200.0), id="integral-float-600"),
    ],
)
def test_bug2_deep_nesting_is_rejected_not_raised(value: bytes) -> None:
    batch = None
    with contextlib.suppress(RecursionError):  # failed below, without hundreds of frames
        batch = decoder().decode([SourceMessage("t", 0, 0, value)])
    assert batch is not None, "RecursionError escaped BatchDecoder.decode"
    assert batch.consumed == 1


def test_deep_nesting_within_a_few_hundred_levels_is_fine() -> None:
    """The control for BUG-2: 300 levels, also on the integral-float slow path."""
    for value in (_deep_event(MAX_DEPTH), _deep_event(MAX_DEPTH, 200.0)):
        batch = decoder().decode([SourceMessage("t", 0, 0, value)])
        assert (len(batch.events), len(batch.rejections)) == (1, 0)
    batch = decoder().decode([SourceMessage("t", 0, 0, b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)])
    assert [r.reason for r in batch.rejections] == [Reason.SCHEMA_VIOLATION]


@pytest.mark.parametrize(
    "value",
    [
        b'{"event_type": "api_call", "schema_version": "1"} x',
        b'{"event_id": 5, "event_type": "api_call"',
    ],
)
def test_bug4_a_single_message_that_is_not_json_is_not_json(value: bytes) -> None:
    assert not strict_json(value)
    batch = decoder().decode([SourceMessage("t", 0, 0, value)])
    assert [r.reason for r in batch.rejections] == [Reason.NOT_JSON]


def test_bug5_invalid_utf8_in_one_event_does_not_lose_the_others() -> None:
    good = _valid_event_bytes()
    bad = _valid_event_bytes(team="t").replace(b'"team": "t"', b'"team": "\xed\xa0\x80"')
    as_string = decoder().decode([SourceMessage("t", 0, 0, b"[" + good + b', "\xed\xa0\x80"]')])
    assert (len(as_string.events), [r.index for r in as_string.rejections]) == (1, [1])
    batch = decoder().decode([SourceMessage("t", 0, 0, b"[" + good + b", " + bad + b"]")])
    assert len(batch.events) == 1
    assert [(r.reason, r.index) for r in batch.rejections] == [(Reason.NOT_JSON, 1)]


BUG6 = (
    "BUG-6: an event with an integral float in an int field (accepted on the slow path) is "
    "rejected when an unknown field holds a number beyond the double range (1e400): "
    "_integral_floats_as_ints decodes the whole event generically, which refuses 1e400, and "
    "gives up; the same event with 200 instead of 200.0 is accepted, as the JSON Schema says"
)


def test_bug6_an_integral_float_does_not_change_the_verdict_on_unknown_fields() -> None:
    verdicts = {}
    for status_code in ("200", "200.0"):
        text = json.dumps({**_example_event(), "x_big": "BIG"}).replace('"BIG"', "1e400")
        text = text.replace('"status_code": 200', f'"status_code": {status_code}')
        batch = decoder().decode([SourceMessage("t", 0, 0, text.encode())])
        verdicts[status_code] = (len(batch.events), [r.detail for r in batch.rejections])
    assert verdicts["200"] == (1, [])  # the fast path skips unknown fields
    assert verdicts["200.0"] == (1, []), verdicts["200.0"]
