"""deploy/prometheus: the configuration and rules are valid, and every rule is unit-tested.

`promtool` comes from Debian's `prometheus` package, which `make test` installs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed: `make test` (target system-deps) installs Debian's "
    "prometheus package; or run `apt-get install prometheus`",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["promtool", *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of the rule files that has `kind` ("alert" or "record")."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if kind in rule]
    return found


def rule_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]


@needs_promtool
def test_the_scrape_configuration_and_its_rule_files_are_valid() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert "2 rule files found" in done.stdout


@needs_promtool
def test_the_rule_files_are_valid() -> None:
    promtool("check", "rules", *(str(p.relative_to(PROMETHEUS)) for p in RULE_FILES))


@needs_promtool
def test_the_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", *(str(p.relative_to(PROMETHEUS)) for p in RULE_TESTS))
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in rule_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in rules("alert")}
    assert alerts, "no alerts found"
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_recording_rule_is_tested() -> None:
    tested = {case["expr"] for test in rule_tests() for case in test.get("promql_expr_test", [])}
    records = {rule["record"] for rule in rules("record")}
    assert records - tested == set()


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    for rule in rules("alert"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert name.startswith("Uptake"), name


def test_every_alert_has_a_runbook_section_in_the_operations_guide() -> None:
    guide = (REPO / "docs" / "operations.md").read_text()
    headings = {line.lstrip("#").strip() for line in guide.splitlines() if line.startswith("#")}
    for rule in rules("alert"):
        assert rule["alert"] in headings, f"docs/operations.md has no section {rule['alert']}"
        section = guide.split(f"### {rule['alert']}\n", 1)[1].split("\n### ", 1)[0]
        for part in ("Meaning", "Impact", "Action"):
            assert f"**{part}**" in section, f"{rule['alert']}: the runbook has no {part}"


def test_rule_files_select_jobs_the_scrape_configuration_defines() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    text = "\n".join(path.read_text() for path in RULE_FILES)
    used = set(re.findall(r'job="([^"]+)"', text))
    assert used, "no job selectors found"
    assert used <= jobs, f"rules select jobs nobody scrapes: {used - jobs}"


def test_every_rule_file_is_loaded_by_the_configuration() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert {(PROMETHEUS / f).resolve() for f in config["rule_files"]} == {
        p.resolve() for p in RULE_FILES
    }
