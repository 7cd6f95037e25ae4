"""Every metric Uptake exports follows the naming rules and is documented in docs/operations.md."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

import pipeline
from pipeline.observability import adoption, metrics
from pipeline.observability.adoption import PER_TEAM, AdoptionCollector
from pipeline.observability.config import ObservabilitySettings
from tests.conftest import REPO

GUIDE = (REPO / "docs" / "operations.md").read_text()
# The standard process and runtime series keep their usual names, so stock dashboards work.
STANDARD_PREFIXES = ("process_", "python_")
# Units that are not base units (Prometheus: seconds, bytes, ratios 0-1).
NOT_BASE_UNITS = re.compile(
    r"_(ms|millis|milliseconds|us|microseconds|minutes?|hours?|days?|weeks|kb|mb|gb|"
    r"kilobytes|megabytes|percent|pct)(_|$)"
)
TIME_WORDS = {"duration", "latency", "delay", "freshness", "timestamp", "time", "age"}
# Labels that would be unbounded, or identify people.
FORBIDDEN_LABELS = {"user", "user_key", "event_id", "service", "deployment_id", "team"}
# The opt-in, capped per-team adoption gauges are the one place a team label is allowed.
TEAM_LABEL_ALLOWED = set(PER_TEAM)
# DORA's deployment frequency is defined per week; per second it would read 1e-5.
PER_WEEK_ALLOWED = {"uptake_dora_deployment_frequency_per_week"}
PER_WEEK_ALLOWED |= {"uptake_dora_team_deployment_frequency_per_week"}


def _metric_modules() -> Iterator[str]:
    """observability.metrics and every other `metrics` module (e.g. the collector's)."""
    for module in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        if module.name.rsplit(".", 1)[-1] == "metrics":
            yield module.name


def families() -> list[Metric]:
    """Every metric family Uptake's processes can export, with the names a scrape shows."""
    for name in _metric_modules():
        importlib.import_module(name)
    per_team = ObservabilitySettings(adoption_per_team_max_series=1)
    adoption_gauges = AdoptionCollector(lambda: None, per_team)  # type: ignore[arg-type, return-value]
    return [*metrics.REGISTRY.collect(), *adoption_gauges.describe()]


def exposed(family: Metric) -> str:
    """The name a scrape shows: counters end in _total, info metrics in _info."""
    suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
    return family.name + suffix


FAMILIES = families()
UPTAKE = [f for f in FAMILIES if not f.name.startswith(STANDARD_PREFIXES)]


def test_the_registry_is_not_empty() -> None:
    names = {exposed(f) for f in FAMILIES}
    assert "uptake_events_consumed_total" in names
    assert "uptake_consumer_lag_messages" in names
    assert "uptake_adoption_active_teams" in names
    assert "process_cpu_seconds_total" in names


@pytest.mark.parametrize("family", FAMILIES, ids=exposed)
def test_every_metric_is_documented(family: Metric) -> None:
    assert f"`{exposed(family)}`" in GUIDE, f"docs/operations.md does not explain {exposed(family)}"


@pytest.mark.parametrize("family", UPTAKE, ids=exposed)
def test_names_follow_the_prometheus_conventions(family: Metric) -> None:
    name = exposed(family)
    assert name.startswith("uptake_"), name
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
    if family.type == "counter":
        assert name.endswith("_total") and not family.name.endswith("_total"), name
    else:
        assert not name.endswith("_total"), f"{name}: only counters end in _total"
    assert not NOT_BASE_UNITS.search(name) or name in PER_WEEK_ALLOWED, f"{name}: not a base unit"
    words = set(name.split("_"))
    if words & TIME_WORDS:
        assert name.endswith("_seconds"), f"{name}: times are in seconds"
    assert "ratio" not in words or name.endswith("_ratio"), name


def label_names() -> dict[str, set[str]]:
    """Label names of every family, also of labelled metrics that have no series yet."""
    names: dict[str, set[str]] = {n: set(labels) for n, labels in adoption.LABELS.items()}
    for collector in list(metrics.REGISTRY._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            names.setdefault(collector._name, set()).update(collector._labelnames)
    for family in FAMILIES:
        names.setdefault(family.name, set()).update(k for s in family.samples for k in s.labels)
    return names


LABEL_NAMES = label_names()


@pytest.mark.parametrize("family", UPTAKE, ids=exposed)
def test_labels_stay_bounded(family: Metric) -> None:
    labels = LABEL_NAMES[family.name]
    forbidden = FORBIDDEN_LABELS - ({"team"} if family.name in TEAM_LABEL_ALLOWED else set())
    assert not labels & forbidden, f"{family.name} has unbounded labels {labels & forbidden}"


def test_the_label_check_sees_labels_of_metrics_without_series() -> None:
    assert LABEL_NAMES["uptake_events_rejected"] == {"reason"}
    assert LABEL_NAMES["uptake_consumer_lag_messages"] == {"partition"}
    assert "team" in LABEL_NAMES["uptake_adoption_team_active"]


def test_every_documented_metric_exists() -> None:
    """The guide documents nothing that is not exported (names drift both ways)."""
    names = {exposed(f) for f in FAMILIES}
    documented = set(re.findall(r"`((?:uptake|process|python)_[a-z0-9_]+)`", GUIDE))
    # Recording rules are documented as well; they are not exported by a process.
    documented = {n for n in documented if ":" not in n}
    histogram_parts = {n for n in documented if n.endswith(("_bucket", "_count", "_sum"))}
    stale = documented - names - histogram_parts
    assert stale == set(), f"docs/operations.md documents metrics nobody exports: {stale}"
