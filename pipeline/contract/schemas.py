"""The event contract as JSON Schema (draft 2020-12): loading the files and validating with them.

The msgspec structs in `pipeline.contract.events` are what the worker runs on the hot path; the
JSON Schema files in `schemas/events/` publish the same contract to emitters in any language, and
`tests/unit/contract/test_schema_agreement.py` keeps the two in agreement. This module is for tests
and tooling, never for the worker's hot path.

The schemas describe exactly what the decoder accepts, so they use no `format`: the standard
`date-time` and `uuid` formats are stricter than msgspec (which also takes a space instead of
`T`, `+0200` offsets and UUIDs without hyphens), and `format` is annotation-only by default in
draft 2020-12 anyway. Timestamps and UUIDs are checked by exact `pattern`s instead, calendar
dates included, which every draft 2020-12 validator enforces. `is_rfc3339` is the timestamp
rule written out in Python; the tests check it, the pattern and msgspec against each other.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path

# jsonschema ships no type information (and types-jsonschema is not a dev dependency).
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pipeline.resources import folder

SCHEMA_DIR = folder("schemas/events")
"""The folder with the JSON Schema files: envelope, one file per type and version, dispatch."""

BASE_URI = "https://uptake.dev/schemas/events/"
"""Every schema's `$id` is this base followed by its file name."""

_MAX_MESSAGE = 160
_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?:[Zz]|[+-](?P<oh>\d{2}):?(?P<om>\d{2}))",
    re.ASCII,
)
_LAST_SECOND = datetime.max.replace(microsecond=0)


def load_registry(schema_dir: Path | None = None) -> Registry:
    """A registry holding every schema of `schema_dir` (default SCHEMA_DIR) under its `$id`.

    Raises ValueError if a file's `$id` is not BASE_URI followed by its file name, so relative
    `$ref`s between the files resolve the same way for every validator.
    """
    folder = schema_dir or SCHEMA_DIR
    return _load_registry(folder.resolve())


@cache
def _load_registry(folder: Path) -> Registry:
    resources = []
    for path in sorted(folder.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        expected = BASE_URI + path.name
        if contents.get("$id") != expected:
            raise ValueError(f"{path}: $id must be {expected!r}, not {contents.get('$id')!r}")
        resources.append((expected, Resource.from_contents(contents, DRAFT202012)))
    if not resources:
        raise ValueError(f"no JSON Schema files in {folder}")
    registry: Registry = Registry().with_resources(resources)
    return registry.crawl()


def is_rfc3339(instance: object) -> bool:
    """True unless `instance` is a string the worker does not read as a timestamp with an offset.

    Exactly what msgspec accepts for a timezone-aware datetime (and the `utcTime` pattern of
    envelope.v1.json): RFC 3339 with `T`/`t` and `Z`/`z`, also a space instead of `T` and an
    offset without a colon (`+0200`); any number of fraction digits. Stricter than RFC 3339 where
    the worker is: no leap second (`:60`), years from 0001, and nothing that rounds (to whole
    microseconds) past 9999-12-31T23:59:59.999999. Non-strings pass, like JSON Schema keywords
    for strings.
    """
    if not isinstance(instance, str):
        return True
    match = _TIMESTAMP.fullmatch(instance)
    if match is None:
        return False
    try:
        at = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    except ValueError:
        return False
    if match["oh"] is not None and (int(match["oh"]) > 23 or int(match["om"]) > 59):
        return False
    fraction = match["fraction"] or ""
    rounds_to_next_second = fraction[:6] == "999999" and fraction[6:7] >= "5"
    return not (rounds_to_next_second and at == _LAST_SECOND)


def format_checker() -> FormatChecker:
    """jsonschema's format checker, asserting standard formats should a schema use one.

    The event schemas use none (see the module docstring): their patterns are exact.
    """
    return FormatChecker()


def validator(name: str = "message.json") -> Draft202012Validator:
    """A validator for the schema file `name` (default: a whole Kafka message) that asserts formats.

    Cached per name: validators are immutable, share one freely.
    """
    return _validator(name)


@cache
def _validator(name: str) -> Draft202012Validator:
    registry = load_registry()
    schema = registry.contents(BASE_URI + name)
    return Draft202012Validator(schema, registry=registry, format_checker=format_checker())


def errors(instance: object, name: str = "message.json") -> list[str]:
    """Why `instance` (parsed JSON) is invalid under schema `name`, one readable line per error.

    Each line starts with the JSON path of the offending value, e.g.
    `$[1].data.status_code: 600 is greater than the maximum of 599`. Empty when valid.
    """
    found = validator(name).iter_errors(instance)
    return sorted({_describe(error) for error in found})


def _describe(error: ValidationError) -> str:
    if error.validator in ("anyOf", "oneOf") and error.context:
        schema = error.schema if isinstance(error.schema, dict) else {}
        head = schema.get("description") or "not valid under any of the given schemas"
        alternatives = sorted({_describe(sub) for sub in error.context})
        return f"{error.json_path}: {head} ({' | '.join(alternatives)})"
    return f"{error.json_path}: {_shorten(error.message)}"


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
