"""The `runbook_url` of every shipped alert: an absolute link built from a base URL.

Alertmanager and chat show `runbook_url` as it is, so it must be absolute. The rule files in
`deploy/prometheus/rules/` carry links built from `DEFAULT_RUNBOOK_BASE_URL`; `render()`
rewrites them for an operator's base (UPTAKE_RUNBOOK_BASE_URL, `uptake rules render`), keeping
every other byte of the files (comments, order) as it is. The anchor of an alert is its name in
lower case: the GitHub-style anchor of its `### UptakeSomething` section in docs/operations.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipeline import resources
from pipeline.config.settings import SettingsError

# `runbook_url: "<base>#<anchor>"`, one per alert, as the rule files write it.
_RUNBOOK_LINE = re.compile(r'^(?P<key>\s*runbook_url: )"(?P<base>[^"#]*)#(?P<anchor>[^"]+)"$', re.M)


def shipped_rules() -> Path:
    """`deploy/prometheus/rules` of this checkout; the wheel does not carry the rule files."""
    root = resources.checkout()
    if root is None:
        raise SettingsError(
            "the Prometheus rule files ship in the source repository (deploy/prometheus/rules), "
            "not in the installed package: pass --dir with a copy of that folder"
        )
    return root / "deploy" / "prometheus" / "rules"


def rule_files(directory: Path) -> list[Path]:
    return resources.require_files(directory, "*.yml", "Prometheus rule files")


def render(text: str, base: str) -> str:
    """`text` (a rule file) with every runbook_url pointing at `base`, anchors kept."""
    return _RUNBOOK_LINE.sub(lambda m: f'{m["key"]}"{base}#{m["anchor"]}"', text)


def alerts(text: str) -> list[dict[str, Any]]:
    """The alerting rules of a rule file."""
    groups = (yaml.safe_load(text) or {}).get("groups") or []
    return [rule for group in groups for rule in group.get("rules") or [] if "alert" in rule]


def link(base: str, alert: str) -> str:
    """The runbook link of `alert` under `base`."""
    return f"{base}#{alert.lower()}"


def problems(directory: Path, base: str) -> list[str]:
    """Why the rule files in `directory` do not link every alert's runbook under `base`."""
    found = []
    for path in rule_files(directory):
        for rule in alerts(path.read_text()):
            url = (rule.get("annotations") or {}).get("runbook_url")
            if url != link(base, rule["alert"]):
                found.append(
                    f"{path.name}: {rule['alert']} links {url!r}, not {link(base, rule['alert'])!r}"
                )
    return found


def write(source: Path, target: Path, base: str) -> list[Path]:
    """Render every rule file of `source` for `base` into `target` (may be `source`); the
    files whose content changed."""
    target.mkdir(parents=True, exist_ok=True)
    changed = []
    for path in rule_files(source):
        text = render(path.read_text(), base)
        out = target / path.name
        if not out.exists() or out.read_text() != text:
            out.write_text(text)
            changed.append(out)
    return changed
