"""deploy/grafana: the read-only user's grants and password source; files reference what exists
(the SQL against ClickHouse's parser: tests/integration/dashboards/test_provisioning.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import yaml

from tests.conftest import REPO

GRAFANA = REPO / "deploy" / "grafana"


def test_the_users_d_file_grants_select_only_and_reads_its_password_from_the_environment() -> None:
    root = ET.parse(GRAFANA / "clickhouse" / "users.d" / "grafana-readonly.xml").getroot()
    profile = root.find("profiles/uptake_grafana_readonly")
    assert profile is not None and profile.findtext("readonly") == "1"
    user = root.find("users/grafana")
    assert user is not None
    password = user.find("password")
    assert password is not None
    assert password.get("from_env") == "UPTAKE_GRAFANA_CLICKHOUSE_PASSWORD"
    assert [q.text for q in user.iterfind("grants/query")] == ["GRANT SELECT ON uptake.*"]


def test_compose_mounts_existing_files_and_sets_every_provisioning_variable() -> None:
    compose = yaml.safe_load((GRAFANA / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (GRAFANA / source).resolve().exists(), volume
    grafana_env = compose["services"]["grafana"]["environment"]
    provisioning = "".join(p.read_text() for p in (GRAFANA / "provisioning").rglob("*.yml"))
    for line in provisioning.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for word in line.split():
            if word.startswith("$UPTAKE_"):
                assert word[1:] in grafana_env, f"{word} is not set for Grafana"
    dashboards_dir = grafana_env["UPTAKE_DASHBOARDS_DIR"]
    home = grafana_env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_dir)
    assert (REPO / "dashboards" / home.rsplit("/", 1)[1]).exists()
