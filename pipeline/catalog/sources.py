"""Which loader reads which team file, and loading a set of sources into one catalog.

A path is a Backstage catalog (`.yaml`/`.yml`), an ownership CSV (`.csv`) or a folder, which
stands for the files with those suffixes directly inside it, in name order. Backstage
`Location` entities are followed: their targets (relative to the file, glob patterns allowed)
are read too, recursively, each file once. A Backstage backend's catalog API
(`backstage_api.BackstageCatalogApi`) may be one more source.

Everything read forms **one catalog**: entities of all Backstage files and of the API are
resolved together (a child, a parent, a member or an owner may be declared in any of them), and
a CSV row may name a group declared in a Backstage file. What cannot be used (a reference to an
entity the catalog does not hold, a missing or remote Location target, ...) becomes a
`CatalogWarning` on the snapshot; only a file that is not YAML (or CSV), or not Backstage
entities, raises CatalogError.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.catalog.backstage import Entity, location_targets, read_entities, resolve_entities
from pipeline.catalog.backstage_api import API_SOURCE_PREFIX, BackstageCatalogApi
from pipeline.catalog.errors import CatalogError, CatalogWarning
from pipeline.catalog.ownership import parse_ownership_csv
from pipeline.catalog.teams import TeamCatalog, TeamSnapshot

BACKSTAGE_SUFFIXES = frozenset({".yaml", ".yml"})
CSV_SUFFIXES = frozenset({".csv"})
DEFAULT_TEAM_PATHS = (Path("config/teams"),)
DEFAULT_CAPABILITIES_PATH = Path("config/capabilities.yaml")
_GLOB = frozenset("*?[")


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Folders replaced by the team files directly inside them (sorted); files kept as given,
    whether they exist or not, so a missing file is reported when it is read."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file() and p.suffix.lower() in BACKSTAGE_SUFFIXES | CSV_SUFFIXES
                )
            )
        else:
            out.append(path)
    return out


def _is_api(path: Path) -> bool:
    return str(path).startswith(API_SOURCE_PREFIX)


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"not UTF-8: {exc}", source=str(path)) from None


def parse_team_files(contents: Mapping[Path, bytes]) -> TeamSnapshot:
    """One snapshot of already-read sources (the watcher parses exactly the bytes it hashed):
    every Backstage entity resolved at once, CSV facts added, stray references left out with a
    warning each."""
    entities: list[Entity] = []
    csv = TeamSnapshot()
    for path, raw in contents.items():
        source = str(path)
        text = _decode(path, raw)
        suffix = path.suffix.lower()
        if _is_api(path) or suffix in BACKSTAGE_SUFFIXES:
            entities.extend(read_entities(text, source))
        elif suffix in CSV_SUFFIXES:
            csv += parse_ownership_csv(text, source)
        else:
            raise CatalogError(
                "unknown kind of team file: use .yaml/.yml (Backstage) or .csv (ownership)",
                source=source,
            )
    backstage = resolve_entities(entities)
    located = TeamSnapshot(warnings=tuple(_location_warnings(entities, contents)))
    sources = TeamSnapshot(sources=tuple(str(p) for p in contents))
    return (sources + backstage + located + csv).without_undeclared_teams()


def _location_warnings(
    entities: Iterable[Entity], contents: Mapping[Path, bytes]
) -> list[CatalogWarning]:
    """A warning for each Location target that was not read: remote, or not found."""
    read = {os.path.abspath(p) for p in contents if not _is_api(p)}
    warnings = []
    for entity in entities:
        if entity.kind != "location" or entity.source.startswith(API_SOURCE_PREFIX):
            continue
        for field, target, remote in location_targets(entity):
            if remote:
                warnings.append(
                    CatalogWarning(
                        "location_target_remote",
                        f"{target!r} is a remote target: Uptake reads local files only "
                        "(use the Backstage API source for a running Backstage): not followed",
                        source=entity.source,
                        line=entity.doc.line_of(*_field_path(field)),
                        entry=entity.label,
                        field=field,
                    )
                )
                continue
            wanted = _target_path(Path(entity.source), target)
            if _GLOB & set(target):
                found = any(fnmatch.fnmatch(p, os.path.abspath(wanted)) for p in read)
            else:
                found = os.path.abspath(wanted) in read
            if not found:
                warnings.append(
                    CatalogWarning(
                        "location_target_missing",
                        f"{target!r} ({wanted}) does not exist: not followed",
                        source=entity.source,
                        line=entity.doc.line_of(*_field_path(field)),
                        entry=entity.label,
                        field=field,
                    )
                )
    return warnings


def _field_path(field: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in field.split("."))


def _target_path(location_file: Path, target: str) -> Path:
    return Path(os.path.normpath(location_file.parent / target))


def _location_files(path: Path, text: str) -> list[Path]:
    """The local files the Locations of one Backstage file point to (globs expanded)."""
    if "location" not in text.lower():
        return []  # no Location entity: spare the YAML parse (it is parsed again later)
    found: list[Path] = []
    for entity in read_entities(text, str(path)):
        if entity.kind != "location":
            continue
        for _field, target, remote in location_targets(entity):
            if remote:
                continue
            wanted = _target_path(path, target)
            if _GLOB & set(target):
                found.extend(
                    Path(p)
                    for p in sorted(glob.glob(str(wanted), recursive=True))
                    if Path(p).is_file()
                )
            elif wanted.is_file():
                found.append(wanted)
    return found


def read_files(paths: Iterable[Path]) -> dict[Path, bytes]:
    """The bytes of every file of `expand_paths(paths)` and of the files their Locations point
    to (recursively, each file once). Raises CatalogError for a missing or unreadable
    configured file; a missing Location target is left out (a warning when parsed), and so are
    the Locations of a file that is not YAML (an error when parsed)."""
    contents: dict[Path, bytes] = {}
    seen: set[str] = set()
    queue: list[tuple[Path, bool]] = [(p, True) for p in expand_paths(paths)]
    while queue:
        path, configured = queue.pop(0)
        key = os.path.abspath(path)
        if key in seen:
            continue
        seen.add(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if configured:
                raise CatalogError("file not found", source=str(path)) from None
            continue  # removed since it was listed: a warning when parsed
        except OSError as exc:
            raise CatalogError(f"cannot read: {exc}", source=str(path)) from None
        contents[path] = raw
        if path.suffix.lower() in BACKSTAGE_SUFFIXES:
            # Bytes that are not YAML are reported when parsed (a watcher: once per content).
            with contextlib.suppress(CatalogError):
                queue.extend((p, False) for p in _location_files(path, _decode(path, raw)))
    return contents


@dataclass(frozen=True)
class TeamSources:
    """Where the team catalog comes from: files and folders, and optionally a Backstage API.

    `read()` returns what `parse_team_files` takes. `live` says that some source has no file
    whose stats tell when it changed (the API), so a watcher must read on every poll.
    """

    paths: tuple[Path, ...]
    api: BackstageCatalogApi | None = None

    @property
    def live(self) -> bool:
        return self.api is not None

    def read(self) -> dict[Path, bytes]:
        contents = read_files(self.paths)
        if self.api is not None:
            contents[self.api.source] = self.api.read()
        return contents

    def describe(self) -> str:
        shown = [str(p) for p in self.paths]
        if self.api is not None:
            shown.append(f"Backstage API {self.api.query_url}")
        return ", ".join(shown)


def load_team_snapshot(paths: Iterable[Path]) -> TeamSnapshot:
    """Read every team file of `paths` (and what their Locations point to) into one snapshot."""
    return parse_team_files(read_files(paths))


def load_team_catalog(
    paths: Iterable[Path], at: datetime, history: TeamCatalog | None = None
) -> TeamCatalog:
    """`history` (default: empty) merged with the snapshot of `paths` taken at `at`.

    On a first load without stored history, facts without dates hold from `at`: events that
    happened before are unowned. Pass an earlier `at` (e.g. now minus the accepted lateness) to
    let the first snapshot cover late events, or pass the history stored in the warehouse.
    """
    return (history or TeamCatalog.empty()).merge_snapshot(load_team_snapshot(paths), at)
