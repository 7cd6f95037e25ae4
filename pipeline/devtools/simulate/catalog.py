"""The team catalog of a simulated re-org: config/teams with one team moved to another group.

The Backstage file states today's tree (the team under its new group); a dated `team-parent`
row in ownership.csv states the old parent until the move (docs/catalogs.md, "Validity"), so
the worker's team_catalog holds both intervals with the boundary at the move.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

# The old parent holds from before any simulated window (as ml-research's rows do).
SINCE = "2024-01-01"


def write_team_catalog(source: Path, target: Path, team: str, group: str, at: datetime) -> str:
    """Copy the team catalog folder `source` to `target` with `team` moved under `group` at
    `at`; return its old parent. Raises ValueError when either is not a group of the file."""
    shutil.copytree(source, target)
    backstage = target / "catalog-info.yaml"
    documents = [d for d in yaml.safe_load_all(backstage.read_text(encoding="utf-8")) if d]
    groups = {d["metadata"]["name"]: d for d in documents if d.get("kind") == "Group"}
    if team not in groups or group not in groups:
        raise ValueError(f"{team!r} and {group!r} must both be groups of {backstage}")
    moved = groups[team]["spec"]
    old = str(moved["parent"]).removeprefix("group:default/")
    if old == group:
        raise ValueError(f"{team!r} is already under {group!r}")
    moved["parent"] = group
    _children(groups[old]).remove(team)
    _children(groups[group]).append(team)
    backstage.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    with (target / "ownership.csv").open("a", encoding="utf-8") as csv:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
        csv.write(f"team-parent,{team},{old},{SINCE},{stamp}\n")
    return old


def _children(group: dict[str, Any]) -> list[str]:
    children: list[str] = group["spec"].setdefault("children", [])
    return children
