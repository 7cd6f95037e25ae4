"""Backstage catalog entities -> a `TeamSnapshot`, with relations resolved across all files.

`read_entities(text, source)` reads one YAML stream and raises `CatalogError` for a stream or an
entity it cannot use (the file is refused whole). `resolve_entities(entities)` ties the entities
of every file together and never raises for a relation: a dangling, duplicate or conflicting one
becomes a `CatalogWarning` on the snapshot. No I/O but `load_backstage`. The kinds, references
and validity annotations: docs/catalogs.md#backstage-catalog-files.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.catalog._yaml import YamlDocument, load_documents
from pipeline.catalog.errors import CatalogError, CatalogWarning, read_catalog_file
from pipeline.catalog.teams import Fact, TeamSnapshot, parse_instant

API_VERSIONS = frozenset({"backstage.io/v1alpha1", "backstage.io/v1beta1"})
KINDS_READ = frozenset({"group", "component", "user", "location"})
DEFAULT_NAMESPACE = "default"
VALID_FROM_ANNOTATION = "uptake.dev/valid-from"
VALID_TO_ANNOTATION = "uptake.dev/valid-to"

# Backstage: 1-63 characters, [a-zA-Z0-9] runs separated by single '-', '_' or '.'.
_NAME = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*")
_NAME_MAX = 63
# Backstage namespaces: DNS labels, [a-z0-9] runs separated by '-' (compared without case).
_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*")


@dataclass(frozen=True)
class EntityRef:
    """A parsed entity reference; `kind` is lower case, `namespace` defaults to "default"."""

    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What two references to one entity share: Backstage compares them without case."""
        return self.kind.lower(), self.namespace.lower(), self.name.lower()

    def __str__(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"


def parse_entity_ref(
    ref: object, *, default_kind: str, default_namespace: str = DEFAULT_NAMESPACE
) -> EntityRef:
    """`[kind:][namespace/]name` -> EntityRef. Raises ValueError with a readable message."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"an entity reference must be a non-empty string, not {ref!r}")
    text = ref.strip()
    kind, _, rest = text.partition(":") if ":" in text else ("", "", text)
    namespace, _, name = rest.partition("/") if "/" in rest else (default_namespace, "", rest)
    if (":" in text and not kind) or not namespace or not name:
        raise ValueError(f"{ref!r} is not an entity reference of the form [kind:][namespace/]name")
    _check_name(name, what=f"the name in {ref!r}")
    return EntityRef((kind or default_kind).lower(), namespace, name)


def catalog_name(namespace: str, name: str) -> str:
    """How the team catalog names an entity: `name` in the default namespace, else `ns/name`."""
    return name if namespace.lower() == DEFAULT_NAMESPACE else f"{namespace}/{name}"


def load_backstage(path: Path) -> TeamSnapshot:
    """Read one Backstage catalog file. Raises CatalogError (file, line, entity, field)."""
    text = read_catalog_file(path)
    return parse_backstage(text, str(path))


def parse_backstage(text: str, source: str) -> TeamSnapshot:
    """The facts of one Backstage catalog stream `text`, as a catalog of its own."""
    snapshot = resolve_entities(read_entities(text, source))
    return TeamSnapshot(snapshot.facts, (source,), snapshot.warnings)


@dataclass
class Entity:
    """One Backstage entity as read: its reference, spec, validity and where it was written."""

    kind: str  # lower case
    namespace: str
    name: str
    doc: YamlDocument
    spec: dict[str, Any]
    valid_from: datetime | None
    valid_to: datetime | None
    source: str  # the file (or API) it came from

    @property
    def ref(self) -> EntityRef:
        return EntityRef(self.kind, self.namespace, self.name)

    @property
    def catalog_name(self) -> str:
        return catalog_name(self.namespace, self.name)

    @property
    def label(self) -> str:
        return f"{self.kind.capitalize()} {self.catalog_name!r}"

    @property
    def where(self) -> str:
        """`file:line (Kind 'name')`: the source of the facts this entity states."""
        return f"{self.source}:{self.doc.line} ({self.label})"


@dataclass(frozen=True)
class _Undeclared:
    """A group named in a catalog that declares no groups at all: taken by its name."""

    catalog_name: str


class _Resolver:
    """Ties the entities of one catalog together; collects the warnings on the way."""

    def __init__(self, entities: Iterable[Entity]) -> None:
        self.warnings: list[CatalogWarning] = []
        self.index: dict[tuple[str, str, str], Entity] = {}
        for entity in entities:
            first = self.index.get(entity.ref.key)
            if first is not None:
                self.warn(
                    "duplicate_entity",
                    entity,
                    None,
                    f"{entity.ref} is declared twice (first at {first.source}:{first.doc.line}); "
                    "the first is used",
                )
                continue
            self.index[entity.ref.key] = entity
        # A catalog without any Group (e.g. Components only, the groups kept elsewhere) may
        # name any team, as an ownership CSV without team rows may.
        self.has_groups = any(e.kind == "group" for e in self.index.values())

    def of_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.index.values() if e.kind == kind]

    def warn(self, kind: str, entity: Entity, field: str | None, message: str) -> None:
        self.warnings.append(
            CatalogWarning(
                kind,
                message,
                source=entity.source,
                line=entity.doc.line_of(*_path(field)) if field else entity.doc.line,
                entry=entity.label,
                field=field,
            )
        )

    def refs(self, entity: Entity, key: str, kind: str) -> list[tuple[str, EntityRef]]:
        """(field, reference) of `spec.<key>`: one reference or a list of them."""
        value = entity.spec.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return [
                (f"spec.{key}.{i}", _parse(entity, f"spec.{key}.{i}", item, kind))
                for i, item in enumerate(value)
            ]
        return [(f"spec.{key}", _parse(entity, f"spec.{key}", value, kind))]

    def target(
        self, entity: Entity, field: str, ref: EntityRef, kinds: Sequence[str]
    ) -> Entity | _Undeclared | None:
        """The entity `ref` names, if the catalog holds it and it is of one of `kinds`;
        else None and a warning."""
        if ref.kind not in kinds:
            self.warn(
                "wrong_kind",
                entity,
                field,
                f"{ref} is a {ref.kind}; Uptake expects a {' or a '.join(kinds)} here: ignored",
            )
            return None
        found = self.index.get(ref.key)
        if found is None and ref.kind == "group" and not self.has_groups:
            return _Undeclared(catalog_name(ref.namespace, ref.name))
        if found is None:
            self.warn(
                "unresolved_reference", entity, field, f"{ref} is not in the catalog: ignored"
            )
        return found


def resolve_entities(entities: Iterable[Entity]) -> TeamSnapshot:
    """The facts of a whole catalog (every file and source at once), with its warnings."""
    resolver = _Resolver(entities)
    facts: list[Fact] = []
    facts.extend(_group_facts(resolver))
    user_team, user_facts = _users(resolver)
    facts.extend(user_facts)
    for component in resolver.of_kind("component"):
        team = _owner(resolver, component, user_team)
        if team is not None:
            facts.append(
                Fact(
                    "service",
                    component.catalog_name,
                    team,
                    "",
                    component.valid_from,
                    component.valid_to,
                    component.where,
                )
            )
    return TeamSnapshot(tuple(facts), (), tuple(resolver.warnings))


def _group_facts(r: _Resolver) -> list[Fact]:
    groups = r.of_kind("group")
    parent: dict[tuple[str, str, str], Entity] = {}
    for group in groups:
        for field, ref in r.refs(group, "parent", "group"):
            found = r.target(group, field, ref, ("group",))
            if isinstance(found, Entity):
                parent[group.ref.key] = found
    listed_by: dict[tuple[str, str, str], Entity] = {}
    for group in groups:
        for field, ref in r.refs(group, "children", "group"):
            child = r.target(group, field, ref, ("group",))
            if not isinstance(child, Entity):
                continue
            key = child.ref.key
            own = parent.get(key)
            if key in listed_by and listed_by[key] is not group:
                r.warn(
                    "conflicting_relation",
                    group,
                    field,
                    f"{child.ref} is also a child of {listed_by[key].ref}; that parent is used",
                )
            elif own is not None and own is not group:
                r.warn(
                    "conflicting_relation",
                    group,
                    field,
                    f"{child.ref} names {own.ref} as its spec.parent; that parent is used",
                )
            else:
                listed_by[key] = group
                parent[key] = group
    return [
        Fact(
            "team",
            g.catalog_name,
            g.catalog_name,
            parent[g.ref.key].catalog_name if g.ref.key in parent else "",
            g.valid_from,
            g.valid_to,
            g.where,
        )
        for g in groups
    ]


def _users(r: _Resolver) -> tuple[dict[tuple[str, str, str], str], list[Fact]]:
    """The team of every user (by reference key) and the user facts.

    A user's team is the first group of their `spec.memberOf` that the catalog holds; without
    one, the group whose `spec.members` lists them, the first in sorted order if several do.
    """
    team: dict[tuple[str, str, str], str] = {}
    facts: list[Fact] = []
    for user in r.of_kind("user"):
        for field, ref in r.refs(user, "memberOf", "group"):
            found = r.target(user, field, ref, ("group",))
            if found is not None:
                team[user.ref.key] = found.catalog_name
                facts.append(
                    Fact(
                        "user",
                        user.catalog_name,
                        found.catalog_name,
                        "",
                        user.valid_from,
                        user.valid_to,
                        user.where,
                    )
                )
                break
    listers: dict[tuple[str, str, str], list[Entity]] = defaultdict(list)
    names: dict[tuple[str, str, str], str] = {}
    for group in r.of_kind("group"):
        for field, ref in r.refs(group, "members", "user"):
            if ref.kind != "user":
                r.warn("wrong_kind", group, field, f"{ref} is a {ref.kind}, not a user: ignored")
                continue
            if ref.key in team:
                continue  # the User entity's memberOf decides
            listers[ref.key].append(group)
            member = r.index.get(ref.key)
            names[ref.key] = (
                member.catalog_name if member is not None else catalog_name(ref.namespace, ref.name)
            )
    for key, groups in listers.items():
        chosen = sorted({id(g): g for g in groups}.values(), key=lambda g: g.catalog_name)
        first = chosen[0]
        if len(chosen) > 1:
            listed = ", ".join(repr(g.catalog_name) for g in chosen)
            r.warn(
                "ambiguous_membership",
                chosen[1],
                "spec.members",
                f"user {names[key]!r} is listed by {listed} and has no User entity whose "
                f"spec.memberOf says which is their team: {first.catalog_name!r} (the first "
                "in sorted order) is used",
            )
        team[key] = first.catalog_name
        facts.append(
            Fact(
                "user",
                names[key],
                first.catalog_name,
                "",
                first.valid_from,
                first.valid_to,
                first.where,
            )
        )
    return team, facts


def _owner(
    r: _Resolver, component: Entity, user_team: dict[tuple[str, str, str], str]
) -> str | None:
    """The team that owns `component`: its owner group, or the team of its owner user."""
    [(field, ref)] = r.refs(component, "owner", "group")
    if ref.kind == "user":
        team = user_team.get(ref.key)
        if team is not None:
            return team
        if ref.key in r.index:
            r.warn(
                "unresolved_reference",
                component,
                field,
                f"{ref} belongs to no group of the catalog, so the component has no team: ignored",
            )
            return None
    found = r.target(component, field, ref, ("group", "user"))
    return None if found is None else found.catalog_name


def read_entities(text: str, source: str) -> list[Entity]:
    """The entities of the kinds Uptake reads in one YAML stream; other kinds are skipped.

    Raises CatalogError (file, line, entity, field) for text that is not YAML or a document
    that is not a Backstage entity.
    """
    entities = []
    for number, doc in enumerate(load_documents(text, source), start=1):
        entity = _read_entity(doc, number, source)
        if entity is not None:
            entities.append(entity)
    return entities


def _read_entity(doc: YamlDocument, number: int, source: str) -> Entity | None:
    data = doc.data
    if data is None:
        return None  # an empty document, e.g. after a trailing '---'
    where = f"document {number}"
    if not isinstance(data, dict):
        raise CatalogError(
            f"an entity must be a mapping, not {type(data).__name__}",
            source=source,
            line=doc.line,
            entry=where,
        )
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise CatalogError(
            "missing or not a string", source=source, line=doc.line, entry=where, field="kind"
        )
    if kind.lower() not in KINDS_READ:
        return None
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        raise CatalogError(
            "missing or not a mapping",
            source=source,
            line=doc.line_of("metadata"),
            entry=f"{where} ({kind})",
            field="metadata",
        )
    name = metadata.get("name")
    try:
        _check_name(name, what="metadata.name")
    except ValueError as exc:
        raise CatalogError(
            str(exc),
            source=source,
            line=doc.line_of("metadata", "name"),
            entry=f"{where} ({kind})",
            field="metadata.name",
        ) from None
    assert isinstance(name, str)
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace) or len(namespace) > 63:
        raise CatalogError(
            f"{namespace!r} is not a valid Backstage namespace (1-63 letters and digits, "
            "separated by '-')",
            source=source,
            line=doc.line_of("metadata", "namespace"),
            entry=f"{where} ({kind})",
            field="metadata.namespace",
        )
    entry = f"{kind.capitalize()} {catalog_name(namespace, name)!r}"
    api_version = data.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise CatalogError(
            f"{api_version!r} is not a Backstage entity version; expected one of "
            f"{', '.join(sorted(API_VERSIONS))}",
            source=source,
            line=doc.line_of("apiVersion"),
            entry=entry,
            field="apiVersion",
        )
    spec = data.get("spec", {})
    if not isinstance(spec, dict):
        raise CatalogError(
            "must be a mapping",
            source=source,
            line=doc.line_of("spec"),
            entry=entry,
            field="spec",
        )
    valid_from, valid_to = _validity(metadata, doc, source, entry)
    entity = Entity(kind.lower(), namespace, name, doc, spec, valid_from, valid_to, source)
    _check_shape(entity)
    return entity


def _check_shape(entity: Entity) -> None:
    """What Backstage's own validation refuses: a malformed relation field or reference."""
    expected = {"parent": "group", "owner": "group"}
    lists = {"children": "group", "members": "user", "memberOf": "group"}
    for key, kind in expected.items():
        if entity.spec.get(key) is not None:
            _parse(entity, f"spec.{key}", entity.spec[key], kind)
    for key, kind in lists.items():
        value = entity.spec.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            raise _error(entity, f"spec.{key}", f"must be a list of {kind} references")
        for i, item in enumerate(value):
            _parse(entity, f"spec.{key}.{i}", item, kind)
    if entity.kind == "component" and entity.spec.get("owner") is None:
        raise CatalogError(
            "missing: a Component needs the group (or user) that owns it",
            source=entity.source,
            line=entity.doc.line_of("spec"),
            entry=entity.label,
            field="spec.owner",
        )
    if entity.kind == "location":
        for field, target in _location_targets(entity):
            if not isinstance(target, str) or not target.strip():
                raise _error(entity, field, "a Location target must be a non-empty string")


def _validity(
    metadata: dict[str, Any], doc: YamlDocument, source: str, entry: str
) -> tuple[datetime | None, datetime | None]:
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise CatalogError(
            "must be a mapping",
            source=source,
            line=doc.line_of("metadata", "annotations"),
            entry=entry,
            field="metadata.annotations",
        )
    bounds: list[datetime | None] = []
    for key in (VALID_FROM_ANNOTATION, VALID_TO_ANNOTATION):
        value = annotations.get(key)
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_instant(value))
        except ValueError as exc:
            raise CatalogError(
                str(exc),
                source=source,
                line=doc.line_of("metadata", "annotations", key),
                entry=entry,
                field=f"metadata.annotations.{key}",
            ) from None
    valid_from, valid_to = bounds
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise CatalogError(
            f"{VALID_TO_ANNOTATION} must lie after {VALID_FROM_ANNOTATION}",
            source=source,
            line=doc.line_of("metadata", "annotations", VALID_TO_ANNOTATION),
            entry=entry,
            field=f"metadata.annotations.{VALID_TO_ANNOTATION}",
        )
    return valid_from, valid_to


def _path(field: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in field.split("."))


def _error(entity: Entity, field: str, message: str) -> CatalogError:
    return CatalogError(
        message,
        source=entity.source,
        line=entity.doc.line_of(*_path(field)),
        entry=entity.label,
        field=field,
    )


def _parse(entity: Entity, field: str, value: object, default_kind: str) -> EntityRef:
    try:
        return parse_entity_ref(
            value, default_kind=default_kind, default_namespace=entity.namespace
        )
    except ValueError as exc:
        raise _error(entity, field, str(exc)) from None


def _location_targets(entity: Entity) -> list[tuple[str, object]]:
    """(field, target) of a Location: `spec.target` and every item of `spec.targets`."""
    out: list[tuple[str, object]] = []
    if entity.spec.get("target") is not None:
        out.append(("spec.target", entity.spec["target"]))
    targets = entity.spec.get("targets")
    if targets is not None:
        if not isinstance(targets, list):
            raise _error(entity, "spec.targets", "must be a list of targets")
        out.extend((f"spec.targets.{i}", target) for i, target in enumerate(targets))
    return out


def location_targets(entity: Entity) -> list[tuple[str, str, bool]]:
    """(field, target, remote) of a Location entity, as written (already checked to be strings).

    A target is remote when the Location's `spec.type` is `url` (or anything but `file`) or the
    target has a scheme (`https://...`, `url:...`): Uptake does not fetch those.
    """
    kind = str(entity.spec.get("type") or "file").lower()
    out = []
    for field, target in _location_targets(entity):
        text = str(target).strip()
        remote = kind != "file" or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text))
        if text.startswith("file:"):
            text, remote = text[len("file:") :], False
        out.append((field, text, remote))
    return out


def _check_name(name: object, *, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, not {name!r}")
    if len(name) > _NAME_MAX or not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a valid Backstage name (1-{_NAME_MAX} characters: letters "
            "and digits, separated by single '-', '_' or '.')"
        )
