"""Which loader reads which team file, and loading a set of files into one catalog.

A path is a Backstage catalog (`.yaml`/`.yml`), an ownership CSV (`.csv`) or a folder, which
stands for the files with those suffixes directly inside it, in name order. Files are read as
one snapshot: a fact in one file may refer to a group declared in another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from pipeline.catalog.backstage import parse_backstage
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.ownership import parse_ownership_csv
from pipeline.catalog.teams import TeamCatalog, TeamSnapshot

BACKSTAGE_SUFFIXES = frozenset({".yaml", ".yml"})
CSV_SUFFIXES = frozenset({".csv"})
DEFAULT_TEAM_PATHS = (Path("config/teams"),)
DEFAULT_CAPABILITIES_PATH = Path("config/capabilities.yaml")


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


def parse_team_files(contents: Mapping[Path, bytes]) -> TeamSnapshot:
    """One snapshot of already-read files (the watcher parses exactly the bytes it hashed)."""
    snapshot = TeamSnapshot()
    for path, raw in contents.items():
        source = str(path)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CatalogError(f"not UTF-8: {exc}", source=source) from None
        suffix = path.suffix.lower()
        if suffix in BACKSTAGE_SUFFIXES:
            snapshot += parse_backstage(text, source)
        elif suffix in CSV_SUFFIXES:
            snapshot += parse_ownership_csv(text, source)
        else:
            raise CatalogError(
                "unknown kind of team file: use .yaml/.yml (Backstage) or .csv (ownership)",
                source=source,
            )
    return snapshot


def read_files(paths: Iterable[Path]) -> dict[Path, bytes]:
    """The bytes of every file of `expand_paths(paths)`. Raises CatalogError for a missing one."""
    contents: dict[Path, bytes] = {}
    for path in expand_paths(paths):
        try:
            contents[path] = path.read_bytes()
        except FileNotFoundError:
            raise CatalogError("file not found", source=str(path)) from None
        except OSError as exc:
            raise CatalogError(f"cannot read: {exc}", source=str(path)) from None
    return contents


def load_team_snapshot(paths: Iterable[Path]) -> TeamSnapshot:
    """Read every team file of `paths` into one snapshot."""
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
