"""The one error type of the catalogs: it names the file, the line, the entry and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class CatalogError(ValueError):
    """A catalog file cannot be used as written.

    `str(error)` reads `FILE:LINE: ENTRY: field FIELD: what is wrong`; the parts that are not
    known are left out. The parts are also attributes, so callers and tests need not parse the
    message.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        line: int | None = None,
        entry: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.entry = entry
        self.field = field
        where = source if line is None else f"{source}:{line}"
        parts = [where]
        if entry:
            parts.append(entry)
        if field:
            parts.append(f"field {field!r}")
        parts.append(message)
        super().__init__(": ".join(parts))


WARNING_KINDS = (
    "unresolved_reference",  # a relation names an entity the catalog does not hold
    "wrong_kind",  # a relation names an entity of a kind Uptake cannot use there
    "duplicate_entity",  # the same kind:namespace/name twice: the first one is used
    "conflicting_relation",  # e.g. a group listed as child of two groups: one is chosen
    "ambiguous_membership",  # a user's team picked among several groups by a stated rule
    "location_target_missing",  # a Location target that does not exist
    "location_target_remote",  # a url: / remote Location target: not followed
)
"""The kinds of `CatalogWarning`: a closed set, so a metric label stays bounded."""


class CatalogWarning:
    """A part of a catalog that cannot be used as written, while the rest of it is used.

    `kind` is one of `WARNING_KINDS`; `str(warning)` reads like a `CatalogError`
    (`FILE:LINE: ENTRY: field FIELD: what is wrong`).
    """

    __slots__ = ("kind", "text")

    def __init__(self, kind: str, message: str, **where: Any) -> None:
        """`where`: `CatalogError`'s keywords (source, and line, entry, field where known)."""
        if kind not in WARNING_KINDS:
            raise ValueError(f"unknown catalog warning kind {kind!r}")
        self.kind = kind
        self.text = str(CatalogError(message, **where))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"CatalogWarning({self.kind!r}, {self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CatalogWarning) and (self.kind, self.text) == (
            other.kind,
            other.text,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.text))


def read_catalog_file(path: Path, encoding: str = "utf-8") -> str:
    """The text of catalog file `path`; CatalogError naming it when it is missing or unreadable."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise CatalogError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read: {exc}", source=str(path)) from None
