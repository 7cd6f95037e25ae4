"""deploy/prometheus: the configuration and rules are valid, and every rule is unit-tested.

`promtool` comes from Debian's `prometheus` package, which `make test` installs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.config.settings import DEFAULT_RUNBOOK_BASE_URL
from pipeline.ops import runbooks
from tests.conftest import REPO, Pipeline

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
    assert "3 rule files found" in done.stdout


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
        url = urlsplit(annotations["runbook_url"])
        assert url.scheme in ("http", "https") and url.netloc, (name, annotations["runbook_url"])
        assert annotations["runbook_url"] == f"{DEFAULT_RUNBOOK_BASE_URL}#{name.lower()}", name
        assert name.startswith("Uptake"), name


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown page."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_every_runbook_url_is_absolute_and_its_anchor_is_a_heading_of_the_guide() -> None:
    anchors = _anchors((REPO / "docs" / "operations.md").read_text())
    urls = [rule["annotations"]["runbook_url"] for rule in rules("alert")]
    assert urls
    for url in urls:
        base, _, anchor = url.partition("#")
        assert base == DEFAULT_RUNBOOK_BASE_URL and base.endswith("/docs/operations.md"), url
        assert anchor in anchors, f"{url}: docs/operations.md has no heading with that anchor"


def test_rendering_for_another_base_changes_only_the_runbook_links(tmp_path: Path) -> None:
    base = "https://docs.example.com/uptake/operations.html"
    runbooks.write(PROMETHEUS / "rules", tmp_path, base)
    for path in RULE_FILES:
        shipped, rendered = path.read_text(), (tmp_path / path.name).read_text()
        assert rendered.replace(base, DEFAULT_RUNBOOK_BASE_URL) == shipped, path.name
    assert runbooks.problems(tmp_path, base) == []
    assert len(runbooks.problems(tmp_path, DEFAULT_RUNBOOK_BASE_URL)) == len(rules("alert"))


def test_negative_control_check_names_a_link_with_a_wrong_anchor(tmp_path: Path) -> None:
    for path in RULE_FILES:
        text = path.read_text().replace("#uptakeworkerdown", "#uptakeworkerup")
        (tmp_path / path.name).write_text(text)
    (problem,) = runbooks.problems(tmp_path, DEFAULT_RUNBOOK_BASE_URL)
    assert (
        problem.startswith("uptake-alerts.yml: UptakeWorkerDown links")
        and "#uptakeworkerup" in problem
    )


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


def test_uptake_rules_render_uses_the_base_setting_and_check_fails_on_another(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTAKE_")}

    def uptake(*args: str, base: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"UPTAKE_RUNBOOK_BASE_URL": base} if base else {}
        return Pipeline({**env, **extra}, tmp_path).run("rules", *args, timeout=120, check=False)

    base = "https://git.example.com/platform/uptake/-/blob/main/docs/operations.md"
    out = tmp_path / "rules"
    assert uptake("render", "--output", str(out), base=base).returncode == 0
    assert f'runbook_url: "{base}#uptakeworkerdown"' in (out / "uptake-alerts.yml").read_text()
    assert uptake("check", "--dir", str(out), base=base).returncode == 0
    wrong = uptake("check", "--dir", str(out))  # the default base: every alert is named
    assert wrong.returncode == 1
    assert "UptakeWorkerDown links" in wrong.stderr and "uptake rules render" in wrong.stderr
    assert uptake("check").returncode == 0  # the shipped files use the default base
