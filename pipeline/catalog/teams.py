"""Who owned what, and when: teams and their parent groups, service owners and user members.

Every fact holds over `[valid_from, valid_to)` (UTC, half-open), so a re-org does not rewrite
history. Loaders produce a `TeamSnapshot`; `TeamCatalog.merge_snapshot(snapshot, at)` returns a
new catalog with the snapshot folded into the history. A `TeamCatalog` is immutable and safe to
share between threads; lookups are binary searches. The merge rules:
docs/catalogs.md#validity-how-history-is-kept.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Literal, get_args

from pipeline.catalog.errors import CatalogError, CatalogWarning

Kind = Literal["service", "user", "team"]
KINDS: tuple[Kind, ...] = get_args(Kind)

UNOWNED = "unowned"
"""What `TeamCatalog.owner_at` answers for a service nobody owned at that moment."""

OPEN_END = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
"""How an open interval ends in ClickHouse rows: the last millisecond DateTime64(3) can hold."""

_FOREVER = datetime.max.replace(tzinfo=UTC)  # open end inside interval arithmetic

CatalogRow = tuple[str, str, str, str, datetime, datetime]
"""(kind, name, team, parent, valid_from, valid_to) as `rows_for_clickhouse` returns them."""


def parse_instant(value: object) -> datetime:
    """A validity bound as written in a file -> an aware UTC datetime, truncated to milliseconds.

    Accepts an ISO date (`2025-03-01`, meaning midnight UTC), an ISO date-time with an offset
    (`2025-03-01T09:00:00Z`, `2025-03-01T11:00:00+02:00`) and the `date`/`datetime` objects YAML
    makes of unquoted values. Raises ValueError with a message fit for a CatalogError otherwise:
    a date-time without an offset is ambiguous and refused.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
            else:
                parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO date (2025-03-01) or date-time with offset "
                "(2025-03-01T09:00:00Z)"
            ) from None
    else:
        raise ValueError(f"expected an ISO date or date-time, got {type(value).__name__}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{value!s} has no UTC offset; add Z or an offset such as +01:00")
    return to_millis(parsed.astimezone(UTC))


def to_millis(at: datetime) -> datetime:
    """`at` in UTC with the microseconds below a millisecond dropped (what ClickHouse keeps).

    Raises ValueError for a naive datetime: validity is only meaningful in absolute time.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a catalog time must be timezone-aware, got naive {at.isoformat()}")
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


@dataclass(frozen=True, slots=True)
class Fact:
    """One statement of a catalog file, before it is placed in history.

    kind "service": service `name` is owned by `team`; kind "user": user `name` belongs to
    `team`; kind "team": group `name` exists and its parent is `parent` ("" for a root group),
    with `team == name`. `valid_from=None` means "from the moment the snapshot is merged";
    `valid_to=None` means open-ended. `source` says where the statement was read ("file:line").
    """

    kind: Kind
    name: str
    team: str
    parent: str = ""
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: str = ""

    def __post_init__(self) -> None:
        _check_shape(self.kind, self.name, self.team, self.parent)
        if (
            self.valid_from is not None
            and self.valid_to is not None
            and self.valid_to <= self.valid_from
        ):
            raise ValueError(f"{self.source}: valid_to must lie after valid_from")


@dataclass(frozen=True, slots=True)
class Assignment:
    """One interval of history: over `[valid_from, valid_to)`, `name` belonged to `team`.

    Fields as in `Fact`; `valid_to=None` is open-ended. `source` is where the statement that
    opened the interval was read.
    """

    kind: Kind
    name: str
    team: str
    parent: str
    valid_from: datetime
    valid_to: datetime | None
    source: str = ""

    def __post_init__(self) -> None:
        _check_shape(self.kind, self.name, self.team, self.parent)
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(f"{self.kind} {self.name!r}: valid_to must lie after valid_from")

    def covers(self, at: datetime) -> bool:
        """Whether `at` lies in `[valid_from, valid_to)`."""
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)

    @property
    def key(self) -> tuple[Kind, str]:
        return self.kind, self.name

    @property
    def value(self) -> tuple[str, str]:
        """What the interval says; two adjacent intervals with the same value are one."""
        return self.team, self.parent

    def as_row(self) -> CatalogRow:
        """(kind, name, team, parent, valid_from, valid_to) with `OPEN_END` for an open end."""
        end = OPEN_END if self.valid_to is None else self.valid_to
        return self.kind, self.name, self.team, self.parent, self.valid_from, end


def _check_shape(kind: str, name: str, team: str, parent: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not name or not team:
        raise ValueError(f"{kind}: name and team must not be empty")
    if kind == "team" and team != name:
        raise ValueError(f"team {name!r}: a team row's team must be its own name, not {team!r}")
    if kind != "team" and parent:
        raise ValueError(f"{kind} {name!r}: only team rows have a parent")


@dataclass(frozen=True)
class TeamSnapshot:
    """What a set of catalog files says, as `Fact`s, before it is placed in history.

    `sources` lists the files read; `warnings` what of them could not be used (and was left
    out). Snapshots of several files combine with `+`.
    """

    facts: tuple[Fact, ...] = ()
    sources: tuple[str, ...] = ()
    warnings: tuple[CatalogWarning, ...] = ()

    def __add__(self, other: TeamSnapshot) -> TeamSnapshot:
        return TeamSnapshot(
            self.facts + other.facts, self.sources + other.sources, self.warnings + other.warnings
        )

    def declared_groups(self) -> frozenset[str]:
        """Names of the groups the snapshot declares (kind "team" facts)."""
        return frozenset(f.name for f in self.facts if f.kind == "team")

    def undated_since(self, since: datetime, now: datetime) -> TeamSnapshot:
        """This snapshot with its undated facts taken as true since `since`, for a first load
        without stored history ("the files were true since then", so that late events find
        their owner).

        A fact without `valid_from` then starts at `since`, or, when the name has dated facts
        that ended by `now`, where the last of them ended: what a file dates explicitly is
        never overridden by a fact that does not say when it began.
        """
        since, now = to_millis(min(since, now)), to_millis(now)
        last_end: dict[tuple[Kind, str], datetime] = {}
        for fact in self.facts:
            end = fact.valid_to
            if fact.valid_from is not None and end is not None and end <= now:
                key = (fact.kind, fact.name)
                last_end[key] = max(end, last_end.get(key, end))
        facts = []
        for fact in self.facts:
            if fact.valid_from is None:
                start = max(since, last_end.get((fact.kind, fact.name), since))
                if fact.valid_to is None or fact.valid_to > start:
                    fact = replace(fact, valid_from=start)
            facts.append(fact)
        return TeamSnapshot(tuple(facts), self.sources, self.warnings)

    def with_user_names(self, rename: Callable[[str], str]) -> TeamSnapshot:
        """This snapshot with every user renamed (e.g. to the pseudonymous key that events and
        the warehouse know them by); teams, services and groups unchanged."""
        return TeamSnapshot(
            tuple(replace(f, name=rename(f.name)) if f.kind == "user" else f for f in self.facts),
            self.sources,
            self.warnings,
        )

    def without_undeclared_teams(self) -> TeamSnapshot:
        """This snapshot without the facts that name a team that is not a declared group (a
        parent that is not one is dropped, the group kept as a root), each with a warning.

        A snapshot without groups (e.g. an ownership CSV alone) may name any team. This is how
        a set of files is used despite a stray reference; `check_references` is the strict form.
        """
        groups = self.declared_groups()
        if not groups:
            return self
        facts: list[Fact] = []
        warnings = list(self.warnings)
        for fact in self.facts:
            referred = fact.parent if fact.kind == "team" else fact.team
            if referred and referred not in groups:
                what = "parent" if fact.kind == "team" else "team"
                outcome = "taken as a root group" if fact.kind == "team" else "ignored"
                warnings.append(
                    CatalogWarning(
                        "unresolved_reference",
                        f"{what} {referred!r} is not a declared group: {outcome}",
                        source=fact.source or "<snapshot>",
                        entry=f"{fact.kind} {fact.name!r}",
                    )
                )
                if fact.kind != "team":
                    continue
                fact = replace(fact, parent="")
            facts.append(fact)
        return TeamSnapshot(tuple(facts), self.sources, tuple(warnings))

    def check_references(self) -> None:
        """Every team a fact names must be a declared group, when the snapshot declares any.

        A snapshot without groups (e.g. an ownership CSV alone) may name any team. Raises
        CatalogError naming the source of the first fact that refers to an undeclared group.
        """
        groups = self.declared_groups()
        if not groups:
            return
        for fact in self.facts:
            referred = fact.parent if fact.kind == "team" else fact.team
            what = "parent" if fact.kind == "team" else "team"
            if referred and referred not in groups:
                raise CatalogError(
                    f"{what} {referred!r} is not a declared group (declared: "
                    f"{_preview(sorted(groups))})",
                    source=fact.source or "<snapshot>",
                    entry=f"{fact.kind} {fact.name!r}",
                )


@dataclass(frozen=True)
class TeamCatalog:
    """The history of team structure and ownership: non-overlapping intervals per name.

    Build one with `TeamCatalog.empty().merge_snapshot(snapshot, at)` (or
    `pipeline.catalog.sources.load_team_catalog`), or from stored rows with `from_rows`. All
    `at` arguments must be timezone-aware; `at=None` means now.
    """

    assignments: tuple[Assignment, ...] = ()
    warnings: tuple[CatalogWarning, ...] = field(default=(), compare=False)
    """What the files of the last merged snapshot said that could not be used."""
    _index: dict[tuple[Kind, str], tuple[list[datetime], tuple[Assignment, ...]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        grouped: dict[tuple[Kind, str], list[Assignment]] = defaultdict(list)
        for assignment in self.assignments:
            grouped[assignment.key].append(assignment)
        index: dict[tuple[Kind, str], tuple[list[datetime], tuple[Assignment, ...]]] = {}
        for key, items in grouped.items():
            items.sort(key=lambda a: a.valid_from)
            for before, after in itertools.pairwise(items):
                if before.valid_to is None or before.valid_to > after.valid_from:
                    raise ValueError(
                        f"{key[0]} {key[1]!r}: intervals overlap at {after.valid_from.isoformat()}"
                    )
            index[key] = ([a.valid_from for a in items], tuple(items))
        object.__setattr__(self, "_index", index)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def empty(cls) -> TeamCatalog:
        """A catalog that knows nothing: every service is unowned, every user teamless."""
        return cls()

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[object]]) -> TeamCatalog:
        """The inverse of `rows_for_clickhouse`: rebuild history stored in the warehouse.

        A `valid_to` at or after `OPEN_END` means open-ended; naive datetimes are taken as UTC
        (the column's time zone). Raises ValueError for a row that is not (kind, name, team,
        parent, valid_from, valid_to) or overlaps another.
        """
        assignments = []
        for row in rows:
            kind, name, team, parent, valid_from, valid_to = row
            if not isinstance(valid_from, datetime) or not isinstance(valid_to, datetime):
                raise ValueError(f"row {row!r}: valid_from and valid_to must be datetimes")
            if kind not in KINDS:
                raise ValueError(f"row {row!r}: kind must be one of {', '.join(KINDS)}")
            if valid_from.tzinfo is None:
                valid_from = valid_from.replace(tzinfo=UTC)
            if valid_to.tzinfo is None:
                valid_to = valid_to.replace(tzinfo=UTC)
            end = to_millis(valid_to)
            assignments.append(
                Assignment(
                    kind,
                    str(name),
                    str(team),
                    str(parent),
                    to_millis(valid_from),
                    None if end >= OPEN_END else end,
                    "warehouse",
                )
            )
        return cls(tuple(assignments))

    def merge_snapshot(self, new: TeamSnapshot, at: datetime) -> TeamCatalog:
        """History so far plus what `new` says from `at` on; returns a new catalog.

        For every name, at and after `at` the snapshot alone decides (a name it does not
        mention has no owner from `at`); before `at` history is kept, except where a fact with
        an explicit start date covers the time (a file correcting the past on purpose). A fact
        without a start holds from `at`; an unchanged owner keeps its original interval.

        Raises CatalogError when two facts give one name different values for overlapping
        times, when a fact names an undeclared group, or when parent links form a cycle.
        """
        at = to_millis(at)
        new.check_references()
        incoming: dict[tuple[Kind, str], list[Assignment]] = defaultdict(list)
        for fact in new.facts:
            start = fact.valid_from if fact.valid_from is not None else at
            if fact.valid_to is not None and fact.valid_to <= start:
                continue  # ends before the snapshot time without saying when it began
            incoming[fact.kind, fact.name].append(
                Assignment(
                    fact.kind,
                    fact.name,
                    fact.team,
                    fact.parent,
                    start,
                    fact.valid_to,
                    fact.source,
                )
            )
        merged: list[Assignment] = []
        for key in sorted(set(self._index) | set(incoming)):
            stated = _union_without_conflicts(incoming.get(key, []))
            kept = [
                piece
                for old in self._index.get(key, ((), ()))[1]
                for piece in _subtract(_clip_before(old, at), stated)
            ]
            merged.extend(_coalesce(sorted(kept + stated, key=lambda a: a.valid_from)))
        catalog = TeamCatalog(tuple(merged), new.warnings)
        catalog._check_no_parent_cycles()
        return catalog

    # -- lookups --------------------------------------------------------------------------

    def assignment_at(self, kind: Kind, name: str, at: datetime) -> Assignment | None:
        """The interval of `name` that covers `at`, or None."""
        entry = self._index.get((kind, name))
        if entry is None:
            return None
        starts, items = entry
        i = bisect.bisect_right(starts, _aware(at)) - 1
        if i >= 0 and items[i].covers(at):
            return items[i]
        return None

    def owner_at(self, service: str, at: datetime) -> str:
        """The team that owned `service` at `at`, or `UNOWNED` when nobody did then."""
        found = self.assignment_at("service", service, at)
        return UNOWNED if found is None else found.team

    def team_of_user_at(self, user: str, at: datetime) -> str | None:
        """The team `user` belonged to at `at` (their primary team), or None."""
        found = self.assignment_at("user", user, at)
        return None if found is None else found.team

    def parent_of(self, team: str, at: datetime | None = None) -> str | None:
        """The parent group of `team` at `at` (default now); None for a root or unknown team."""
        found = self.assignment_at("team", team, _now_if_none(at))
        if found is None or not found.parent:
            return None
        return found.parent

    def ancestors(self, team: str, at: datetime | None = None) -> tuple[str, ...]:
        """Parent, grandparent, ... of `team` at `at` (default now), nearest first."""
        at = _now_if_none(at)
        chain: list[str] = []
        current = self.parent_of(team, at)
        while current is not None and current not in chain and current != team:
            chain.append(current)
            current = self.parent_of(current, at)
        return tuple(chain)

    def groups_at(self, at: datetime) -> frozenset[str]:
        """Every group declared at `at`, parents included."""
        return frozenset(a.name for a in self._covering("team", at))

    def teams_at(self, at: datetime) -> frozenset[str]:
        """The teams that exist at `at`: leaf groups (groups with no child group then), plus
        teams that own a service or have a member then without being a declared group (a CSV
        without team rows). This is the default denominator of an adoption rate.
        """
        groups = set()
        parents = set()
        for a in self._covering("team", at):
            groups.add(a.name)
            if a.parent:
                parents.add(a.parent)
        owners = {a.team for kind in ("service", "user") for a in self._covering(kind, at)}
        return frozenset((groups | owners) - parents)

    def teams_under(self, group: str, at: datetime) -> frozenset[str]:
        """The leaf teams at `at` in the subtree of `group` (`{group}` for a leaf team itself);
        empty when `group` is unknown at `at`."""
        children: dict[str, list[str]] = defaultdict(list)
        for a in self._covering("team", at):
            if a.parent:
                children[a.parent].append(a.name)
        teams = self.teams_at(at)
        if group not in teams and group not in children:
            return frozenset()
        found: set[str] = set()
        todo = [group]
        seen: set[str] = set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in teams:
                found.add(current)
            todo.extend(children.get(current, ()))
        return frozenset(found)

    def history(self, kind: Kind, name: str) -> tuple[Assignment, ...]:
        """Every interval of `name`, oldest first."""
        return self._index.get((kind, name), ((), ()))[1]

    def names(self, kind: Kind) -> frozenset[str]:
        """Every name of `kind` the catalog has ever known."""
        return frozenset(name for k, name in self._index if k == kind)

    # -- warehouse ------------------------------------------------------------------------

    def rows_for_clickhouse(self) -> list[CatalogRow]:
        """Every interval as (kind, name, team, parent, valid_from, valid_to), sorted by
        (kind, name, valid_from); an open `valid_to` is `OPEN_END`. Intended for the
        `team_catalog` table (docs/catalogs.md), keyed by (kind, name, valid_from): inserting
        the rows of each newer catalog replaces the rows it closed."""
        return [a.as_row() for key in sorted(self._index) for a in self._index[key][1]]

    def retracted_rows(self, previous: TeamCatalog) -> list[CatalogRow]:
        """Rows of `previous` whose (kind, name, valid_from) key no longer exists here.

        Only an explicit correction of the past retracts a row; the warehouse should mark these
        retracted (the `retracted` column of `team_catalog`) when it stores this catalog.
        """
        keys = {(a.kind, a.name, a.valid_from) for a in self.assignments}
        return [
            row for row in previous.rows_for_clickhouse() if (row[0], row[1], row[4]) not in keys
        ]

    # -- internals ------------------------------------------------------------------------

    def _covering(self, kind: str, at: datetime) -> Iterator[Assignment]:
        at = _aware(at)
        for (k, _name), (starts, items) in self._index.items():
            if k != kind:
                continue
            i = bisect.bisect_right(starts, at) - 1
            if i >= 0 and items[i].covers(at):
                yield items[i]

    def _check_no_parent_cycles(self) -> None:
        moments = sorted(
            {a.valid_from for a in self.assignments if a.kind == "team"}
            | {a.valid_to for a in self.assignments if a.kind == "team" and a.valid_to}
        )
        for moment in moments:
            parent = {a.name: a.parent for a in self._covering("team", moment)}
            for start in parent:
                chain = [start]
                current = parent.get(start, "")
                while current:
                    if current in chain:
                        cycle = " -> ".join([*chain[chain.index(current) :], current])
                        first = self.assignment_at("team", start, moment)
                        raise CatalogError(
                            f"parent groups form a cycle at {moment.isoformat()}: {cycle}",
                            source=first.source if first and first.source else "<catalog>",
                            entry=f"team {start!r}",
                        )
                    chain.append(current)
                    current = parent.get(current, "")


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a catalog time must be timezone-aware, got naive {at.isoformat()}")
    return at


def _now_if_none(at: datetime | None) -> datetime:
    return datetime.now(UTC) if at is None else _aware(at)


def _end(a: Assignment) -> datetime:
    return _FOREVER if a.valid_to is None else a.valid_to


def _with(a: Assignment, start: datetime, end: datetime) -> Assignment:
    return Assignment(
        a.kind, a.name, a.team, a.parent, start, None if end == _FOREVER else end, a.source
    )


def _clip_before(a: Assignment, at: datetime) -> list[Assignment]:
    """The part of `a` before `at`."""
    if a.valid_from >= at:
        return []
    return [_with(a, a.valid_from, min(_end(a), at))]


def _subtract(pieces: list[Assignment], cover: list[Assignment]) -> list[Assignment]:
    """`pieces` minus the time `cover` covers."""
    for c in cover:
        rest = []
        for p in pieces:
            if _end(p) <= c.valid_from or _end(c) <= p.valid_from:
                rest.append(p)
                continue
            if p.valid_from < c.valid_from:
                rest.append(_with(p, p.valid_from, c.valid_from))
            if _end(c) < _end(p):
                rest.append(_with(p, _end(c), _end(p)))
        pieces = rest
    return pieces


def _union_without_conflicts(stated: list[Assignment]) -> list[Assignment]:
    """Facts of one name as non-overlapping intervals; differing overlaps are an error."""
    stated = sorted(stated, key=lambda a: a.valid_from)
    for i, a in enumerate(stated):
        for b in stated[i + 1 :]:
            if b.valid_from >= _end(a):
                break
            if a.value != b.value:
                what = "parent" if a.kind == "team" else "team"
                raise CatalogError(
                    f"{a.source or '<snapshot>'} says {what} {_shown(a)} and "
                    f"{b.source or '<snapshot>'} says {_shown(b)} for overlapping times "
                    f"(from {b.valid_from.isoformat()})",
                    source=b.source or "<snapshot>",
                    entry=f"{a.kind} {a.name!r}",
                )
    union: list[Assignment] = []
    for a in stated:
        if union and a.valid_from <= _end(union[-1]) and a.value == union[-1].value:
            last = union[-1]
            union[-1] = _with(last, last.valid_from, max(_end(last), _end(a)))
        else:
            union.append(a)
    return union


def _coalesce(items: list[Assignment]) -> list[Assignment]:
    """Adjacent intervals with the same value become one (the earlier one's source wins)."""
    out: list[Assignment] = []
    for a in items:
        if out and _end(out[-1]) == a.valid_from and out[-1].value == a.value:
            out[-1] = _with(out[-1], out[-1].valid_from, _end(a))
        else:
            out.append(a)
    return out


def _shown(a: Assignment) -> str:
    value = a.parent if a.kind == "team" else a.team
    return repr(value) if value else "(none: a root group)"


def _preview(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
