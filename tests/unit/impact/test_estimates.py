"""`uptake impact`'s estimates against the simulator's ground truth, through a real warehouse.

A simulated organisation where every team gets faster by itself (an organisation-wide trend)
goes straight into `events` (no Kafka: tests/support/views/direct.py); the panel is read from
dora_metrics and adoption_first_use as `uptake impact` reads it. Under the trend the naive
before/after credits adoption with the organisation's own improvement; the staggered
difference-in-differences recovers the true factor, and a capability without any effect gets
an interval that covers no change. One fixed seed: deterministic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.devtools.simulate.org import Organisation, Scenario, generate
from pipeline.impact.estimate import METHOD, NAIVE, Estimate, Panel, did, estimate_all, naive
from pipeline.impact.store import read_panel, write
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.views.direct import insert_events

SEED = 3
SCENARIO = Scenario(trend_per_week=0.06, lead_time_factor=0.5, weekend_deploy_factor=0.4)
END = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = timedelta(weeks=12)


@contextmanager
def simulated(folder: Path, scenario: Scenario) -> Iterator[Warehouse]:
    """A fresh warehouse holding 30 000 events of the 16-team organisation under `scenario`."""
    url = f"chdb://{folder}?database=impact_{uuid.uuid4().hex[:8]}"
    with connect(url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        org = Organisation.synthetic(SEED, teams=16)
        insert_events(wh, generate(org, 30_000, SEED, end=END, window=WINDOW, scenario=scenario))
        yield wh


@pytest.fixture(scope="module")
def warehouse(inprocess_chdb_folder: Path) -> Iterator[Warehouse]:
    with simulated(inprocess_chdb_folder, SCENARIO) as wh:
        yield wh


@pytest.fixture(scope="module")
def panel(warehouse: Warehouse) -> Panel:
    return read_panel(warehouse)


@pytest.fixture(scope="module")
def lead_time(panel: Panel) -> tuple[Estimate, Estimate]:
    return did(panel, "deploy-pipeline", "lead_time"), naive(panel, "deploy-pipeline", "lead_time")


def test_the_estimate_recovers_the_true_factor(lead_time: tuple[Estimate, Estimate]) -> None:
    estimate, _ = lead_time
    truth = SCENARIO.effects()["deploy-pipeline"]["lead_time"]
    assert estimate.status == "ok", estimate.note
    assert estimate.method == METHOD and estimate.scale == "factor"
    assert estimate.treated_teams >= 3 and estimate.control_teams >= 3
    assert estimate.covers(truth), estimate
    assert not estimate.covers(1.0), "the interval should exclude no change"


def test_under_the_trend_the_naive_before_after_is_biased(
    lead_time: tuple[Estimate, Estimate],
) -> None:
    estimate, naive_estimate = lead_time
    truth = SCENARIO.effects()["deploy-pipeline"]["lead_time"]
    assert naive_estimate.method == NAIVE and naive_estimate.estimate is not None
    # The trend makes "after" look faster than adoption alone did: biased below the truth,
    # and outside the difference-in-differences interval.
    assert naive_estimate.estimate < 0.85 * truth
    assert not estimate.covers(naive_estimate.estimate)


def test_a_capability_without_effect_gets_an_interval_covering_no_change(panel: Panel) -> None:
    capability = SCENARIO.no_effect_capability
    assert set(SCENARIO.effects()[capability].values()) == {1.0}
    estimate = did(panel, capability, "lead_time")
    assert estimate.status == "ok", estimate.note
    assert estimate.covers(1.0), estimate
    # The naive comparison sees an "improvement" that is only the trend.
    naive_estimate = naive(panel, capability, "lead_time")
    assert naive_estimate.estimate is not None and naive_estimate.estimate < 0.9


def test_thin_data_is_reported_as_insufficient(panel: Panel) -> None:
    teams = sorted({row[0] for row in panel.rows})[:4]
    thin = Panel([r for r in panel.rows if r[0] in teams], panel.first_use)
    estimate = did(thin, "deploy-pipeline", "lead_time")
    assert estimate.status == "insufficient_data"
    assert estimate.estimate is None and estimate.note


def test_estimates_are_written_with_their_n(warehouse: Warehouse, lead_time: tuple) -> None:
    at = datetime(2026, 6, 2, tzinfo=UTC)
    assert write(warehouse, list(lead_time), at) == 2
    names, rows = warehouse.query(
        "SELECT method, estimate, ci_low, treated_teams, control_teams, status "
        "FROM impact_estimates_latest ORDER BY method"
    )
    got = [dict(zip(names, row, strict=True)) for row in rows]
    assert [r["method"] for r in got] == sorted([METHOD, NAIVE])
    did_row = next(r for r in got if r["method"] == METHOD)
    assert did_row["treated_teams"] == lead_time[0].treated_teams
    assert did_row["ci_low"] == pytest.approx(lead_time[0].ci_low)


# A true effect on failed deployment recovery time: adopting incident-response multiplies it
# by 0.4 (rollback durations and the time to resolve incidents deploys caused alike), under
# the organisation-wide trend. Change failures are made common enough (a rate of 0.3 and a
# fifth of succeeded deploys causing an incident) for most team-weeks to have a recovery.
RECOVERY = Scenario(
    trend_per_week=0.06,
    recovery_factor=0.4,
    change_failure_rate=0.3,
    incident_caused_share=0.2,
)


@pytest.fixture(scope="module")
def recovery_panel(inprocess_chdb_folder: Path) -> Iterator[Panel]:
    with simulated(inprocess_chdb_folder, RECOVERY) as wh:
        yield read_panel(wh)


def test_the_recovery_estimate_covers_the_true_factor(recovery_panel: Panel) -> None:
    truth = RECOVERY.effects()["incident-response"]["recovery_time"]
    assert truth == 0.4
    estimates = {
        e.method: e
        for e in estimate_all(recovery_panel, ["incident-response"])
        if e.metric == "recovery_time"
    }
    estimate, naive_estimate = estimates[METHOD], estimates[NAIVE]
    assert estimate.status == "ok", estimate.note
    assert estimate.scale == "factor" and estimate.treated_teams >= 3
    assert estimate.covers(truth), estimate
    assert not estimate.covers(1.0), "the interval should exclude no change"
    # The naive before/after is reported, and labelled as no effect estimate.
    assert naive_estimate.status == "ok" and naive_estimate.estimate is not None
    assert naive_estimate.ci_low is None and naive_estimate.control_teams == 0
    assert naive_estimate.note.startswith("naive:")


def test_the_recovery_estimate_is_not_the_trend(recovery_panel: Panel) -> None:
    """Negative control: the capability without any effect gets a recovery interval that covers
    no change and excludes incident-response's true factor, while its naive before/after
    credits it with the organisation's trend (about 0.42 with this seed)."""
    capability = RECOVERY.no_effect_capability
    assert set(RECOVERY.effects()[capability].values()) == {1.0}
    estimate = did(recovery_panel, capability, "recovery_time")
    naive_estimate = naive(recovery_panel, capability, "recovery_time")
    assert estimate.status == "ok", estimate.note
    assert estimate.covers(1.0), estimate
    assert not estimate.covers(RECOVERY.effects()["incident-response"]["recovery_time"])
    assert naive_estimate.estimate is not None and naive_estimate.estimate < 0.7
    assert not estimate.covers(naive_estimate.estimate)
