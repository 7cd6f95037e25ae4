"""The catalogs in the warehouse, and the catalog a process puts in force from the files.

- `TeamCatalogBuilder` turns team files into the catalog in force: the history stored in the
  warehouse plus what the files say now, with users renamed to their pseudonymous key (what
  events and the warehouse know them by). Without stored history the first load takes the
  files as true since `now - lookback`, so late events find their owner.
- `CatalogStore` reads the stored history back and writes `team_catalog` and
  `capability_catalog` (schemas/clickhouse/0002_catalogs.sql). Both are ReplacingMergeTree
  tables versioned by `loaded_at`: it writes every row of the catalog each time, the newest
  version of a key wins, and intervals a correction removed are written with `retracted = 1`.
  Writing the same catalogs twice therefore changes nothing.

Contract: a `CatalogStore` uses one warehouse connection and must be called from one thread at
a time (the worker calls it on the sink's thread). The builder is pure apart from its clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.catalog.capabilities import Capability, CapabilityCatalog
from pipeline.catalog.sources import parse_team_files
from pipeline.catalog.teams import CatalogRow, TeamCatalog

if TYPE_CHECKING:  # the catalogs stay importable without a warehouse client
    from pipeline.warehouse.connection import Warehouse

log = logging.getLogger("uptake.catalog")

TEAM_TABLE = "team_catalog"
CAPABILITY_TABLE = "capability_catalog"
TEAM_COLUMNS = (
    "kind",
    "name",
    "team",
    "parent",
    "valid_from",
    "valid_to",
    "retracted",
    "loaded_at",
)
CAPABILITY_COLUMNS = (
    "name",
    "platform",
    "owner",
    "description",
    "event_types",
    "apis",
    "target_teams",
    "north_star_name",
    "north_star_outcome",
    "north_star_measure",
    "north_star_decision",
    "north_star_unit",
    "declared",
    "loaded_at",
)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class TeamCatalogBuilder:
    """Builds the team catalog in force from the bytes of the team files.

    `history` is what the warehouse stored (`CatalogStore.read_team_history`); `user_key`
    renames users (the pseudonymiser's `key_of`); `lookback` is how far back a first load
    without history takes the files as true (the worker's accepted lateness).
    """

    history: TeamCatalog
    user_key: Callable[[str], str]
    lookback: timedelta

    def __call__(
        self, contents: Mapping[Path, bytes], at: datetime, previous: TeamCatalog | None
    ) -> TeamCatalog:
        """The catalog after reading `contents` at `at`; `previous` is the catalog in force
        (None for the first load). The signature of a `CatalogWatcher` build function.

        Raises CatalogError for broken files or conflicting facts, naming users as written.
        """
        snapshot = parse_team_files(contents)
        base = previous if previous is not None else self.history
        if previous is None and not self.history.assignments:
            snapshot = snapshot.undated_since(at - self.lookback, at)
        # Conflicts are found here, with users named as written in the files ...
        TeamCatalog.empty().merge_snapshot(snapshot, at)
        # ... so this merge, by key, cannot raise about a user.
        return base.merge_snapshot(snapshot.with_user_names(self.user_key), at)


@dataclass(frozen=True)
class SyncSummary:
    """What one write of the catalogs stored."""

    teams: int  # leaf teams at the time of writing (TeamCatalog.teams_at)
    groups: int  # every group then, leaf teams included
    services: int
    users: int
    team_rows: int
    retracted_rows: int
    capabilities: int  # declared
    undeclared: tuple[str, ...]

    def line(self) -> str:
        undeclared = (
            f", {len(self.undeclared)} undeclared ({', '.join(self.undeclared)})"
            if self.undeclared
            else ""
        )
        return (
            f"{TEAM_TABLE}: {self.teams} teams ({self.groups} groups), {self.services} services, "
            f"{self.users} users "
            f"({self.team_rows} rows, {self.retracted_rows} retracted); "
            f"{CAPABILITY_TABLE}: {self.capabilities} capabilities{undeclared}"
        )


class CatalogStore:
    """Reads and writes the catalog tables; see the module docstring for the contract."""

    def __init__(self, warehouse: Warehouse, clock: Callable[[], datetime] | None = None) -> None:
        self.warehouse = warehouse
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stored_teams: TeamCatalog | None = None  # what the table holds, as far as known
        self._stored_declared: set[str] | None = None
        self._last_version = datetime.min.replace(tzinfo=UTC)

    def read_team_history(self) -> TeamCatalog:
        """The history stored in `team_catalog` (retracted rows left out).

        Intervals of one name should never overlap; if they do (two processes closed an
        interval at different moments), a later start cuts the interval before it.
        """
        rows = self.warehouse.rows(
            f"SELECT kind, name, team, parent, valid_from, valid_to FROM {TEAM_TABLE} FINAL "
            "WHERE retracted = 0 ORDER BY kind, name, valid_from"
        )
        history = TeamCatalog.from_rows(_without_overlaps(rows))
        self._stored_teams = history
        return history

    def write(self, teams: TeamCatalog, capabilities: CapabilityCatalog) -> SyncSummary:
        """Store both catalogs: every team interval, the intervals `teams` no longer has as
        retracted, every declared capability, and every undeclared one seen so far."""
        version = self._version()
        team_rows = teams.rows_for_clickhouse()
        retracted = teams.retracted_rows(self._stored_teams) if self._stored_teams else []
        self._insert(
            TEAM_TABLE,
            TEAM_COLUMNS,
            [(*row, 0, version) for row in team_rows] + [(*row, 1, version) for row in retracted],
        )
        self._stored_teams = teams
        declared, undeclared = self._write_capabilities(capabilities, teams, version)
        return SyncSummary(
            teams=len(teams.teams_at(version)),
            groups=_count_valid(team_rows, "team", version),
            services=_count_valid(team_rows, "service", version),
            users=_count_valid(team_rows, "user", version),
            team_rows=len(team_rows),
            retracted_rows=len(retracted),
            capabilities=declared,
            undeclared=undeclared,
        )

    def _write_capabilities(
        self, capabilities: CapabilityCatalog, teams: TeamCatalog, version: datetime
    ) -> tuple[int, tuple[str, ...]]:
        if self._stored_declared is None:
            self._stored_declared = {
                str(name)
                for (name,) in self.warehouse.rows(
                    f"SELECT name FROM {CAPABILITY_TABLE} FINAL WHERE declared = 1"
                )
            }
        # Seen in events, or declared before and no longer: both are undeclared now.
        undeclared = tuple(
            sorted((capabilities.undeclared_seen() | self._stored_declared) - capabilities.names())
        )
        rows = [_capability_row(c, teams, version) for c in capabilities]
        rows += [_capability_row(Capability.undeclared(n), teams, version) for n in undeclared]
        self._insert(CAPABILITY_TABLE, CAPABILITY_COLUMNS, rows)
        self._stored_declared = set(capabilities.names())
        return len(capabilities), undeclared

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            self.warehouse.insert_columns(
                table, [list(c) for c in zip(*rows, strict=True)], columns
            )

    def _version(self) -> datetime:
        """`loaded_at` of the next write: now, but always after the previous write's."""
        now = self._clock().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
        self._last_version = max(now, self._last_version + _MS)
        return self._last_version


def _capability_row(capability: Capability, teams: TeamCatalog, at: datetime) -> tuple[Any, ...]:
    north = capability.north_star
    targets = sorted(capability.targets_at(teams, at)) if capability.declared else []
    return (
        capability.name,
        capability.platform or "",
        capability.owner or "",
        capability.description,
        sorted(capability.event_types),
        sorted(capability.apis),
        targets,
        north.name if north else "",
        north.outcome if north else "",
        north.measure if north else "",
        (north.decision or "") if north else "",
        (north.unit or "") if north else "",
        1 if capability.declared else 0,
        at,
    )


def _count_valid(rows: Iterable[CatalogRow], kind: str, at: datetime) -> int:
    return sum(1 for row in rows if row[0] == kind and row[4] <= at < row[5])


def _without_overlaps(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows sorted by (kind, name, valid_from) with each interval cut where the next begins."""
    out: list[list[Any]] = []
    cut = 0
    for row in rows:
        current = list(row)
        if out and out[-1][:2] == current[:2] and _utc(out[-1][5]) > _utc(current[4]):
            out[-1][5] = current[4]
            cut += 1
        out.append(current)
    if cut:
        log.warning(
            "%s held %d overlapping intervals (written by two processes?); later starts win",
            TEAM_TABLE,
            cut,
        )
    return [tuple(r) for r in out if _utc(r[5]) > _utc(r[4])]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
