"""CloudEvents 1.0 in: how a CloudEvent becomes a native Uptake event.

`from_kafka_binary` and `from_http_binary` rewrite a binary-mode event to one structured JSON
object, so a rejection keeps every attribute in its `raw` bytes; `to_native` maps that object.
Pure; never raises for bad input: a CloudEvent it cannot map is a `Problem` with a contract
reason and a path into the structured object. The mapping: docs/events.md#cloudevents.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import unquote

import msgspec

from .events import EVENT_CLASSES, SUPPORTED_VERSIONS
from .reasons import Reason

SPECVERSION = "1.0"
TYPE_PREFIX = "dev.uptake."
MARK = b'"specversion"'
"""Bytes every structured CloudEvent contains: a cheap test before any parsing."""

_TYPE = re.compile(
    r"(?:dev\.uptake\.)?(?P<type>[a-z][a-z0-9_]*?)(?:\.v(?P<version>[0-9]{1,9}))?(?![\s\S])"
)
_CARRIED_BY = {
    "event_id": "id",
    "event_type": "type",
    "schema_version": "type",
    "occurred_at": "time",
    "source": "source",
}
"""Native fields that CloudEvents attributes carry, and the attribute carrying each."""
_JSON_MEDIA = re.compile(r"\s*(?:application|text)/(?:[^;\s]*\+)?json\s*(?:;.*)?", re.I)
_PATH = re.compile(r" - at `\$(?P<rest>[^`]*)`$")
_FIRST = re.compile(r"\.(?P<name>[^.\[]+)")
_KNOWN = ", ".join(EVENT_CLASSES)


class Problem(NamedTuple):
    """Why a CloudEvent cannot become an Uptake event: a contract reason and its detail."""

    reason: Reason
    detail: str
    event_type: str = ""


def is_cloudevent(obj: object) -> bool:
    """A structured CloudEvent, as opposed to a native event (which has `event_type`)."""
    return isinstance(obj, dict) and "specversion" in obj and "event_type" not in obj


def parse_type(ce_type: str) -> tuple[str, int] | None:
    """(event_type, schema_version) named by a CloudEvents `type`, None if it names none."""
    match = _TYPE.match(ce_type)
    if match is None or match["type"] not in EVENT_CLASSES:
        return None
    return match["type"], int(match["version"] or 1)


def to_native(obj: dict[str, Any], parse: Callable[[bytes], Any]) -> bytes | Problem:
    """The native Uptake event (JSON bytes) a structured CloudEvent stands for, or why not.

    `parse` decodes JSON (for `data_base64`) the way the caller decodes the rest. The result
    still has to pass typed decoding; `detail_for` translates its paths.
    """
    specversion = obj.get("specversion")
    if not isinstance(specversion, str):
        return Problem(
            Reason.SCHEMA_VIOLATION, 'specversion must be the string "1.0" - at `$.specversion`'
        )
    if specversion != SPECVERSION:
        return Problem(
            Reason.UNSUPPORTED_VERSION,
            f"CloudEvents specversion {specversion!r} is not supported; Uptake reads "
            f"CloudEvents {SPECVERSION} - at `$.specversion`",
        )
    for attribute in ("id", "source", "type"):
        value = obj.get(attribute)
        if not isinstance(value, str) or not value:
            return Problem(
                Reason.SCHEMA_VIOLATION,
                f"the CloudEvents attribute `{attribute}` is required and must be a non-empty "
                f"string - at `$.{attribute}`",
            )
    named = parse_type(obj["type"])
    if named is None:
        return Problem(
            Reason.UNKNOWN_EVENT_TYPE,
            f"CloudEvents type {obj['type']!r} is not an Uptake event type: send one of "
            f"{_KNOWN}, optionally as {TYPE_PREFIX}<type> and with a .v<N> version suffix "
            "- at `$.type`",
        )
    event_type, version = named
    if version not in SUPPORTED_VERSIONS[event_type]:
        return Problem(
            Reason.UNSUPPORTED_VERSION,
            f"schema_version {version} of {event_type}; known: "
            f"{sorted(SUPPORTED_VERSIONS[event_type])} (the version is the type's .v<N> "
            "suffix, 1 without one) - at `$.type`",
            event_type,
        )
    if obj.get("time") is None:
        return Problem(
            Reason.SCHEMA_VIOLATION,
            "Uptake needs the CloudEvents attribute `time` (when the event happened) - at `$.time`",
            event_type,
        )
    content_type = obj.get("datacontenttype")
    if content_type is not None and not (
        isinstance(content_type, str) and _JSON_MEDIA.fullmatch(content_type)
    ):
        return Problem(
            Reason.SCHEMA_VIOLATION,
            f"datacontenttype {content_type!r} is not JSON; Uptake reads data as a JSON object "
            "- at `$.datacontenttype`",
            event_type,
        )
    data = _data(obj, parse, event_type)
    if isinstance(data, Problem):
        return data
    for name, attribute in _CARRIED_BY.items():
        if name in data:
            return Problem(
                Reason.SCHEMA_VIOLATION,
                f"`{name}` is carried by the CloudEvents attribute `{attribute}`; leave it out "
                f"of data - at `$.data.{name}`",
                event_type,
            )
    native = {
        "event_id": obj["id"],
        "event_type": event_type,
        "schema_version": version,
        "occurred_at": obj["time"],
        "source": obj["source"],
        **data,
    }
    return msgspec.json.encode(native)


def _data(
    obj: dict[str, Any], parse: Callable[[bytes], Any], event_type: str
) -> dict[str, Any] | Problem:
    """The CloudEvent's data as a JSON object, from `data` or `data_base64`."""
    encoded = obj.get("data_base64")
    if encoded is not None and obj.get("data") is not None:
        return Problem(
            Reason.SCHEMA_VIOLATION,
            "a CloudEvent has data or data_base64, not both - at `$.data_base64`",
            event_type,
        )
    if encoded is not None:
        try:
            if not isinstance(encoded, str):
                raise TypeError("not a string")
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            return Problem(
                Reason.SCHEMA_VIOLATION,
                f"data_base64 is not base64: {exc} - at `$.data_base64`",
                event_type,
            )
        try:
            data = parse(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return Problem(
                Reason.NOT_JSON, f"the data is not JSON: {exc} - at `$.data_base64`", event_type
            )
    else:
        data = obj.get("data")
    if data is None:
        return Problem(
            Reason.SCHEMA_VIOLATION,
            "the CloudEvent has no data: Uptake reads capability, team, service, user and the "
            "type's body (as `data`) from it - at `$.data`",
            event_type,
        )
    if not isinstance(data, dict):
        return Problem(
            Reason.SCHEMA_VIOLATION, "data must be a JSON object - at `$.data`", event_type
        )
    return data


def detail_for(detail: str) -> str:
    """A detail about the native event rewritten to point into the CloudEvent.

    `$.event_id` -> `$.id`, `$.occurred_at` -> `$.time`, `$.schema_version` -> `$.type`, and
    every other field lives in data: `$.team` -> `$.data.team`, `$` -> `$.data`. The
    worker's own wording is kept apart from that (e.g. `occurred_at ... is after ...`).
    """
    match = _PATH.search(detail)
    if match is None:
        return detail
    rest = match["rest"]
    first = _FIRST.match(rest)
    if first is not None and first["name"] in _CARRIED_BY:
        path = "$." + _CARRIED_BY[first["name"]]
    else:
        path = "$.data" + rest
    return f"{detail[: match.start()]} - at `{path}`"


def violation_detail(reason: Reason, detail: str) -> str:
    """A rule violation of the mapped event (`BatchDecoder._violation`), said in CloudEvents
    terms and with the path of the attribute or member it comes from."""
    if reason is Reason.MISSING_ATTRIBUTION:
        return f"{detail} in the CloudEvent's data - at `$.data`"
    if reason in (Reason.OCCURRED_IN_FUTURE, Reason.OCCURRED_TOO_OLD):
        return f"time {detail.removeprefix('occurred_at ')} - at `$.time`"
    return detail


# --- binary modes --------------------------------------------------------------------------------


_probe = msgspec.json.Decoder()


def _structured(attributes: dict[str, str], value: bytes | None) -> bytes:
    """Attributes and the data bytes of a binary-mode event as one structured CloudEvent.

    JSON data is embedded byte for byte; anything else goes in `data_base64`, so the mapping
    rejects it as `not_json` while the rejection still holds the original bytes.
    """
    event: dict[str, Any] = dict(attributes)
    if value:
        try:
            _probe.decode(value)
            event["data"] = msgspec.Raw(value.strip())
        except msgspec.ValidationError:  # valid JSON msgspec will not build (e.g. 1e400)
            event["data"] = msgspec.Raw(value.strip())
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            event["data_base64"] = base64.b64encode(value).decode("ascii")
    return msgspec.json.encode(event)


_SPECVERSION_HEADER = "ce_specversion"


def is_kafka_binary(headers: Iterable[tuple[str, Any]]) -> bool:
    """Whether Kafka headers mark a CloudEvent in binary mode (a `ce_specversion` header, in
    any case). Cheap: it runs for every message that has headers."""
    for key, _ in headers:
        if len(key) == 14 and (key == _SPECVERSION_HEADER or key.lower() == _SPECVERSION_HEADER):
            return True
    return False


def from_kafka_binary(headers: Iterable[tuple[str, Any]], value: bytes | None) -> bytes:
    """The structured CloudEvent a Kafka message in binary mode carries (`is_kafka_binary`).

    Attributes are the `ce_`-prefixed headers (UTF-8; later duplicates win), `datacontenttype`
    the `content-type` header, `data` the value (Kafka protocol binding of CloudEvents 1.0).
    """
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for key, raw in headers:
        name = key.lower()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        if name.startswith("ce_") and len(name) > 3:
            attributes[name[3:]] = text
        elif name == "content-type":
            content_type = text
    if content_type is not None:
        attributes.setdefault("datacontenttype", content_type)
    return _structured(attributes, value)


def from_http_binary(headers: Iterable[tuple[str, str]], body: bytes) -> bytes | None:
    """The structured CloudEvent of an HTTP request in binary mode, None when it is not one
    (no `ce-specversion` header): `ce-` headers (percent-decoded) are the attributes,
    `Content-Type` is `datacontenttype`, the body is `data` (HTTP protocol binding)."""
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for key, value in headers:
        name = key.lower()
        if name.startswith("ce-") and len(name) > 3:
            attributes[name[3:]] = unquote(value)
        elif name == "content-type":
            content_type = value
    if "specversion" not in attributes:
        return None
    if content_type is not None:
        attributes.setdefault("datacontenttype", content_type)
    return _structured(attributes, body)
