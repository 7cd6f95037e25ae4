"""Backstage catalog files (`catalog-info.yaml`) -> a `TeamSnapshot`.

A file is a multi-document YAML stream of Backstage entities (apiVersion `backstage.io/v1alpha1`
or `backstage.io/v1beta1`). Three kinds matter; every other kind (System, API, Resource,
Domain, Location, Template, ...) is skipped:

- `Group`: a team or a larger unit. `spec.parent` names its parent group and `spec.children`
  its child groups (both directions may be written; they must agree, and a listed child must be
  declared in the same file). `spec.members` lists users.
- `Component`: a service, `metadata.name`, owned by the group `spec.owner`.
- `User`: an engineer, `metadata.name`, member of the groups in `spec.memberOf`; the first one
  is the user's team. A user without a User entity belongs to the one group whose
  `spec.members` lists it.

References follow Backstage's entity-reference syntax `[kind:][namespace/]name`:
`group:default/payments`, `group:payments`, `default/payments` and `payments` all name the
group `payments`. Names are matched as written and must be unique across namespaces.

A fact holds from the moment the snapshot is merged, unless the entity carries the annotations
`uptake.dev/valid-from` / `uptake.dev/valid-to` (ISO date or date-time with offset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.catalog._yaml import YamlDocument, load_documents
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.teams import Fact, TeamSnapshot, parse_instant

API_VERSIONS = frozenset({"backstage.io/v1alpha1", "backstage.io/v1beta1"})
KINDS_READ = frozenset({"group", "component", "user"})
VALID_FROM_ANNOTATION = "uptake.dev/valid-from"
VALID_TO_ANNOTATION = "uptake.dev/valid-to"

# Backstage: 1-63 characters, [a-zA-Z0-9] runs separated by single '-', '_' or '.'.
_NAME = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*")
_NAME_MAX = 63


@dataclass(frozen=True)
class EntityRef:
    """A parsed entity reference; `kind` is lower case, `namespace` defaults to "default"."""

    kind: str
    namespace: str
    name: str


def parse_entity_ref(ref: object, *, default_kind: str) -> EntityRef:
    """`[kind:][namespace/]name` -> EntityRef. Raises ValueError with a readable message."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"an entity reference must be a non-empty string, not {ref!r}")
    text = ref.strip()
    kind, _, rest = text.partition(":") if ":" in text else ("", "", text)
    namespace, _, name = rest.partition("/") if "/" in rest else ("default", "", rest)
    if (":" in text and not kind) or not namespace or not name:
        raise ValueError(f"{ref!r} is not an entity reference of the form [kind:][namespace/]name")
    _check_name(name, what=f"the name in {ref!r}")
    return EntityRef((kind or default_kind).lower(), namespace, name)


def load_backstage(path: Path) -> TeamSnapshot:
    """Read one Backstage catalog file. Raises CatalogError (file, line, entity, field)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read: {exc}", source=str(path)) from None
    return parse_backstage(text, str(path))


@dataclass
class _Entity:
    kind: str
    name: str
    doc: YamlDocument
    spec: dict[str, Any]
    valid_from: datetime | None
    valid_to: datetime | None
    source: str

    @property
    def label(self) -> str:
        return f"{self.kind.capitalize()} {self.name!r}"


def parse_backstage(text: str, source: str) -> TeamSnapshot:
    """The facts of a Backstage catalog stream `text`; `source` names it in errors."""
    entities: dict[tuple[str, str], _Entity] = {}
    for number, doc in enumerate(load_documents(text, source), start=1):
        entity = _read_entity(doc, number, source)
        if entity is None:
            continue
        previous = entities.get((entity.kind, entity.name))
        if previous is not None:
            raise CatalogError(
                f"declared twice (first at line {previous.doc.line})",
                source=source,
                line=doc.line,
                entry=entity.label,
            )
        entities[entity.kind, entity.name] = entity
    groups = {name: e for (kind, name), e in entities.items() if kind == "group"}
    users = {name: e for (kind, name), e in entities.items() if kind == "user"}
    facts: list[Fact] = []
    facts.extend(_group_facts(groups, source))
    facts.extend(
        Fact("service", e.name, _owner(e, source), "", e.valid_from, e.valid_to, e.source)
        for (kind, _), e in entities.items()
        if kind == "component"
    )
    facts.extend(_user_facts(groups, users, source))
    return TeamSnapshot(tuple(facts), (source,))


def _read_entity(doc: YamlDocument, number: int, source: str) -> _Entity | None:
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
    entry = f"{kind} {name!r}"
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
    return _Entity(
        kind.lower(), name, doc, spec, valid_from, valid_to, f"{source}:{doc.line} ({entry})"
    )


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


def _ref(entity: _Entity, source: str, field: str, value: object, expected: str) -> str:
    """The name a reference in `field` points to; it must be of kind `expected`."""
    path = tuple(int(part) if part.isdigit() else part for part in field.split("."))
    try:
        ref = parse_entity_ref(value, default_kind=expected)
    except ValueError as exc:
        raise CatalogError(
            str(exc),
            source=source,
            line=entity.doc.line_of(*path),
            entry=entity.label,
            field=field,
        ) from None
    if ref.kind != expected:
        raise CatalogError(
            f"{value!r} refers to a {ref.kind}; Uptake expects a {expected} here",
            source=source,
            line=entity.doc.line_of(*path),
            entry=entity.label,
            field=field,
        )
    return ref.name


def _ref_list(entity: _Entity, source: str, key: str, expected: str) -> list[str]:
    value = entity.spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CatalogError(
            f"must be a list of {expected} references",
            source=source,
            line=entity.doc.line_of("spec", key),
            entry=entity.label,
            field=f"spec.{key}",
        )
    return [_ref(entity, source, f"spec.{key}.{i}", item, expected) for i, item in enumerate(value)]


def _owner(component: _Entity, source: str) -> str:
    if component.spec.get("owner") is None:
        raise CatalogError(
            "missing: a Component needs the group that owns it",
            source=source,
            line=component.doc.line_of("spec"),
            entry=component.label,
            field="spec.owner",
        )
    return _ref(component, source, "spec.owner", component.spec["owner"], "group")


def _group_facts(groups: dict[str, _Entity], source: str) -> list[Fact]:
    parent: dict[str, str] = {}
    for name, group in groups.items():
        if group.spec.get("parent") is not None:
            parent[name] = _ref(group, source, "spec.parent", group.spec["parent"], "group")
    listed_by: dict[str, str] = {}
    for name, group in groups.items():
        for i, child in enumerate(_ref_list(group, source, "children", "group")):
            line = group.doc.line_of("spec", "children", i)

            def fail(message: str, line: int = line, group: _Entity = group) -> CatalogError:
                return CatalogError(
                    message,
                    source=source,
                    line=line,
                    entry=group.label,
                    field="spec.children",
                )

            if child not in groups:
                raise fail(f"child group {child!r} is not declared in this file")
            if child in listed_by and listed_by[child] != name:
                raise fail(f"group {child!r} is also a child of {listed_by[child]!r}")
            if parent.get(child, name) != name:
                raise fail(f"group {child!r} names {parent[child]!r} as its spec.parent")
            listed_by[child] = name
            parent[child] = name
    return [
        Fact("team", name, name, parent.get(name, ""), g.valid_from, g.valid_to, g.source)
        for name, g in groups.items()
    ]


def _user_facts(groups: dict[str, _Entity], users: dict[str, _Entity], source: str) -> list[Fact]:
    facts: list[Fact] = []
    for name, user in users.items():
        member_of = _ref_list(user, source, "memberOf", "group")
        if member_of:
            facts.append(
                Fact("user", name, member_of[0], "", user.valid_from, user.valid_to, user.source)
            )
    listed: dict[str, _Entity] = {}
    for group in groups.values():
        for member in _ref_list(group, source, "members", "user"):
            if member in users and _ref_list(users[member], source, "memberOf", "group"):
                continue  # the User entity's first memberOf is the user's team
            if member in listed and listed[member] is not group:
                raise CatalogError(
                    f"user {member!r} is also a member of {listed[member].name!r}; add a User "
                    "entity whose spec.memberOf lists the user's team first",
                    source=source,
                    line=group.doc.line_of("spec", "members"),
                    entry=group.label,
                    field="spec.members",
                )
            listed[member] = group
    facts.extend(
        Fact("user", member, g.name, "", g.valid_from, g.valid_to, g.source)
        for member, g in listed.items()
    )
    return facts


def _check_name(name: object, *, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, not {name!r}")
    if len(name) > _NAME_MAX or not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a valid Backstage name (1-{_NAME_MAX} characters: letters "
            "and digits, separated by single '-', '_' or '.')"
        )
