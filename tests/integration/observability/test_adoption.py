"""Adoption and DORA gauges against the real engine: the figures, the per-team cap."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.observability.adoption import (
    AdoptionFigures,
    Dora,
    families,
    read_figures,
)
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def _event(
    team: str,
    capability: str,
    days_ago: float,
    *,
    event_type: str = "api_call",
    data: dict[str, Any] | None = None,
    event_id: uuid.UUID | None = None,
) -> tuple[Any, ...]:
    occurred = NOW - timedelta(days=days_ago)
    body = data or {"api": "orders", "operation": "GET /x", "status_code": 200, "latency_ms": 1}
    return (
        event_id or uuid.uuid4(),
        event_type,
        int(occurred.timestamp() * 1000),
        team,
        capability,
        json.dumps(body),
    )


def _deploy(
    team: str,
    days_ago: float,
    status: str,
    *,
    environment: str = "production",
    commits_hours_before: tuple[float, ...] = (),
    offset: str = "Z",
    event_id: uuid.UUID | None = None,
) -> tuple[Any, ...]:
    deployed = NOW - timedelta(days=days_ago)
    tz = UTC if offset == "Z" else datetime.strptime(offset, "%z").tzinfo
    commits = [
        {
            "sha": "abcdef1",
            "committed_at": (deployed - timedelta(hours=h)).astimezone(tz).isoformat(),
        }
        for h in commits_hours_before
    ]
    body = {
        "deployment_id": f"dep-{uuid.uuid4().hex[:6]}",
        "service": f"{team}-api",
        "environment": environment,
        "status": status,
        "commits": commits,
    }
    return _event(
        team, "deploy-pipeline", days_ago, event_type="deploy", data=body, event_id=event_id
    )


DUPLICATE = uuid.uuid4()


ROWS = [
    _event("payments", "api-gateway", 1),
    _event("payments", "feature-store", 10),
    _event("search", "api-gateway", 3),
    _event("search", "api-gateway", 4),
    _event("risk", "feature-store", 20),
    _event("risk", "ml-training", 40),  # outside 28 days
    _event("legacy", "api-gateway", 35),  # a team not seen for 28 days is not known
    _event("", "api-gateway", 1),  # attributed to a service only: no team to count
    _event("unowned", "api-gateway", 1),  # no owner found: no team to count
    # An API the catalog does not list for api-gateway: not use of it.
    _event(
        "risk",
        "api-gateway",
        2,
        data={"api": "internal", "operation": "GET /x", "status_code": 200, "latency_ms": 1},
    ),
    # Production deploys in the last 28 days: 4 (one sent twice), 2 of them failures.
    _deploy("search", 2, "succeeded", commits_hours_before=(1, 3), event_id=DUPLICATE),
    _deploy("search", 5, "failed", commits_hours_before=(50,)),
    _deploy("search", 1, "succeeded", environment="staging", commits_hours_before=(99,)),
    _deploy("payments", 6, "rolled_back", commits_hours_before=(2,)),
    _deploy("payments", 8, "succeeded", commits_hours_before=(0.5,), offset="+0100"),
    _deploy("payments", 30, "succeeded", commits_hours_before=(9,)),  # outside 28 days
]


DUPLICATE_AT = next(i for i, row in enumerate(ROWS) if row[0] == DUPLICATE)


COLUMNS = ["event_id", "event_type", "occurred_at", "team", "capability", "data"]


CATALOG = [
    ("api-gateway", ["api_call"], ["orders", "profile"], ["payments", "search", "risk"]),
    ("feature-store", ["api_call"], [], ["payments", "risk"]),
    ("deploy-pipeline", ["deploy"], [], []),
]


WIRE = ["UUID", "String", "DateTime64(3, 'UTC')", "String", "String", "String"]


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        # The duplicate in its own insert: one block would be folded on insert already.
        for rows in (ROWS, [ROWS[DUPLICATE_AT]]):
            columns = [list(column) for column in zip(*rows, strict=True)]
            wh.insert_columns("events", columns, COLUMNS, wire_types=WIRE)
        catalog = [[*row, 1] for row in CATALOG]
        wh.insert_columns(
            "capability_catalog",
            [list(column) for column in zip(*catalog, strict=True)],
            ["name", "event_types", "apis", "target_teams", "declared"],
        )
        yield wh


def samples(collector: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a scrape of `collector` shows, keyed by (name, sorted labels)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Fixed:
    """A collector over fixed figures (what a scrape of given figures shows)."""

    def __init__(self, figures: AdoptionFigures, per_team_max_series: int = 0) -> None:
        self.out = families(figures, per_team_max_series)

    def collect(self) -> Any:
        return self.out


@pytest.mark.integration
def test_adoption_and_dora_figures_from_the_warehouse(warehouse: Warehouse) -> None:
    figures = read_figures(warehouse, NOW.timestamp(), per_team=False)
    assert figures.known_teams == 3  # payments, search, risk
    assert figures.active_teams == {
        "api-gateway": {"7d": 2, "28d": 2},
        "feature-store": {"7d": 0, "28d": 2},
        "deploy-pipeline": {"7d": 2, "28d": 2},
    }
    # Deployments went live: the duplicate counts once, staging and the failed deploy not at all.
    assert figures.dora.deployments == 3
    assert figures.dora.failures == 1, "the rolled back deployment"
    # Lead times of deployments: 1 h, 3 h (search), 2 h and 0.5 h (payments, +01:00).
    assert figures.dora.lead_time_median_s == pytest.approx(1.5 * 3600)
    assert figures.teams == []

    scraped = samples(Fixed(figures))
    assert scraped["uptake_adoption_known_teams", ()] == 3
    key = (("capability", "api-gateway"), ("window", "7d"))
    assert scraped["uptake_adoption_active_teams", key] == 2
    assert scraped["uptake_adoption_rate", key] == pytest.approx(2 / 3)
    assert scraped["uptake_adoption_rate", (("capability", "feature-store"), ("window", "7d"))] == 0
    assert scraped["uptake_dora_deployment_frequency_per_week", ()] == 0.75  # 3 in 4 weeks
    assert scraped["uptake_dora_change_failure_ratio", ()] == pytest.approx(1 / 3)
    assert scraped["uptake_dora_lead_time_seconds", ()] == pytest.approx(1.5 * 3600)
    assert not any(name.startswith("uptake_dora_team") for name, _ in scraped)


@pytest.mark.integration
def test_per_team_series_are_capped_most_active_team_first(warehouse: Warehouse) -> None:
    figures = read_figures(warehouse, NOW.timestamp(), per_team=True)
    by_team = {t.team: t for t in figures.teams}
    assert [t.team for t in figures.teams] == ["search", "payments", "risk"]  # 5+, 4, 1 events
    assert by_team["search"].active_7d == {"api-gateway": True, "deploy-pipeline": True}
    assert by_team["search"].dora == Dora(1, 0, 7200.0)  # median of 1 h and 3 h
    assert by_team["payments"].dora == Dora(2, 1, 4500.0)  # median of 2 h and 0.5 h
    assert by_team["risk"].dora is None
    assert [t.series() for t in figures.teams] == [7, 9, 2]

    everything = samples(Fixed(figures, per_team_max_series=100))
    team_series = [
        k for k in everything if k[0].startswith(("uptake_adoption_team_a", "uptake_dora_team"))
    ]
    assert len(team_series) == 18
    assert everything["uptake_adoption_team_series_omitted", ()] == 0
    feature_store_7d = (("capability", "feature-store"), ("team", "payments"), ("window", "7d"))
    assert everything["uptake_adoption_team_active", feature_store_7d] == 0
    assert everything["uptake_dora_team_change_failure_ratio", (("team", "payments"),)] == 0.5

    # 10 series: search (7) fits, payments (9) does not, risk (2) still does.
    capped = samples(Fixed(figures, per_team_max_series=10))
    teams = {dict(labels).get("team") for _, labels in capped} - {None}
    assert teams == {"search", "risk"}
    assert capped["uptake_adoption_team_series_omitted", ()] == 9
    assert sum(1 for k in capped if "team" in dict(k[1])) <= 10


def _day(days_ago: int) -> Any:
    return (NOW - timedelta(days=days_ago)).date()


# (team, capability, state, first use days ago): the lifecycle table as the worker writes it.
LIFECYCLE = [
    ("a", "feature-store", "first_use", 40),  # stalled: tried 40 days ago, never activated
    ("b", "feature-store", "first_use", 29),  # stalled
    ("c", "feature-store", "first_use", 27),  # trying, within 28 days: not yet stalled
    ("d", "feature-store", "reactivated", 60),  # trying again after a churn: not stalled
    ("e", "feature-store", "activated", 50),
    ("f", "feature-store", "churned", 90),
    ("unowned", "feature-store", "first_use", 40),  # not a team
    ("a", "api-gateway", "activated", 10),
]


@pytest.mark.integration
def test_lifecycle_stage_and_stalled_gauges(warehouse: Warehouse) -> None:
    columns = [
        [row[0] for row in LIFECYCLE],
        [row[1] for row in LIFECYCLE],
        [row[2] for row in LIFECYCLE],
        [_day(row[3]) for row in LIFECYCLE],
    ]
    warehouse.insert_columns(
        "adoption_lifecycle", columns, ["team", "capability", "state", "first_use"]
    )
    figures = read_figures(warehouse, NOW.timestamp(), per_team=False)
    assert figures.stages == {
        "feature-store": {"trying": 4, "activated": 1, "churned": 1},
        "api-gateway": {"trying": 0, "activated": 1, "churned": 0},
    }
    assert figures.stalled == {"feature-store": 2, "api-gateway": 0}
    scraped = samples(Fixed(figures))
    stage = (("capability", "feature-store"), ("stage", "trying"))
    assert scraped["uptake_adoption_teams", stage] == 4
    assert scraped["uptake_adoption_stalled_teams", (("capability", "feature-store"),)] == 2
