"""The ownership CSV (`config/teams/ownership.csv`) -> a `TeamSnapshot`.

Columns, in this order: `kind,name,team,valid_from,valid_to`.

| kind          | name          | team                                       |
|---------------|---------------|--------------------------------------------|
| `service`     | a service     | the team that owns it                      |
| `user`        | a user        | the team the user belongs to               |
| `team-parent` | a team/group  | its parent group; empty for a root group   |

`valid_from`/`valid_to` are ISO dates (`2025-03-01`, midnight UTC) or ISO date-times with an
offset. An empty `valid_from` means "from the moment the snapshot is merged", an empty
`valid_to` open-ended. Rows whose first cell starts with `#` are comments; blank rows are
skipped. This is the place to write history down: dated rows are taken as they are.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

from pipeline.catalog.errors import CatalogError, read_catalog_file
from pipeline.catalog.teams import Fact, Kind, TeamSnapshot, parse_instant

COLUMNS = ("kind", "name", "team", "valid_from", "valid_to")
CSV_KINDS: dict[str, Kind] = {"service": "service", "user": "user", "team-parent": "team"}


def load_ownership_csv(path: Path) -> TeamSnapshot:
    """Read one ownership CSV. Raises CatalogError naming the file, line and column."""
    text = read_catalog_file(path, "utf-8-sig")
    return parse_ownership_csv(text, str(path))


def parse_ownership_csv(text: str, source: str) -> TeamSnapshot:
    """The facts of ownership CSV `text`; `source` names it in errors."""
    reader = csv.reader(io.StringIO(text))
    facts: list[Fact] = []
    header_seen = False
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in cells]
        if not header_seen:
            _check_header(cells, source, line)
            header_seen = True
            continue
        facts.append(_row(cells, source, line))
    if not header_seen:
        raise CatalogError(f"empty: expected the header {','.join(COLUMNS)}", source=source)
    return TeamSnapshot(tuple(facts), (source,))


def _check_header(cells: list[str], source: str, line: int) -> None:
    if tuple(c.lower() for c in cells) != COLUMNS:
        raise CatalogError(
            f"the header must be {','.join(COLUMNS)}, not {','.join(cells)}",
            source=source,
            line=line,
        )


def _row(cells: list[str], source: str, line: int) -> Fact:
    if len(cells) != len(COLUMNS):
        raise CatalogError(
            f"expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), found {len(cells)}",
            source=source,
            line=line,
        )
    raw_kind, name, team, raw_from, raw_to = cells
    entry = f"{raw_kind} {name!r}" if name else raw_kind or "row"

    def fail(message: str, column: str) -> CatalogError:
        return CatalogError(message, source=source, line=line, entry=entry, field=column)

    kind = CSV_KINDS.get(raw_kind)
    if kind is None:
        raise fail(f"{raw_kind!r} is not one of {', '.join(CSV_KINDS)}", "kind")
    if not name:
        raise fail("must not be empty", "name")
    if kind != "team" and not team:
        raise fail(f"must not be empty: a {raw_kind} row names its team", "team")
    bounds: list[datetime | None] = []
    for column, raw in (("valid_from", raw_from), ("valid_to", raw_to)):
        try:
            bounds.append(parse_instant(raw) if raw else None)
        except ValueError as exc:
            raise fail(str(exc), column) from None
    valid_from, valid_to = bounds
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise fail(f"{raw_to} must lie after valid_from {raw_from}", "valid_to")
    where = f"{source}:{line}"
    if kind == "team":
        return Fact("team", name, name, team, valid_from, valid_to, where)
    return Fact(kind, name, team, "", valid_from, valid_to, where)
