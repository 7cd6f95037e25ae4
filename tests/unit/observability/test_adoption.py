"""Adoption and DORA gauges without a warehouse: scrapes serve the cache, refresh failures, the
background thread, per-team families off by default (the figures against the real engine:
tests/integration/observability/test_adoption.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.observability import metrics
from pipeline.observability.adoption import (
    AdoptionCollector,
    AdoptionFigures,
    TeamAdoption,
    families,
)
from pipeline.observability.config import ObservabilitySettings

# Recent, not a fixed date: api_call rows older than 90 days are deleted by the events TTL (0003).
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


# The capability catalog: what counts as use, and the target teams (the rates' denominator).


class CountingWarehouse:
    """A warehouse that answers the adoption queries with fixed rows and counts them."""

    def __init__(self) -> None:
        self.queries = 0
        self.closed = False

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.queries += 1
        if "adoption_lifecycle" in sql:
            return [("api-gateway", 1, 2, 0, 1)]
        if "uniqExactIf" in sql:
            return [("api-gateway", 1, 2, 1, 2, 4)]
        if "incident_restores" in sql:
            return [(0, float("nan"), 0, float("nan"))]
        if "count(), quantile" in sql:
            return [(0, float("nan"))]
        if "deployments" in sql:
            return []
        return [(4,)]

    def close(self) -> None:
        self.closed = True


def test_scrapes_serve_the_cache_and_never_query_the_warehouse() -> None:
    fake = CountingWarehouse()
    collector = AdoptionCollector(lambda: fake, ObservabilitySettings(), clock=NOW.timestamp)  # type: ignore[arg-type, return-value]
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)  # uses describe(): no query
    assert fake.queries == 0
    assert "uptake_adoption_active_teams{" not in generate_latest(registry).decode()

    assert collector.refresh()
    per_refresh = fake.queries
    for _ in range(20):
        text = generate_latest(registry).decode()
    assert fake.queries == per_refresh, "a scrape queried the warehouse"
    assert 'uptake_adoption_active_teams{capability="api-gateway",window="28d"} 2.0' in text
    assert 'uptake_adoption_rate{capability="api-gateway",window="7d"} 0.25' in text
    assert "\nuptake_dora_lead_time_seconds " not in text, "no commits: no lead time series"
    assert metrics.ADOPTION_REFRESHED._value.get() == NOW.timestamp()


def test_a_failed_refresh_keeps_the_previous_figures_and_counts_an_error() -> None:
    fake = CountingWarehouse()
    answers: list[Any] = [fake, ConnectionError("ClickHouse is down"), fake]

    def connect_once() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    collector = AdoptionCollector(connect_once, ObservabilitySettings())
    assert collector.refresh()
    before = list(collector.collect())
    errors = metrics.ADOPTION_REFRESH_ERRORS._value.get()

    def timing_out(sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise TimeoutError("query timed out")

    fake.rows = timing_out  # type: ignore[method-assign]
    assert not collector.refresh()
    assert fake.closed, "a broken connection is closed and opened again next time"
    assert list(collector.collect()) == before
    assert not collector.refresh()  # connecting fails
    assert metrics.ADOPTION_REFRESH_ERRORS._value.get() == errors + 2


def test_the_background_thread_refreshes_and_stops() -> None:
    fake = CountingWarehouse()
    collector = AdoptionCollector(lambda: fake, ObservabilitySettings(adoption_refresh_s=1))  # type: ignore[arg-type, return-value]
    collector.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=5)
        while not list(collector.collect()) and datetime.now(UTC) < deadline:
            pass
        assert list(collector.collect()), "the first refresh runs at start"
    finally:
        collector.stop()
    assert fake.closed


def test_per_team_families_are_off_by_default() -> None:
    figures = AdoptionFigures(
        known_teams=1,
        active_teams={"api-gateway": {"7d": 1, "28d": 1}},
        teams=[TeamAdoption("payments", 3, {"api-gateway": True})],
    )
    names = {family.name for family in families(figures)}
    assert not any("team_" in name for name in names)
    collector = AdoptionCollector(lambda: None, ObservabilitySettings())  # type: ignore[arg-type, return-value]
    assert not any("team_" in f.name for f in collector.describe())
