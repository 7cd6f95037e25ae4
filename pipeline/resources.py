"""Uptake's data files: migrations, event schemas, example catalogs, dashboards, broker config.

The repository's top-level folders (`schemas/`, `config/`, `dashboards/`, `deploy/local/`) are
the source of truth; the wheel carries a copy under `pipeline/_data/` (pyproject.toml maps them).
`folder()` returns the copy inside an installed package, else the checkout's original (an
editable install or a run from the source tree). It never raises at import time; the readers
call `require_files()`, so a missing migration folder is an error, never "nothing to do".
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

Resource = Literal["schemas/clickhouse", "schemas/events", "config", "dashboards", "broker"]

_CHECKOUT = Path(__file__).resolve().parents[1]
_IN_CHECKOUT: dict[str, str] = {"broker": "deploy/local"}


class ResourceMissing(RuntimeError):
    """A data folder Uptake needs is neither in the installed package nor in a checkout."""


def packaged(name: Resource) -> Path:
    """Where the wheel puts `name` (it may not exist: an editable install has no copy)."""
    return Path(str(files("pipeline"))) / "_data" / name


def checkout() -> Path | None:
    """The repository this package runs from, or None for an installed wheel."""
    marker = _CHECKOUT / "pyproject.toml"
    return _CHECKOUT if marker.is_file() and (_CHECKOUT / "schemas").is_dir() else None


def folder(name: Resource) -> Path:
    """The folder holding `name`'s files: the packaged copy, else the checkout's original, else
    (neither exists) the packaged path, which `require_files()` then reports as missing."""
    inside = packaged(name)
    if inside.is_dir():
        return inside
    root = checkout()
    if root is not None and (root / _IN_CHECKOUT.get(name, name)).is_dir():
        return root / _IN_CHECKOUT.get(name, name)
    return inside


def require_files(directory: Path, pattern: str, what: str) -> list[Path]:
    """The files matching `pattern` in `directory`, sorted; ResourceMissing when there are none."""
    found = sorted(directory.glob(pattern))
    if not found:
        raise ResourceMissing(
            f"no {what} ({pattern}) in {directory}: this Uptake installation is incomplete; "
            "reinstall it, or run it from a complete source checkout"
        )
    return found
