"""The capability catalog: the default file, resolving names, what counts as use, and errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.catalog.backstage import parse_backstage
from pipeline.catalog.capabilities import (
    Capability,
    CapabilityCatalog,
    NorthStar,
    UndeclaredCapabilities,
    counts_as_use,
    load_capabilities,
    parse_capabilities,
)
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.sources import load_team_catalog
from pipeline.catalog.teams import TeamCatalog
from pipeline.contract.events import EVENT_TYPES, USE_EVENT_TYPES
from pipeline.devtools.simulate.org import CAPABILITIES
from tests.support.catalog import CONFIG, group, t

DEFAULT = CONFIG / "capabilities.yaml"
AT = t("2025-06-01")

VALID = """\
version: 1
capabilities:
  - name: api-gateway
    platform: developer-infrastructure
    owner: platform-infra
    usage:
      event_types: [api_call]
      apis: [orders, profile]
  - name: risk-scoring
    platform: business-capability
    owner: risk
    usage:
      event_types: [api_call]
      apis: [risk]
    target_teams: [commerce, search]
    north_star:
      name: approval-rate
      outcome: risk_decision
      measure: decision_rate
      decision: approve
  - name: deploy-pipeline
    platform: developer-infrastructure
    owner: platform-infra
    usage:
      event_types: [deploy]
"""


def parse(text: str = VALID) -> CapabilityCatalog:
    return parse_capabilities(text, "caps.yaml")


def error(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        parse(text)
    return caught.value


# -- the default file --------------------------------------------------------------------------


def test_default_file_declares_exactly_what_the_simulator_emits() -> None:
    catalog = load_capabilities(DEFAULT)

    declared = {c.name: (c.platform, c.event_types, c.apis) for c in catalog}
    simulated = {
        c.name: (c.platform, frozenset({c.event_type}), frozenset(c.apis)) for c in CAPABILITIES
    }
    assert declared == simulated


def test_every_simulated_event_counts_as_use_of_its_capability() -> None:
    catalog = load_capabilities(DEFAULT)

    for simulated in CAPABILITIES:
        capability = catalog.resolve(simulated.name)
        assert capability.declared
        for api in simulated.apis or (None,):
            assert counts_as_use(simulated.event_type, capability, api)
    assert catalog.undeclared_seen() == frozenset()


def test_default_owners_and_targets_are_teams_of_the_default_team_catalog() -> None:
    teams = load_team_catalog([CONFIG / "teams"], AT)
    catalog = load_capabilities(DEFAULT)

    assert catalog.check_against(teams, AT) == []
    simulated_teams = {name for c in catalog for name in c.targets_at(teams, AT)}
    assert simulated_teams == teams.teams_under("product", AT)
    assert len(simulated_teams) == 20


def test_north_star_of_risk_scoring() -> None:
    star = load_capabilities(DEFAULT).resolve("risk-scoring").north_star

    assert star == NorthStar(
        name="approved-volume",
        outcome="risk_decision",
        measure="value_sum",
        decision="approve",
        unit="EUR",
        description="Value of the transactions risk-scoring approved.",
    )


# -- resolve and undeclared capabilities -------------------------------------------------------


def test_resolve_a_declared_capability() -> None:
    capability = parse().resolve("risk-scoring")

    assert capability.platform == "business-capability"
    assert capability.owner == "risk"
    assert capability.target_teams == ("commerce", "search")
    assert capability.declared


def test_an_undeclared_capability_is_counted_under_its_own_name_and_reported() -> None:
    catalog = parse()

    capability = catalog.resolve("chaos-monkey")
    catalog.resolve("chaos-monkey")
    catalog.resolve("service-mesh")

    assert capability == Capability.undeclared("chaos-monkey")
    assert capability.name == "chaos-monkey"
    assert not capability.declared and capability.platform is None and capability.owner is None
    assert all(capability.counts_as_use(event_type) for event_type in USE_EVENT_TYPES)
    assert not capability.counts_as_use("feedback"), "an opinion is never use"
    assert set(EVENT_TYPES) - set(USE_EVENT_TYPES) == {"feedback"}
    assert not capability.counts_as_use("page_view")
    assert catalog.undeclared_seen() == {"chaos-monkey", "service-mesh"}
    assert catalog.undeclared.counts() == {"chaos-monkey": 2, "service-mesh": 1}
    assert "chaos-monkey" not in catalog and "api-gateway" in catalog


def test_undeclared_names_survive_a_reload_sharing_the_record(tmp_path: Path) -> None:
    path = tmp_path / "capabilities.yaml"
    path.write_text(VALID, encoding="utf-8")
    first = load_capabilities(path)
    first.resolve("chaos-monkey")

    second = load_capabilities(path, undeclared=first.undeclared)
    second.resolve("service-mesh")

    assert second.undeclared_seen() == {"chaos-monkey", "service-mesh"}


def test_the_undeclared_record_is_thread_safe() -> None:
    record = UndeclaredCapabilities()
    catalog = CapabilityCatalog((), undeclared=record)

    def resolve_many() -> None:
        for _ in range(2000):
            catalog.resolve("x")

    threads = [threading.Thread(target=resolve_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert record.counts() == {"x": 8000}
    assert "x" in repr(record)


# -- counts_as_use -----------------------------------------------------------------------------


def test_counts_as_use() -> None:
    catalog = parse()
    gateway = catalog.resolve("api-gateway")
    deploys = catalog.resolve("deploy-pipeline")

    assert counts_as_use("api_call", gateway, "orders")
    assert not counts_as_use("api_call", gateway, "features")  # filtered out by api
    assert not counts_as_use("api_call", gateway)  # the filter needs an api
    assert not counts_as_use("deploy", gateway, "orders")  # wrong event type
    assert counts_as_use("deploy", deploys)
    assert counts_as_use("deploy", deploys, "anything")  # no api filter


def test_api_filter_applies_to_api_calls_only() -> None:
    both = Capability(
        "both", "developer-infrastructure", "p", frozenset({"api_call", "deploy"}), frozenset({"x"})
    )

    assert both.counts_as_use("deploy")
    assert both.counts_as_use("api_call", "x")
    assert not both.counts_as_use("api_call", "y")


# -- target teams ------------------------------------------------------------------------------


def test_targets_default_to_every_team_and_groups_stand_for_their_teams() -> None:
    text = (
        group("engineering")
        + group("commerce", "engineering")
        + group("payments", "commerce")
        + group("checkout", "commerce")
        + group("search", "engineering")
        + group("web", "engineering")
    )
    teams = TeamCatalog.empty().merge_snapshot(parse_backstage(text, "c.yaml"), AT)
    catalog = parse()

    assert catalog.resolve("api-gateway").targets_at(teams, AT) == {
        "payments",
        "checkout",
        "search",
        "web",
    }
    assert catalog.resolve("risk-scoring").targets_at(teams, AT) == {
        "payments",
        "checkout",
        "search",
    }
    # a name the team catalog does not know stands for itself, and is reported
    assert catalog.resolve("risk-scoring").targets_at(TeamCatalog.empty(), AT) == {
        "commerce",
        "search",
    }
    assert catalog.check_against(teams, AT) == [
        "capability 'api-gateway': owner 'platform-infra' is not a team of the team catalog",
        "capability 'risk-scoring': owner 'risk' is not a team of the team catalog",
        "capability 'deploy-pipeline': owner 'platform-infra' is not a team of the team catalog",
    ]


# -- errors ------------------------------------------------------------------------------------


def replace(old: str, new: str, text: str = VALID) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "line", "entry", "field", "message"),
    [
        (
            replace("platform: business-capability", "platform: business"),
            10,
            "capabilities[1] (risk-scoring)",
            "platform",
            "unknown platform type 'business'; expected one of developer-infrastructure, "
            "data-ml, business-capability",
        ),
        (
            replace("name: deploy-pipeline", "name: api-gateway"),
            21,
            "capabilities[2]",
            "name",
            "duplicate name 'api-gateway' (first declared on line 3)",
        ),
        (
            replace("event_types: [deploy]", "event_types: [deploy, deployment]"),
            25,
            "capabilities[2] (deploy-pipeline)",
            "usage.event_types.1",
            "unknown event type 'deployment'; expected one of api_call, deploy, "
            "model_training, incident",
        ),
        (
            replace("event_types: [deploy]", "event_types: [deploy, feedback]"),
            25,
            "capabilities[2] (deploy-pipeline)",
            "usage.event_types.1",
            "unknown event type 'feedback'; expected one of api_call, deploy, "
            "model_training, incident (feedback is an opinion about a capability, never its use)",
        ),
        (
            replace("event_types: [deploy]", "event_types: []"),
            25,
            "capabilities[2] (deploy-pipeline)",
            "usage.event_types",
            "must be a non-empty list of strings",
        ),
        (
            replace("event_types: [deploy]", "event_types: [deploy, deploy]"),
            25,
            "capabilities[2] (deploy-pipeline)",
            "usage.event_types.1",
            "'deploy' is listed twice",
        ),
        (
            replace("    usage:\n      event_types: [deploy]\n", ""),
            21,
            "capabilities[2] (deploy-pipeline)",
            "usage",
            "missing or not a mapping",
        ),
        (
            replace("event_types: [deploy]", "event_types: [deploy]\n      apis: [x]"),
            26,
            "capabilities[2] (deploy-pipeline)",
            "usage.apis",
            "an api filter needs 'api_call'",
        ),
        (
            replace("target_teams: [commerce, search]", "target_team: [commerce]"),
            15,
            "capabilities[1] (risk-scoring)",
            "target_team",
            "unknown field; expected one of description, name, north_star, owner, platform, "
            "target_teams, usage",
        ),
        (
            replace("apis: [risk]", "apis: [risk]\n      api: [x]"),
            15,
            "capabilities[1] (risk-scoring)",
            "usage.api",
            "unknown field; expected one of apis, event_types",
        ),
        (
            replace("    owner: risk\n", ""),
            9,
            "capabilities[1] (risk-scoring)",
            "owner",
            "missing",
        ),
        (
            replace("name: api-gateway", "name: 42"),
            3,
            "capabilities[0]",
            "name",
            "must be a non-empty string, not 42",
        ),
        (
            replace("name: api-gateway", "name: ' api-gateway'"),
            3,
            "capabilities[0]",
            "name",
            "leading or trailing spaces",
        ),
        (
            replace("name: api-gateway", "name: " + "x" * 201),
            3,
            "capabilities[0]",
            "name",
            "longer than 200 characters",
        ),
        (
            replace("measure: decision_rate", "measure: ratio"),
            19,
            "capabilities[1] (risk-scoring)",
            "north_star.measure",
            "unknown measure 'ratio'; expected one of count, value_sum, decision_rate",
        ),
        (
            replace("      decision: approve\n", ""),
            16,
            "capabilities[1] (risk-scoring)",
            "north_star.decision",
            "missing",
        ),
        (
            replace("    target_teams: [commerce, search]\n", "").replace(
                "event_types: [api_call]\n      apis: [risk]", "event_types: [deploy]"
            ),
            14,
            "capabilities[1] (risk-scoring)",
            "north_star",
            "a north-star metric reads api_call outcomes",
        ),
        (
            replace(
                "      outcome: risk_decision\n", "      outcome: risk_decision\n      unit: 5\n"
            ),
            19,
            "capabilities[1] (risk-scoring)",
            "north_star.unit",
            "must be a non-empty string",
        ),
    ],
)
def test_entry_errors_name_file_line_entry_and_field(
    text: str, line: int, entry: str, field: str, message: str
) -> None:
    e = error(text)

    assert (e.source, e.line, e.entry, e.field) == ("caps.yaml", line, entry, field)
    assert message in e.message
    assert str(e) == f"caps.yaml:{line}: {entry}: field {field!r}: {e.message}"


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("version: 2\ncapabilities: []\n", 1, "version", "unsupported format version 2"),
        ("capabilities: []\n", 1, "capabilities", "must be a non-empty list"),
        ("capabilites:\n  - name: x\n", 1, "capabilites", "unknown field"),
        ("- name: x\n", 1, None, "the file must be a mapping"),
        (VALID + "---\nversion: 1\n", 27, None, "expected one YAML document, found 2"),
        ("", None, None, "expected one YAML document, found 0"),
        ("capabilities:\n  - just-a-name\n", 2, None, "must be a mapping, not str"),
        ("capabilities: [unclosed\n", 2, None, "not valid YAML"),
    ],
)
def test_file_errors(text: str, line: int | None, field: str | None, message: str) -> None:
    e = error(text)

    assert (e.line, e.field) == (line, field)
    assert message in e.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as caught:
        load_capabilities(tmp_path / "capabilities.yaml")

    assert str(caught.value) == f"{tmp_path / 'capabilities.yaml'}: file not found"


def test_a_catalog_refuses_duplicate_names_built_in_code() -> None:
    gateway = Capability.undeclared("x")
    with pytest.raises(ValueError, match="declared twice"):
        CapabilityCatalog((gateway, gateway))
