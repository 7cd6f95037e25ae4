"""Shared helpers of the static deployment tests: the compose file, loaded once, and its mounts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config.settings import variable_fields
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

_DEFAULT = re.compile(
    r"\$\{(?P<name>[A-Z0-9_]+)(?::?(?P<op>[-?])(?P<default>[^}]*))?\}|\$(?P<bare>[A-Z_][A-Z0-9_]*)"
)


def required_value(name: str) -> str:
    """What a test puts for `${NAME:?message}` (a value the operator must set): URL-safe."""
    return f"set-by-operator-{name.lower().replace('_', '-')}"


def setting_variables() -> set[str]:
    """Every environment variable Uptake reads: the fields of the one Settings object."""
    return {f.metadata["env"].name for f in variable_fields()}


def interpolate(value: str, environ: dict[str, str] | None = None) -> str:
    """`${VAR:-default}` (compose) and `$VAR` (Grafana provisioning) from `environ`, else the
    default the file gives; `${VAR:?message}` (required) from `environ`, else
    `required_value(VAR)`."""
    env = environ or {}

    def one(match: re.Match[str]) -> str:
        if match["bare"]:  # $VAR, as Grafana's provisioning files write it
            return env.get(match["bare"], "")
        if match["op"] == "?":
            return env.get(match["name"], required_value(match["name"]))
        return env.get(match["name"], match["default"] or "")

    return _DEFAULT.sub(one, value)


@dataclass(frozen=True)
class Mount:
    source: Path | None  # host path for a bind mount, None for a named volume
    target: str
    operator_file: str = ""  # `${VAR:?...}`: a host file the operator names (none ships)


_VOLUME_PART = re.compile(r"\$\{[^}]*\}|[^:]+")


def volume_parts(volume: str) -> list[str]:
    """source, target[, mode] of a short-syntax volume; a `${VAR:?message}` source stays whole."""
    return _VOLUME_PART.findall(volume)


def mounts(service: dict[str, Any]) -> list[Mount]:
    """The service's volumes as (host path or None, container path), short or long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume_parts(volume)[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith("${"):
            out.append(Mount(None, target, operator_file=source))
            continue
        host = (DEPLOY / source).resolve() if source.startswith((".", "/")) else None
        out.append(Mount(host, target))
    return out


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a path inside the container comes from on the host, through a bind mount."""
    best: Mount | None = None
    for mount in mounts(service):
        if mount.source is None:
            continue
        target = mount.target.rstrip("/")
        if (container_path == target or container_path.startswith(target + "/")) and (
            best is None or len(target) > len(best.target)
        ):
            best = mount
    if best is None or best.source is None:
        return None
    rest = container_path[len(best.target.rstrip("/")) :].lstrip("/")
    return best.source / rest if rest else best.source


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the `<<:` merge keys
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])
