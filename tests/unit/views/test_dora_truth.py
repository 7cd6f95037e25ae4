"""dora_metrics against the simulator's ground truth, every key, every team and week.

A scenario organisation whose deploys sometimes cause incidents that name them
(`incident_caused_share`) goes straight into `events` (no Kafka); the expected figures are
recomputed from the generated deployments and incidents by the definitions of docs/analysts.md.
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.devtools.simulate.org import GroundTruth, Organisation, Scenario, generate
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.views.direct import insert_events

END = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
SCENARIO = Scenario(incident_caused_share=0.2, trend_per_week=0.03, weekend_deploy_factor=0.5)


@pytest.fixture(scope="module")
def loaded(inprocess_chdb_folder: Path) -> Iterator[tuple[Warehouse, GroundTruth]]:
    url = f"chdb://{inprocess_chdb_folder}?database=dora_truth_{uuid.uuid4().hex[:8]}"
    truth = GroundTruth(detailed=True)
    org = Organisation.synthetic(17, teams=6)
    events = generate(
        org, 8000, 17, end=END, window=timedelta(weeks=5), truth=truth, scenario=SCENARIO
    )
    with connect(url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, events)
        yield wh, truth


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _expected(truth: GroundTruth) -> dict[tuple[str, date], dict[str, Any]]:
    resolved: dict[str, list[datetime]] = defaultdict(list)
    restores: dict[str, tuple[str, datetime, float]] = {}
    for incident in truth.incidents:
        if incident.get("resolved_at"):
            opened, done = _t(incident["opened_at"]), _t(incident["resolved_at"])
            restores[incident["incident_id"]] = (
                incident["team"],
                opened,
                (done - opened).total_seconds(),
            )
            if incident.get("caused_by_deployment"):
                resolved[incident["caused_by_deployment"]].append(done)
    rows: dict[tuple[str, date], dict[str, Any]] = defaultdict(
        lambda: {"deployments": 0, "failures": 0, "leads": [], "recoveries": [], "restores": []}
    )
    for d in truth.deployments:
        if d["environment"] != "production":
            continue
        at = d["at"]
        row = rows[d["team"], (at - timedelta(days=at.weekday())).date()]  # failed: a row too
        if d["status"] == "failed":
            continue
        row["deployments"] += 1
        row["leads"] += [
            max(0.0, (at - _t(c["committed_at"])).total_seconds()) for c in d["commits"]
        ]
        linked = resolved.get(d["deployment_id"])
        if linked or d["status"] == "rolled_back":
            row["failures"] += 1
            end = max(linked) if linked else at
            start = at if linked else _t(d["started_at"])
            row["recoveries"].append(max(0.0, (end - start).total_seconds()))
    for team, opened, seconds in restores.values():
        rows[team, (opened - timedelta(days=opened.weekday())).date()]["restores"].append(seconds)
    return rows


def test_dora_metrics_equal_the_truth(loaded: tuple[Warehouse, GroundTruth]) -> None:
    wh, truth = loaded
    assert any(i.get("caused_by_deployment") for i in truth.incidents), "no linked incident"
    names, rows = wh.query("SELECT * FROM dora_metrics WHERE period = 'week'")
    records = [dict(zip(names, row, strict=True)) for row in rows]
    got = {(r["team"], r["period_start"]): r for r in records}
    want = _expected(truth)
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert g["deployments"] == w["deployments"], key
        assert g["deployment_frequency_per_week"] == pytest.approx(w["deployments"]), key
        assert g["change_failures"] == w["failures"], key
        if w["deployments"]:
            assert g["change_failure_rate"] == pytest.approx(w["failures"] / w["deployments"])
        for column, values in (
            ("lead_time_median_s", w["leads"]),
            ("recovery_time_median_s", w["recoveries"]),
            ("time_to_restore_median_s", w["restores"]),
        ):
            expected = statistics.median(values) if values else None
            assert g[column] == pytest.approx(expected, abs=0.002), (key, column)
