"""YAML documents with the line of every value, so catalog errors can point into the file.

Only PyYAML's safe loader is used (no arbitrary objects). A mapping that repeats a key is an
error here, where PyYAML would silently keep the last value: in a hand-edited catalog a repeated
key is a typo that would otherwise change ownership without anyone noticing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from pipeline.catalog.errors import CatalogError

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """One document of a YAML stream: its data, its first line and the line of each value
    (for a mapping entry, the line of its key)."""

    data: Any
    line: int
    lines: dict[Path_, int]

    def line_of(self, *path: str | int) -> int:
        """Line (1-based) of the value at `path`, or of its nearest enclosing value that exists."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.line


def load_documents(text: str, source: str) -> list[YamlDocument]:
    """Every document of `text` (a YAML stream), empty documents included as `None` data.

    Raises CatalogError naming `source` and the line for a syntax error or a repeated key.
    """
    documents: list[YamlDocument] = []
    try:
        loader = yaml.SafeLoader(text)  # raises for characters YAML does not allow (e.g. NUL)
    except yaml.YAMLError as exc:
        raise CatalogError(f"not valid YAML: {exc}", source=source) from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # check_node() said there is one; never happens
                break
            lines: dict[Path_, int] = {(): node.start_mark.line + 1}
            _walk(node, (), lines, source, frozenset())
            data = loader.construct_document(node)
            documents.append(YamlDocument(data, node.start_mark.line + 1, lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "syntax error"
        raise CatalogError(f"not valid YAML: {problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"not valid YAML: {exc}", source=source) from None
    finally:
        loader.dispose()
    return documents


def _walk(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str, seen: frozenset[int]
) -> None:
    """Record the line of every key (for a mapping value) or item below `node`."""
    if id(node) in seen:  # a recursive alias: nothing new below it
        return
    inside = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in keys and key != "<<":
                raise CatalogError(
                    f"key {key!r} appears twice in one mapping (first on line {keys[key]})",
                    source=source,
                    line=line,
                )
            keys[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, source, inside)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines, source, inside)
