"""Loading sets of team files, and the default team catalog against the simulated organisation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.catalog.errors import CatalogError
from pipeline.catalog.sources import (
    expand_paths,
    load_team_catalog,
    load_team_snapshot,
    parse_team_files,
)
from pipeline.catalog.teams import UNOWNED
from pipeline.devtools.simulate.org import TEAM_NAMES, Organisation
from tests.support.catalog import CONFIG, org, t

TEAMS = CONFIG / "teams"
AT = t("2025-06-01")
SERVICE_KINDS = ("api", "worker", "web", "db", "stream")  # what Organisation.synthetic draws from


def test_a_folder_stands_for_its_team_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("", encoding="utf-8")
    (tmp_path / "a.csv").write_text("", encoding="utf-8")
    (tmp_path / "c.yml").write_text("", encoding="utf-8")
    (tmp_path / "notes.md").write_text("", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.yaml").write_text("", encoding="utf-8")

    assert expand_paths([tmp_path, tmp_path / "x.csv"]) == [
        tmp_path / "a.csv",
        tmp_path / "b.yaml",
        tmp_path / "c.yml",
        tmp_path / "x.csv",
    ]


def test_files_of_one_snapshot_may_refer_to_each_other(tmp_path: Path) -> None:
    (tmp_path / "org.yaml").write_text(org(), encoding="utf-8")
    (tmp_path / "history.csv").write_text(
        "kind,name,team,valid_from,valid_to\nservice,ledger-db,checkout,2025-01-01,\n",
        encoding="utf-8",
    )

    catalog = load_team_catalog([tmp_path], AT)

    assert catalog.owner_at("ledger-db", t("2025-02-01")) == "checkout"
    assert catalog.owner_at("payments-api", AT) == "payments"


def test_a_csv_naming_an_undeclared_group_is_left_out_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "org.yaml").write_text(org(), encoding="utf-8")
    (tmp_path / "history.csv").write_text(
        "kind,name,team,valid_from,valid_to\nservice,ledger-db,ledger,,\n", encoding="utf-8"
    )

    snapshot = load_team_snapshot([tmp_path])

    assert not any(f.name == "ledger-db" for f in snapshot.facts)
    assert any(f.name == "payments-api" for f in snapshot.facts)
    [w] = snapshot.warnings
    assert w.kind == "unresolved_reference"
    assert str(w) == (
        f"{tmp_path / 'history.csv'}:2: service 'ledger-db': "
        "team 'ledger' is not a declared group: ignored"
    )


def test_unknown_suffix_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"teams\.json: unknown kind of team file"):
        parse_team_files({Path("teams.json"): b"{}"})
    with pytest.raises(CatalogError, match=r"not UTF-8"):
        parse_team_files({Path("teams.csv"): b"\xff\xfe\x00"})
    with pytest.raises(CatalogError, match=r"nope\.yaml: file not found"):
        load_team_snapshot([tmp_path / "nope.yaml"])


# -- the default team catalog ------------------------------------------------------------------


def test_default_catalog_owns_every_service_the_simulator_can_emit() -> None:
    catalog = load_team_catalog([TEAMS], AT)

    for team in TEAM_NAMES:
        for kind in SERVICE_KINDS:
            assert catalog.owner_at(f"{team}-{kind}", AT) == team
        for k in range(9):
            assert catalog.team_of_user_at(f"{team}.eng{k}", AT) == team
        assert catalog.ancestors(team, AT)[-2:] == ("product", "engineering")


@pytest.mark.parametrize("seed", [0, 7, 42])
def test_default_catalog_matches_synthetic_organisations(seed: int) -> None:
    catalog = load_team_catalog([TEAMS], AT)

    for team in Organisation.synthetic(seed, teams=len(TEAM_NAMES)).teams:
        for service in team.services:
            assert catalog.owner_at(service, AT) == team.name
        for user in team.users:
            assert catalog.team_of_user_at(user, AT) == team.name


def test_default_catalog_teams_and_history() -> None:
    catalog = load_team_catalog([TEAMS], AT)

    assert catalog.teams_under("product", AT) == set(TEAM_NAMES)
    assert catalog.teams_at(AT) == set(TEAM_NAMES) | {"platform-infra", "ml-platform"}
    assert catalog.owner_at("fraud-stream", t("2024-06-01")) == "risk"
    assert catalog.owner_at("fraud-stream", AT) == "fraud"
    assert catalog.parent_of("ml-research", t("2024-06-01")) == "platform"
    assert catalog.parent_of("ml-research", AT) == "data"
    assert catalog.team_of_user_at("checkout.eng3", t("2024-12-01")) == "payments"
    assert catalog.team_of_user_at("risk.eng0", AT) == "risk"
    assert catalog.owner_at("api-gateway", AT) == "platform-infra"
    assert catalog.owner_at("no-such-service", AT) == UNOWNED
