"""The event contract as JSON Schema (draft 2020-12): loading the files and validating with them.

The msgspec structs in `pipeline.contract.events` are what the worker runs on the hot path; the
JSON Schema files in `schemas/events/` publish the same contract to emitters in any language, and
`tests/contract/test_schema_agreement.py` keeps the two in agreement. This module is for tests
and tooling, never for the worker's hot path.

`format` is annotation-only by default in draft 2020-12 and jsonschema checks `date-time` only
when the optional `rfc3339-validator` package is installed, so `validator()` registers its own
strict RFC 3339 check (a real calendar date, an explicit offset) on the format checker it uses.
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

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "events"
"""The folder with the JSON Schema files: envelope, one file per type and version, dispatch."""

BASE_URI = "https://uptake.dev/schemas/events/"
"""Every schema's `$id` is this base followed by its file name."""

_MAX_MESSAGE = 160
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.\d+)?"
    r"(?:[Zz]|[+-](?P<oh>\d{2}):(?P<om>\d{2}))",
    re.ASCII,
)


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
    """True unless `instance` is a string that is not an RFC 3339 date-time with an offset.

    Stricter than RFC 3339 where the worker is: no leap second (`:60`), years from 0001.
    Non-strings pass, as JSON Schema formats only constrain strings.
    """
    if not isinstance(instance, str):
        return True
    match = _RFC3339.fullmatch(instance)
    if match is None:
        return False
    try:
        datetime.fromisoformat(f"{match['date']}T{match['time']}")
    except ValueError:
        return False
    return match["oh"] is None or (int(match["oh"]) <= 23 and int(match["om"]) <= 59)


def format_checker() -> FormatChecker:
    """jsonschema's format checker with a strict `date-time` (see `is_rfc3339`)."""
    checker = FormatChecker()
    checker.checks("date-time")(is_rfc3339)
    return checker


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
