"""The one error type of the catalogs: it names the file, the line, the entry and the field."""

from __future__ import annotations


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
