"""The capability catalog: which platform capabilities exist and which events count as using them.

`config/capabilities.yaml` declares each capability: its platform type, the platform team that
owns it, the events that count as use (event types, optionally only calls of some APIs), the
teams it is meant for (the denominator of its adoption rate; default every team of the team
catalog) and optionally a north-star metric. The format is in docs/catalogs.md.

Events name their capability themselves (`capability` in the envelope). A name the catalog does
not declare is not dropped: `CapabilityCatalog.resolve` returns an undeclared `Capability` under
that name, so its use is still counted, and records the name for reporting.

Contract: a `CapabilityCatalog` is immutable apart from its record of undeclared names, which
is thread-safe and may be shared with the next catalog after a reload, so no name is forgotten.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pipeline.catalog._yaml import YamlDocument, load_documents
from pipeline.catalog.errors import CatalogError, read_catalog_file
from pipeline.catalog.teams import TeamCatalog
from pipeline.contract.events import EVENT_TYPES

PlatformType = Literal["developer-infrastructure", "data-ml", "business-capability"]
PLATFORM_TYPES: tuple[PlatformType, ...] = get_args(PlatformType)

NorthStarMeasure = Literal["count", "value_sum", "decision_rate"]
NORTH_STAR_MEASURES: tuple[NorthStarMeasure, ...] = get_args(NorthStarMeasure)

_PLATFORMS: dict[str, PlatformType] = {p: p for p in PLATFORM_TYPES}
_MEASURES: dict[str, NorthStarMeasure] = {m: m for m in NORTH_STAR_MEASURES}

FORMAT_VERSION = 1
_NAME_MAX = 200  # the envelope's limit on `capability`

_TOP_KEYS = frozenset({"version", "capabilities"})
_ENTRY_KEYS = frozenset(
    {"name", "platform", "owner", "description", "usage", "target_teams", "north_star"}
)
_USAGE_KEYS = frozenset({"event_types", "apis"})
_NORTH_STAR_KEYS = frozenset({"name", "description", "outcome", "measure", "decision", "unit"})


@dataclass(frozen=True)
class NorthStar:
    """The business outcome a capability is meant to move, read from `api_call` outcomes.

    Over the `data.outcome` objects named `outcome` of events that count as use:
    `count` counts them, `value_sum` sums their `value` (only those with `decision`, when
    given), `decision_rate` is the share whose `decision` equals `decision`.
    """

    name: str
    outcome: str
    measure: NorthStarMeasure
    decision: str | None = None
    unit: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Capability:
    """A platform capability and what counts as using it.

    `apis` empty means any API; it filters `api_call` events only. `target_teams` None means
    every team of the team catalog; names in it may be groups, standing for their leaf teams.
    An undeclared capability (`declared=False`) has no platform type and no owner, and any
    event of a known type counts as its use.
    """

    name: str
    platform: PlatformType | None
    owner: str | None
    event_types: frozenset[str]
    apis: frozenset[str] = frozenset()
    target_teams: tuple[str, ...] | None = None
    north_star: NorthStar | None = None
    description: str = ""
    declared: bool = True

    @classmethod
    def undeclared(cls, name: str) -> Capability:
        """The stand-in for a capability name the catalog does not declare."""
        return _undeclared(name)

    def counts_as_use(self, event_type: str, api: str | None = None) -> bool:
        """Whether an event of `event_type` (calling `api`, for `api_call`) is use of this."""
        if event_type not in self.event_types:
            return False
        if event_type == "api_call" and self.apis:
            return api in self.apis
        return True

    def targets_at(self, teams: TeamCatalog, at: datetime) -> frozenset[str]:
        """The teams this capability is meant for at `at`: the denominator of its adoption rate.

        Without `target_teams`, every team of `teams` at `at` (`TeamCatalog.teams_at`). With
        it, each name stands for the leaf teams under it at `at`; a name the team catalog does
        not know then stands for itself (`CapabilityCatalog.check_against` reports it).
        """
        if self.target_teams is None:
            return teams.teams_at(at)
        found: set[str] = set()
        for name in self.target_teams:
            found |= teams.teams_under(name, at) or {name}
        return frozenset(found)


@functools.lru_cache(maxsize=4096)
def _undeclared(name: str) -> Capability:
    return Capability(name, None, None, frozenset(EVENT_TYPES), declared=False)


def counts_as_use(event_type: str, capability: Capability, api: str | None = None) -> bool:
    """Whether an event of `event_type` (calling `api`) counts as use of `capability`."""
    return capability.counts_as_use(event_type, api)


class UndeclaredCapabilities:
    """The undeclared capability names seen so far and how often each was resolved.

    Thread-safe; names are never removed. Share one instance across reloads of the catalog.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"UndeclaredCapabilities({sorted(self.seen())!r})"

    def record(self, name: str, count: int = 1) -> None:
        """Count `count` uses of the undeclared capability `name`."""
        with self._lock:
            self._counts[name] += count

    def seen(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._counts)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class CapabilityCatalog:
    """The declared capabilities, by name; see the module docstring for the contract."""

    capabilities: tuple[Capability, ...]
    source: str = ""
    undeclared: UndeclaredCapabilities = field(
        default_factory=UndeclaredCapabilities, repr=False, compare=False
    )
    _by_name: dict[str, Capability] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Capability] = {}
        for capability in self.capabilities:
            if capability.name in by_name:
                raise ValueError(f"capability {capability.name!r} is declared twice")
            by_name[capability.name] = capability
        object.__setattr__(self, "_by_name", by_name)

    def __iter__(self) -> Iterator[Capability]:
        return iter(self.capabilities)

    def __len__(self) -> int:
        return len(self.capabilities)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def resolve(self, name: str) -> Capability:
        """The declared capability `name`, or an undeclared one under that name (recorded)."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        self.undeclared.record(name)
        return _undeclared(name)

    def undeclared_seen(self) -> frozenset[str]:
        """Every undeclared name `resolve` was asked for, since the shared record began."""
        return self.undeclared.seen()

    def check_against(self, teams: TeamCatalog, at: datetime) -> list[str]:
        """Owners and target teams the team catalog does not know at `at`, one line each.

        Not an error at load time: the two catalogs are edited and reloaded independently.
        """
        known = teams.groups_at(at) | teams.teams_at(at)
        problems = []
        for capability in self.capabilities:
            if capability.owner is not None and capability.owner not in known:
                problems.append(
                    f"capability {capability.name!r}: owner {capability.owner!r} is not a "
                    "team of the team catalog"
                )
            for target in capability.target_teams or ():
                if target not in known:
                    problems.append(
                        f"capability {capability.name!r}: target team {target!r} is not a "
                        "team or group of the team catalog"
                    )
        return problems


def load_capabilities(
    path: Path, *, undeclared: UndeclaredCapabilities | None = None
) -> CapabilityCatalog:
    """Read a capability catalog file. Raises CatalogError naming file, line, entry, field.

    Pass the previous catalog's `undeclared` record on a reload to keep the names seen so far.
    """
    text = read_catalog_file(path)
    return parse_capabilities(text, str(path), undeclared=undeclared)


def parse_capabilities(
    text: str, source: str, *, undeclared: UndeclaredCapabilities | None = None
) -> CapabilityCatalog:
    """The capability catalog in YAML `text`; `source` names it in errors."""
    documents = [d for d in load_documents(text, source) if d.data is not None]
    if len(documents) != 1:
        raise CatalogError(
            f"expected one YAML document, found {len(documents)}",
            source=source,
            line=documents[1].line if len(documents) > 1 else None,
        )
    doc = documents[0]
    top = doc.data
    if not isinstance(top, dict):
        raise CatalogError(
            "the file must be a mapping with a 'capabilities' list", source=source, line=doc.line
        )
    _reject_unknown_keys(top, _TOP_KEYS, doc, (), source, None)
    version = top.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CatalogError(
            f"unsupported format version {version!r}; this Uptake reads version {FORMAT_VERSION}",
            source=source,
            line=doc.line_of("version"),
            field="version",
        )
    entries = top.get("capabilities")
    if not isinstance(entries, list) or not entries:
        raise CatalogError(
            "must be a non-empty list of capabilities",
            source=source,
            line=doc.line_of("capabilities"),
            field="capabilities",
        )
    capabilities: list[Capability] = []
    first_line: dict[str, int] = {}
    for index, entry in enumerate(entries):
        capability = _entry(entry, index, doc, source)
        line = doc.line_of("capabilities", index)
        if capability.name in first_line:
            raise CatalogError(
                f"duplicate name {capability.name!r} (first declared on line "
                f"{first_line[capability.name]})",
                source=source,
                line=doc.line_of("capabilities", index, "name"),
                entry=f"capabilities[{index}]",
                field="name",
            )
        first_line[capability.name] = line
        capabilities.append(capability)
    return CapabilityCatalog(
        tuple(capabilities),
        source,
        undeclared if undeclared is not None else UndeclaredCapabilities(),
    )


class _Entry:
    """Reads the fields of one `capabilities[i]` mapping, raising precise CatalogErrors."""

    def __init__(self, data: dict[str, Any], index: int, doc: YamlDocument, source: str) -> None:
        self.data = data
        self.index = index
        self.doc = doc
        self.source = source
        self.label = f"capabilities[{index}]"

    def fail(self, message: str, *path: str | int) -> CatalogError:
        return CatalogError(
            message,
            source=self.source,
            line=self.doc.line_of("capabilities", self.index, *path),
            entry=self.label,
            field=".".join(str(p) for p in path) or None,
        )

    def string(self, *path: str | int, required: bool = True, limit: int = _NAME_MAX) -> str | None:
        value = _dig(self.data, path)
        if value is None:
            if required:
                raise self.fail("missing", *path)
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"must be a non-empty string, not {value!r}", *path)
        if value != value.strip():
            raise self.fail(f"{value!r} has leading or trailing spaces", *path)
        if len(value) > limit:
            raise self.fail(f"longer than {limit} characters", *path)
        return value

    def strings(self, *path: str | int, required: bool) -> tuple[str, ...] | None:
        value = _dig(self.data, path)
        if value is None:
            if required:
                raise self.fail("missing", *path)
            return None
        if not isinstance(value, list) or not value:
            raise self.fail("must be a non-empty list of strings", *path)
        items = tuple(self.string(*path, i) or "" for i in range(len(value)))
        for i, item in enumerate(items):
            if item in items[:i]:
                raise self.fail(f"{item!r} is listed twice", *path, i)
        return items


def _dig(data: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    value: Any = data
    for part in path:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def _entry(data: object, index: int, doc: YamlDocument, source: str) -> Capability:
    if not isinstance(data, dict):
        raise CatalogError(
            f"must be a mapping, not {type(data).__name__}",
            source=source,
            line=doc.line_of("capabilities", index),
            entry=f"capabilities[{index}]",
        )
    e = _Entry(data, index, doc, source)
    name = e.string("name")
    assert name is not None
    e.label = f"capabilities[{index}] ({name})"
    _reject_unknown_keys(data, _ENTRY_KEYS, doc, ("capabilities", index), source, e.label)

    raw_platform = e.string("platform")
    platform = _PLATFORMS.get(raw_platform or "")
    if platform is None:
        raise e.fail(
            f"unknown platform type {raw_platform!r}; expected one of {', '.join(PLATFORM_TYPES)}",
            "platform",
        )
    owner = e.string("owner")
    description = e.string("description", required=False, limit=2000) or ""

    usage = data.get("usage")
    if not isinstance(usage, dict):
        raise e.fail("missing or not a mapping with 'event_types'", "usage")
    _reject_unknown_keys(usage, _USAGE_KEYS, doc, ("capabilities", index, "usage"), source, e.label)
    event_types = e.strings("usage", "event_types", required=True) or ()
    for i, event_type in enumerate(event_types):
        if event_type not in EVENT_TYPES:
            raise e.fail(
                f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}",
                "usage",
                "event_types",
                i,
            )
    apis = e.strings("usage", "apis", required=False)
    if apis is not None and "api_call" not in event_types:
        raise e.fail("an api filter needs 'api_call' among usage.event_types", "usage", "apis")

    target_teams = e.strings("target_teams", required=False)
    north_star = _north_star(e, event_types)
    return Capability(
        name=name,
        platform=platform,
        owner=owner,
        event_types=frozenset(event_types),
        apis=frozenset(apis or ()),
        target_teams=target_teams,
        north_star=north_star,
        description=description,
    )


def _north_star(e: _Entry, event_types: tuple[str, ...]) -> NorthStar | None:
    data = e.data.get("north_star")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise e.fail("must be a mapping", "north_star")
    _reject_unknown_keys(
        data, _NORTH_STAR_KEYS, e.doc, ("capabilities", e.index, "north_star"), e.source, e.label
    )
    if "api_call" not in event_types:
        raise e.fail(
            "a north-star metric reads api_call outcomes: add 'api_call' to usage.event_types",
            "north_star",
        )
    name = e.string("north_star", "name")
    outcome = e.string("north_star", "outcome")
    raw_measure = e.string("north_star", "measure")
    measure = _MEASURES.get(raw_measure or "")
    if measure is None:
        raise e.fail(
            f"unknown measure {raw_measure!r}; expected one of {', '.join(NORTH_STAR_MEASURES)}",
            "north_star",
            "measure",
        )
    decision = e.string("north_star", "decision", required=measure == "decision_rate")
    assert name is not None and outcome is not None
    return NorthStar(
        name=name,
        outcome=outcome,
        measure=measure,
        decision=decision,
        unit=e.string("north_star", "unit", required=False),
        description=e.string("north_star", "description", required=False, limit=2000) or "",
    )


def _reject_unknown_keys(
    data: dict[str, Any],
    allowed: frozenset[str],
    doc: YamlDocument,
    path: tuple[str | int, ...],
    source: str,
    entry: str | None,
) -> None:
    for key in data:
        if key not in allowed:
            raise CatalogError(
                f"unknown field; expected one of {', '.join(sorted(allowed))}",
                source=source,
                line=doc.line_of(*path, str(key)),
                entry=entry,
                field=".".join(str(p) for p in (*path[2:], key)) if entry else str(key),
            )
