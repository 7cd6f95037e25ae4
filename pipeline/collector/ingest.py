"""Turn a request body into events, judge each with the worker's decoder, pack the accepted.

Pure and synchronous (no I/O). `split_body` raises `BodyError` for a body that carries no event
at all (answered 400); everything else is judged event by event: `judge` returns one result per
event, in order, and the Kafka messages (key, JSON array) of the accepted ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.contract import cloudevents
from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.contract.reasons import Reason
from pipeline.sdk import MESSAGE_TARGET_BYTES, pack_messages

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})

_raw_items = msgspec.json.Decoder(list[msgspec.Raw])


def _float_text(text: str) -> msgspec.Raw:
    return msgspec.Raw(text.encode())


# Floats keep the text they were written with: `1e400` is JSON (the decoder judges it), and an
# event re-encoded with its source filled in keeps every number byte for byte.
_any = msgspec.json.Decoder(float_hook=_float_text)
_UNDECODED = object()
_JSON_KIND = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class BodyError(ValueError):
    """The body carries no event at all; `code` is the machine-readable error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def split_body(body: bytes, ndjson: bool) -> list[bytes]:
    """The raw JSON of each event in `body`.

    JSON: one object, or a non-empty array whose items are the events. NDJSON: one event per
    non-blank line; a line that is not JSON becomes a `not_json` rejection later, but a body
    in which no line is JSON is a `BodyError`.
    """
    if not body.strip():
        raise BodyError("empty_body", "the body is empty: send an event, an array or NDJSON")
    if ndjson:
        lines = [line for line in body.splitlines() if line.strip()]
        for line in lines:
            try:
                _any.decode(line)
                return lines
            except msgspec.ValidationError:  # valid JSON, e.g. a number beyond the double range
                return lines
            except (msgspec.DecodeError, UnicodeDecodeError):
                continue
        raise BodyError("not_json", "no line of the NDJSON body is JSON")
    if not _is_utf8(body):
        raise BodyError("not_json", "the body is not UTF-8")
    head = body.lstrip()[:1]
    try:
        if head == b"[":
            items = [bytes(item) for item in _raw_items.decode(body)]
            if not items:
                raise BodyError("empty_batch", "the array has no events")
            return items
        _any.decode(body)
    except msgspec.ValidationError:  # a number beyond the double range: let the decoder judge
        pass
    except msgspec.DecodeError as exc:
        raise BodyError("not_json", f"the body is not JSON: {exc}") from None
    if head != b"{":
        raise BodyError(
            "not_an_event", "the body must be a JSON object (one event) or an array of objects"
        )
    return [body.strip()]


@dataclass
class Judgement:
    """Per-event results (in order) and the Kafka messages carrying the accepted events."""

    results: list[dict[str, Any]]
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r["status"] == "accepted")

    @property
    def rejected(self) -> int:
        return len(self.results) - self.accepted


def _result(
    index: int, event_id: Any, reason: str | None = None, detail: str | None = None
) -> dict[str, Any]:
    return {
        "index": index,
        "event_id": event_id if isinstance(event_id, str) else None,
        "status": "accepted" if reason is None else "rejected",
        "reason": reason,
        "detail": detail,
    }


def judge(
    items: list[bytes], source: str, decoder: BatchDecoder, batch_events: int = 500
) -> Judgement:
    """Validate each event as the worker would, after applying the source rule.

    Source rule: an event without `source` (absent or null) gets the authenticated source; one
    that names another source is rejected (`schema_violation` at `$.source`), so a token can
    only speak for its own source. A CloudEvent must name its source (a required attribute):
    it is never filled in, and its `id` is the event id of its result. Accepted events are
    packed per key (team, else service) into JSON-array messages of at most `batch_events`
    events; a CloudEvent keeps its form (the worker maps it the same way).
    """
    results: list[dict[str, Any] | None] = [None] * len(items)
    event_ids: list[Any] = [None] * len(items)
    messages: list[SourceMessage] = []
    for index, raw in enumerate(items):
        obj: Any
        if not _is_utf8(raw):  # msgspec raises UnicodeDecodeError for it, even in the decoder
            results[index] = _result(index, None, Reason.NOT_JSON, "the event is not UTF-8")
            continue
        try:
            obj = _any.decode(raw)
        except msgspec.ValidationError:
            obj = _UNDECODED  # valid JSON the generic decoder refuses: the decoder judges it
        except msgspec.DecodeError as exc:
            results[index] = _result(index, None, Reason.NOT_JSON, str(exc))
            continue
        is_object = raw.lstrip()[:1] == b"{" if obj is _UNDECODED else type(obj) is dict
        if not is_object:
            kind = "a JSON array or scalar" if obj is _UNDECODED else _JSON_KIND.get(type(obj), "?")
            detail = f"an event is a JSON object, not {kind} - at `$`"
            results[index] = _result(index, None, Reason.SCHEMA_VIOLATION, detail)
            continue
        if obj is not _UNDECODED:
            is_cloudevent = cloudevents.is_cloudevent(obj)
            event_ids[index] = obj.get("id" if is_cloudevent else "event_id")
            claimed = obj.get("source")
            if claimed is None and not is_cloudevent:  # a CloudEvent without one is rejected
                obj["source"] = source
                raw = msgspec.json.encode(obj)
            elif isinstance(claimed, str) and claimed != source:
                detail = (
                    f"source {claimed!r} does not match the token, which is for {source!r} "
                    "- at `$.source`"
                )
                results[index] = _result(index, event_ids[index], Reason.SCHEMA_VIOLATION, detail)
                continue
        messages.append(SourceMessage("http", 0, index, raw))
    decoded = decoder.decode(messages)
    accepted: list[tuple[str, bytes]] = []
    raw_of = {m.offset: m.value or b"" for m in messages}
    for event, index in zip(decoded.events, decoded.offsets, strict=True):
        results[index] = _result(index, str(event.event_id))
        accepted.append((event.team or event.service or "", raw_of[index]))
    for rejection in decoded.rejections:
        index = rejection.offset
        results[index] = _result(index, event_ids[index], rejection.reason, rejection.detail)
    max_bytes = min(MESSAGE_TARGET_BYTES, decoder.limits.max_message_bytes)
    final = [r for r in results if r is not None]
    assert len(final) == len(items)
    return Judgement(final, pack_messages(accepted, batch_events, max_bytes))
