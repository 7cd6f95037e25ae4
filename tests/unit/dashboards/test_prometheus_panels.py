"""Every Prometheus panel query parses, and evaluates to data over exactly the exported metrics.

Prometheus's own engine judges the queries: `promtool test rules` evaluates each panel expression
(with Grafana's `$__rate_interval` and the dashboard variables expanded) over input series made
from the metric definitions the pipeline registers: every counter, gauge, histogram and info of
`observability.metrics.REGISTRY` (the worker's and the collector's, the process collectors) and the
adoption gauges, with their real label names, for both scrape jobs, plus Prometheus's `up`. A
query that names a metric or label the pipeline does not export, or does not parse, gets no
data and fails. A separate check requires every metric a query names to be one of those.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import pipeline.collector.metrics
from pipeline.catalog.errors import WARNING_KINDS
from pipeline.contract.reasons import Reason
from pipeline.dashboards.board import PROMETHEUS_UID
from pipeline.lifecycle.rules import KINDS
from pipeline.observability import adoption, metrics
from tests.conftest import REPO
from tests.support.dashboards import dashboard_files, panels_of

RECORDING_RULES = REPO / "deploy" / "prometheus" / "rules" / "uptake-recording.yml"
JOBS = ("uptake-worker", "uptake-collector")
STEP_S, STEPS = 15, 40
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "event_type": ("api_call", "deploy"),
    "reason": tuple(r.value for r in Reason)[:2],
    "table": ("events", "rejected_events"),
    "partition": ("0", "1"),
    "capability": ("api-gateway",),
    "window": ("7d", "28d"),
    "stage": ("trying", "activated", "churned"),
    "team": ("payments",),
    "route": pipeline.collector.metrics.ROUTES,
    "status": ("202", "503"),
    "outcome": pipeline.collector.metrics.OUTCOMES,
    "milestone": KINDS,
    "action": ("publish", "retract"),
    "topic": ("uptake.events",),
    "kind": WARNING_KINDS[:2],
    "step": ("decode", "pseudonymise"),
}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed: `make test` (target system-deps) installs Debian's "
    "prometheus package; or run `apt-get install prometheus`",
)


def exported_series() -> Iterator[tuple[str, dict[str, str], str]]:
    """(sample name, labels, promtool value notation) for every series the pipeline exports."""
    for collector in list(metrics.REGISTRY._collector_to_names):
        if not isinstance(collector, MetricWrapperBase):
            for family in collector.collect():  # process_*, python_*: samples exist already
                for sample in family.samples:
                    yield sample.name, dict(sample.labels), "1+1x40"
            continue
        name, kind = collector._name, collector._type
        label_sets = [
            dict(zip(collector._labelnames, values, strict=True))
            for values in itertools.product(*(LABEL_VALUES[n] for n in collector._labelnames))
        ]
        for labels in label_sets:
            if kind == "counter":
                yield f"{name}_total", labels, "0+10x40"
            elif kind == "gauge":
                yield name, labels, "5+0x40"
            elif kind == "info":
                yield f"{name}_info", {**labels, "version": "0", "warehouse_kind": "chdb"}, "1+0x40"
            elif kind == "histogram":
                bounds = collector._upper_bounds
                for i, bound in enumerate(bounds):
                    le = "+Inf" if bound == float("inf") else repr(float(bound))
                    yield f"{name}_bucket", {**labels, "le": le}, f"0+{i + 1}x40"
                yield f"{name}_count", labels, f"0+{len(bounds)}x40"
                yield f"{name}_sum", labels, "0+3x40"
            else:  # pragma: no cover - a new metric type needs a line here
                raise AssertionError(f"unknown metric type {kind} of {name}")
    for name, label_names in adoption.LABELS.items():
        for values in itertools.product(*(LABEL_VALUES[n] for n in label_names)):
            yield name, dict(zip(label_names, values, strict=True)), "5+0x40"


def _series_text(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def input_series() -> list[dict[str, str]]:
    series = []
    for job in JOBS:
        common = {"job": job, "instance": "host-a"}
        series.append({"series": _series_text("up", common), "values": "1+0x40"})
        for name, labels, values in exported_series():
            series.append({"series": _series_text(name, {**labels, **common}), "values": values})
    return series


def exported_names() -> set[str]:
    return {name for name, _, _ in exported_series()} | {"up"}


def exported_label_names() -> set[str]:
    found = {"job", "instance"}  # set by every scrape
    for _, labels, _ in exported_series():
        found |= labels.keys()
    return found


def prometheus_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) of every Prometheus target."""
    found = []
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        for panel in panels_of(dashboard):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("uid") == PROMETHEUS_UID:
                    found.append((path.name, panel["title"], target["expr"]))
    return found


def expand(expr: str) -> str:
    """Grafana's variables as a default dashboard has them: All instances, a 1m rate window."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    expr = re.sub(r"\$\{?(instance|collector_instance)\}?", ".*", expr)
    assert "$" not in expr, f"unexpanded variable in {expr}"
    return expr


QUERIES = prometheus_queries()


def test_the_pipeline_health_dashboard_has_prometheus_panels() -> None:
    assert len(QUERIES) >= 20


@pytest.mark.parametrize(("dashboard", "title", "expr"), QUERIES, ids=[q[1] for q in QUERIES])
def test_a_prometheus_query_names_only_exported_metrics(
    dashboard: str, title: str, expr: str
) -> None:
    names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    assert names, f"{title}: selects no metric with label matchers"
    assert names <= exported_names(), f"{title}: not exported: {names - exported_names()}"
    # Every metric is selected with label matchers (the job scope), so the check above sees all.
    bare = re.findall(r"\b((?:uptake|process|python)_[a-zA-Z0-9_]*)\b(?!\{)", expr)
    assert not bare, f"{title}: metric without label matchers: {bare}"
    # A grouping or matcher on a label no series has would still give data (one group).
    grouped = {
        label.strip()
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
        for label in clause.split(",")
    }
    matched = set(re.findall(r"[{,]\s*([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", expr))
    unknown = (grouped | matched) - exported_label_names()
    assert not unknown, f"{title}: labels no exported series has: {unknown}"


@needs_promtool
def test_every_prometheus_query_parses_and_has_data(tmp_path: Path) -> None:
    tests: list[dict[str, Any]] = [
        {
            "interval": f"{STEP_S}s",
            "input_series": input_series(),
            "promql_expr_test": [
                {
                    "expr": f"clamp_max(count({expand(expr)}), 1)",
                    "eval_time": f"{STEP_S * (STEPS - 1)}s",
                    "exp_samples": [{"labels": "{}", "value": 1}],
                }
                for _, _, expr in QUERIES
            ],
        }
    ]
    test_file = tmp_path / "panels.test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(RECORDING_RULES)], "tests": tests}, sort_keys=False)
    )
    done = subprocess.run(
        ["promtool", "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"promtool:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"


def test_instance_variables_list_label_values_of_an_exported_series() -> None:
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("uid") != PROMETHEUS_UID:
                continue
            match = re.fullmatch(r"label_values\((\w+)\{[^}]*\}, (\w+)\)", variable["query"])
            assert match, variable["query"]
            assert match[1] in exported_names()
            assert match[2] == "instance"  # set by every scrape (relabelled to the host)
