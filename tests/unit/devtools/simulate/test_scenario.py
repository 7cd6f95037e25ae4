"""The scenario world: the same event mix before and after adoption, a trend, seasonality, truth."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.catalog.sources import load_team_catalog
from pipeline.devtools.simulate.catalog import write_team_catalog
from pipeline.devtools.simulate.org import (
    API_GATEWAY,
    GroundTruth,
    Organisation,
    Scenario,
    generate,
)
from tests.conftest import REPO

END = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = timedelta(weeks=8)


def _run(scenario: Scenario, events: int = 40_000, teams: int = 12) -> tuple[GroundTruth, list]:
    truth = GroundTruth(detailed=True)
    org = Organisation.synthetic(5, teams=teams)
    made = list(generate(org, events, 5, end=END, window=WINDOW, truth=truth, scenario=scenario))
    return truth, made


def _production(truth: GroundTruth) -> list[dict[str, Any]]:
    return [d for d in truth.deployments if d["environment"] == "production"]


def test_deploys_are_as_dense_before_adoption_as_after() -> None:
    """The early weeks are not dense with deploys (the artifact that made adoption look bad).

    Negative control: on the generator before this fix the ratio was 0.60.
    """
    truth, _ = _run(Scenario())
    assert truth.start is not None and truth.end is not None
    before = after = 0
    span_before = span_after = timedelta(0)
    for team in truth.teams:
        adopted = truth.first_use.get((team, "deploy-pipeline"))
        if adopted is None:
            continue
        deploys = [d["at"] for d in truth.deployments if d["team"] == team]
        before += sum(at < adopted for at in deploys)
        after += sum(at >= adopted for at in deploys)
        span_before += adopted - truth.start
        span_after += truth.end - adopted
    ratio = (after / span_after.total_seconds()) / (before / span_before.total_seconds())
    assert 0.8 < ratio < 1.25, ratio
    # The first 2 % of the window holds about 2 % of the deploys, not a burst.
    early = sum(d["at"] < truth.start + WINDOW * 0.02 for d in truth.deployments)
    assert early < 0.05 * len(truth.deployments), early


def test_the_trend_and_the_weekend_show_in_the_events() -> None:
    scenario = Scenario(trend_per_week=0.08, weekend_deploy_factor=0.3)
    truth, _ = _run(scenario)
    assert truth.start is not None
    deploys = _production(truth)
    weekend = sum(d["at"].weekday() >= 5 for d in deploys) / 2
    weekday = sum(d["at"].weekday() < 5 for d in deploys) / 5
    assert 0.2 < weekend / weekday < 0.45
    # Teams that never adopt deploy-pipeline still get faster: the organisation's trend.
    never = {t for t in truth.teams if (t, "deploy-pipeline") not in truth.first_use}
    legacy = [d for d in deploys if d["capability"] == "self-managed-ci"]
    first = [_lead(d) for d in legacy if d["at"] < truth.start + timedelta(weeks=2)]
    last = [_lead(d) for d in legacy if d["at"] >= truth.start + timedelta(weeks=6)]
    expected = scenario.trend(6)  # about 6 weeks apart
    assert never or legacy
    assert statistics.median(last) / statistics.median(first) == pytest.approx(expected, rel=0.35)
    # And more deploys late than early (the rate grows with the trend).
    early = sum(d["at"] < truth.start + timedelta(weeks=2) for d in legacy)
    assert early > 0


def _lead(deploy: dict[str, Any]) -> float:
    at = deploy["at"]
    commits = [datetime.fromisoformat(c["committed_at"]) for c in deploy["commits"]]
    return statistics.median((at - c).total_seconds() for c in commits)


def test_the_truth_names_each_capabilitys_factors_and_one_without_effect() -> None:
    scenario = Scenario(deploy_frequency_factor=1.5)
    effects = scenario.effects()
    assert effects["deploy-pipeline"]["lead_time"] == scenario.lead_time_factor
    assert effects["deploy-pipeline"]["deployment_frequency"] == 1.5
    assert effects["incident-response"]["time_to_restore"] == scenario.restore_factor
    assert set(effects[scenario.no_effect_capability].values()) == {1.0}
    with pytest.raises(ValueError):
        Scenario(no_effect_capability="deploy-pipeline")


def test_deploy_frequency_factor_raises_adopters_rate() -> None:
    truth, _ = _run(Scenario(deploy_frequency_factor=2.0))
    assert truth.end is not None and truth.start is not None
    before = after = 0.0
    span_before = span_after = 0.0
    for team in truth.teams:
        adopted = truth.first_use.get((team, "deploy-pipeline"))
        if adopted is None:
            continue
        deploys = [d["at"] for d in truth.deployments if d["team"] == team]
        before += sum(at < adopted for at in deploys)
        after += sum(at >= adopted for at in deploys)
        span_before += (adopted - truth.start).total_seconds()
        span_after += (truth.end - adopted).total_seconds()
    assert (after / span_after) / (before / span_before) == pytest.approx(2.0, rel=0.25)


def test_scenario_events_with_linked_incidents_pass_the_contract() -> None:
    from tests.unit.devtools.simulate import test_org

    scenario = Scenario(incident_caused_share=0.3, trend_per_week=0.05, weekend_deploy_factor=0.3)
    truth = GroundTruth(detailed=True)
    org = Organisation.synthetic(5, teams=6)
    end, window = test_org.END, test_org.WINDOW
    events = list(generate(org, 6000, 5, end=end, window=window, truth=truth, scenario=scenario))
    linked = {i["caused_by_deployment"] for i in truth.incidents if i.get("caused_by_deployment")}
    assert linked and linked <= {d["deployment_id"] for d in truth.deployments}
    batch = test_org._decode(events)
    assert [(r.reason, r.detail) for r in batch.rejections][:5] == []
    assert len(batch.events) == len(events)


def test_calls_of_an_unlisted_api_are_recorded_as_no_use() -> None:
    scenario = Scenario(uncounted_api_share=0.05)
    truth, made = _run(scenario, events=20_000)
    unlisted = [
        e for e in made if e["event_type"] == "api_call" and e["data"]["api"] == "orders-legacy"
    ]
    assert unlisted and {e["capability"] for e in unlisted} == {API_GATEWAY}
    assert sum(truth.uncounted.values()) == len(unlisted)
    assert sum(truth.uses.values()) + len(unlisted) == len(made)
    # first_use is the first call of a listed API, never an unlisted one.
    for (team, capability), at in truth.first_use.items():
        if capability == API_GATEWAY:
            first = min(
                datetime.fromisoformat(e["occurred_at"])
                for e in made
                if e["team"] == team
                and e["capability"] == API_GATEWAY
                and e["data"]["api"] != "orders-legacy"
            )
            assert at == first


def test_the_churned_team_stops_using_the_capability() -> None:
    truth, made = _run(Scenario(churn_capability="api-gateway", churn_at=0.5), events=20_000)
    (((team, capability), stopped),) = truth.churned.items()
    uses = [
        datetime.fromisoformat(e["occurred_at"])
        for e in made
        if e["team"] == team and e["capability"] == capability
    ]
    assert uses and max(uses) < stopped <= END
    # Negative control: without churn the same team goes on using it after that moment.
    _, kept = _run(Scenario(), events=20_000)
    assert any(
        e["team"] == team
        and e["capability"] == capability
        and datetime.fromisoformat(e["occurred_at"]) > stopped
        for e in kept
    )


def test_recovery_factor_shortens_the_adopters_rollbacks() -> None:
    """Rollbacks of teams that adopted incident-response last recovery_factor as long."""
    scenario = Scenario(recovery_factor=0.01, change_failure_rate=0.5)
    truth, _ = _run(scenario, events=20_000)
    assert truth.start is not None
    org = Organisation.synthetic(5, teams=12)
    adopts = {t.name: t.adopts_at.get("incident-response") for t in org.teams}
    short, long = [], []
    for d in truth.deployments:
        if d["status"] != "rolled_back":
            continue
        duration = (d["at"] - datetime.fromisoformat(d["started_at"])).total_seconds()
        fraction = (d["at"] - truth.start) / WINDOW
        adopted = adopts[d["team"]] is not None and fraction >= adopts[d["team"]]
        (short if adopted else long).append(duration)
    assert short and long
    assert max(short) <= 1800 * 0.01 + 0.001 < 60 <= min(long)
    assert scenario.effects()["incident-response"]["recovery_time"] == 0.01


def test_the_team_catalog_of_a_reorg(tmp_path: Path) -> None:
    at = datetime(2026, 2, 1, tzinfo=UTC)
    old = write_team_catalog(REPO / "config" / "teams", tmp_path / "t", "growth", "experience", at)
    assert old == "discovery"
    catalog = load_team_catalog([tmp_path / "t"], at)  # undated facts hold from `at`
    assert catalog.parent_of("growth", at - timedelta(days=1)) == "discovery"
    assert catalog.parent_of("growth", at) == "experience"
    with pytest.raises(ValueError, match="already under"):
        write_team_catalog(REPO / "config" / "teams", tmp_path / "u", "growth", "discovery", at)


@pytest.mark.parametrize(
    "bad",
    [
        {"uncounted_api": "orders"},
        {"uncounted_api_share": 1.5},
        {"churn_capability": "deploy-pipeline"},
        {"moved_team": "growth"},
        {"recovery_factor": 0.0},
    ],
)
def test_scenario_refuses_inconsistent_options(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Scenario(**bad)


def test_the_truth_file_names_the_churn_the_unlisted_calls_and_the_recovery_effect(
    tmp_path: Path,
) -> None:
    import json

    from pipeline.cli.run import write_truth

    scenario = Scenario(
        uncounted_api_share=0.05, churn_capability="api-gateway", recovery_factor=0.5
    )
    truth = GroundTruth()  # what `uptake simulate` keeps: not detailed
    org = Organisation.synthetic(5, teams=12)
    list(generate(org, 10_000, 5, end=END, window=WINDOW, truth=truth, scenario=scenario))
    write_truth(tmp_path / "truth.json", truth)
    out = json.loads((tmp_path / "truth.json").read_text())
    assert out["effects"]["incident-response"]["recovery_time"] == 0.5
    assert out["scenario"]["uncounted_api"] == "orders-legacy"
    assert [c["capability"] for c in out["churned"]] == ["api-gateway"]
    assert sum(r["events"] for r in out["uncounted_calls"]) == sum(truth.uncounted.values()) > 0
