"""Static checks of deploy/docker-compose.yml and the Dockerfile (no Docker engine needed).

The compose file must be valid against the Compose specification's JSON Schema, pin every
image, mount only files that exist, set only environment variables Uptake knows, and agree on
ports with the Prometheus scrape configuration and the Grafana provisioning it mounts.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from pipeline.config.settings import Settings
from tests.unit.deploy.conftest import (
    DEPLOY,
    REPO,
    SCHEMAS,
    environment,
    host_path,
    interpolate,
    mounts,
    setting_variables,
    volume_parts,
)

UPTAKE_SERVICES = ("migrate", "worker", "collector", "simulator")
LONG_RUNNING = ("kafka", "clickhouse", "worker", "collector", "prometheus", "grafana")
CLICKHOUSE_PORTS = {"http": 8123, "native": 9000}


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_the_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["kafka"]["depends_on"] = {"clickhouse": {"condition": "when_ready"}}
    errors = schema_errors(broken)
    assert any("intervall" in e for e in errors), errors
    assert any("when_ready" in e for e in errors), errors


def test_the_stack_has_every_component(services: dict[str, Any]) -> None:
    assert set(services) >= {
        "kafka",
        "clickhouse",
        "migrate",
        "worker",
        "collector",
        "simulator",
        "prometheus",
        "grafana",
    }
    assert services["simulator"]["profiles"] == ["simulate"]
    assert all("profiles" not in s for name, s in services.items() if name != "simulator")


def test_every_image_is_pinned_to_a_version(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not a version"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_kafka_runs_in_kraft_mode(services: dict[str, Any]) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["CLUSTER_ID"] and "ZOOKEEPER" not in " ".join(env)
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_uptake_services_are_built_from_the_dockerfile(services: dict[str, Any]) -> None:
    for name in UPTAKE_SERVICES:
        build = services[name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build["dockerfile"]).is_file(), name
    images = {services[name]["image"] for name in UPTAKE_SERVICES}
    assert len(images) == 1, images


def test_every_bind_mount_exists(services: dict[str, Any]) -> None:
    missing = [
        f"{name}: {mount.source}"
        for name, service in services.items()
        for mount in mounts(service)
        if mount.source is not None and not mount.source.exists()
    ]
    assert missing == []


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume_parts(volume)[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "${")):
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_uptake_environment_names_only_real_settings(services: dict[str, Any]) -> None:
    known = setting_variables()
    for name in UPTAKE_SERVICES:
        env = environment(services[name])
        unknown = {k for k in env if k.startswith("UPTAKE_") or k.startswith("KAFKA_")} - known
        assert unknown == set(), f"{name} sets variables Uptake does not read: {unknown}"
        # and the values parse: the same check `uptake` does at start
        settings = Settings.from_env({k: v for k, v in env.items() if k in known})
        assert settings.kafka.bootstrap == "kafka:9092"


def test_the_env_check_catches_a_misspelt_setting() -> None:
    assert "UPTAKE_METRIC_PORT" not in setting_variables()
    assert "UPTAKE_METRICS_PORT" in setting_variables()


def test_workers_write_to_the_clickhouse_server_not_the_embedded_engine(
    services: dict[str, Any],
) -> None:
    clickhouse_env = environment(services["clickhouse"])
    for name in ("migrate", "worker"):
        url = urlsplit(environment(services[name])["UPTAKE_CLICKHOUSE_URL"])
        assert url.scheme == "http", name
        assert (url.hostname, url.port) == ("clickhouse", CLICKHOUSE_PORTS["http"]), name
        assert url.username == clickhouse_env["CLICKHOUSE_USER"]
        assert url.password == clickhouse_env["CLICKHOUSE_PASSWORD"]
        assert url.path.strip("/") == clickhouse_env["CLICKHOUSE_DB"]


def test_workers_share_one_pseudonym_key_and_fit_the_partitions(services: dict[str, Any]) -> None:
    env = environment(services["worker"])
    assert env["UPTAKE_PSEUDONYM_KEY"], "replicas would each create their own random key"
    replicas = services["worker"]["deploy"]["replicas"]
    assert 2 <= replicas <= int(env["UPTAKE_TOPIC_PARTITIONS"])


def test_workers_start_after_a_successful_migration(services: dict[str, Any]) -> None:
    assert "command" in services["migrate"] and services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    depends = services["worker"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["kafka"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name, service in services.items():
        for other in service.get("depends_on", {}):
            assert other in services, f"{name} depends on unknown service {other}"


def _healthcheck_port(service: dict[str, Any]) -> int | None:
    test = service["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else test
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", text)
    return int(found[1]) if found else None


def test_long_running_services_have_healthchecks_on_their_own_ports(
    services: dict[str, Any],
) -> None:
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], name
    worker = environment(services["worker"])
    collector = environment(services["collector"])
    assert _healthcheck_port(services["worker"]) == int(worker["UPTAKE_METRICS_PORT"])
    assert "/healthz" in str(services["worker"]["healthcheck"]["test"])
    assert _healthcheck_port(services["collector"]) == int(collector["UPTAKE_COLLECTOR_PORT"])
    assert collector["UPTAKE_COLLECTOR_HOST"] == "0.0.0.0"  # reachable from Prometheus


# --- Prometheus ------------------------------------------------------------------------------


def _prometheus_config(services: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    service = services["prometheus"]
    flag = next(a for a in service["command"] if a.startswith("--config.file="))
    path = host_path(service, flag.split("=", 1)[1])
    assert path is not None and path.is_file()
    return yaml.safe_load(path.read_text()), path


def test_prometheus_scrapes_every_replica_on_the_ports_uptake_serves(
    services: dict[str, Any],
) -> None:
    config, _ = _prometheus_config(services)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    reference = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert set(jobs) == {job["job_name"] for job in reference["scrape_configs"]}
    expected = {
        "uptake-worker": ("worker", int(environment(services["worker"])["UPTAKE_METRICS_PORT"])),
        "uptake-collector": (
            "collector",
            int(environment(services["collector"])["UPTAKE_COLLECTOR_METRICS_PORT"]),
        ),
    }
    for job_name, (service, port) in expected.items():
        (sd,) = jobs[job_name]["dns_sd_configs"]
        assert sd["names"] == [service] and sd["port"] == port, job_name
        assert jobs[job_name]["metrics_path"] == "/metrics"


def test_prometheus_rule_files_are_the_shipped_ones(services: dict[str, Any]) -> None:
    config, _ = _prometheus_config(services)
    shipped = DEPLOY / "prometheus" / "rules"
    for rule_file in config["rule_files"]:
        path = host_path(services["prometheus"], rule_file)
        assert path is not None and path.is_file(), rule_file
        assert path.parent == shipped
    assert {Path(r).name for r in config["rule_files"]} == {p.name for p in shipped.glob("*.yml")}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_compose_prometheus_config(
    services: dict[str, Any], tmp_path: Path
) -> None:
    config, _ = _prometheus_config(services)
    for i, rule_file in enumerate(config["rule_files"]):
        config["rule_files"][i] = str(host_path(services["prometheus"], rule_file))
    copy_path = tmp_path / "prometheus.yml"
    copy_path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["promtool", "check", "config", str(copy_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _prometheus_port(service: dict[str, Any]) -> int:
    for arg in service["command"]:
        if arg.startswith("--web.listen-address="):
            return int(arg.rsplit(":", 1)[1])
    return 9090  # Prometheus's default


# --- Grafana ---------------------------------------------------------------------------------


def _provisioning(services: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    folder = host_path(services["grafana"], f"/etc/grafana/provisioning/{kind}")
    assert folder is not None and folder.is_dir(), f"no Grafana {kind} provisioning mounted"
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    assert files, f"{folder} has no provisioning file"
    return [yaml.safe_load(f.read_text()) for f in files]


def test_grafana_installs_the_clickhouse_plugin_pinned(services: dict[str, Any]) -> None:
    env = environment(services["grafana"])
    plugins = env.get("GF_INSTALL_PLUGINS") or env.get("GF_PLUGINS_PREINSTALL_SYNC", "")
    # "id version" (GF_INSTALL_PLUGINS) or "id@version" (GF_PLUGINS_PREINSTALL_SYNC)
    ids = dict(re.split(r"[ @]", p.strip())[:2] for p in plugins.split(",") if p.strip())
    assert re.fullmatch(r"\d+\.\d+\.\d+", ids.get("grafana-clickhouse-datasource", "")), plugins


def test_grafana_datasources_point_at_the_stack(services: dict[str, Any]) -> None:
    grafana_env = environment(services["grafana"])
    clickhouse_env = environment(services["clickhouse"])
    kinds = set()
    for document in _provisioning(services, "datasources"):
        for source in document.get("datasources", []):
            kinds.add(source["type"])
            data = {
                k: interpolate(str(v).replace("$__env{", "${"), grafana_env)
                for k, v in (source.get("jsonData") or {}).items()
            }
            secure = {
                k: interpolate(str(v).replace("$__env{", "${"), grafana_env)
                for k, v in (source.get("secureJsonData") or {}).items()
            }
            if source["type"] == "grafana-clickhouse-datasource":
                host = data.get("host") or data.get("server")
                protocol = data.get("protocol", "native")
                assert host == "clickhouse", source
                assert int(data["port"]) == CLICKHOUSE_PORTS[protocol], source
                assert data["username"] == "grafana", "Grafana must use the read-only user"
                assert secure["password"] == clickhouse_env["UPTAKE_GRAFANA_CLICKHOUSE_PASSWORD"]
                assert data["defaultDatabase"] == clickhouse_env["CLICKHOUSE_DB"]
                users = host_path(
                    services["clickhouse"], "/etc/clickhouse-server/users.d/grafana-readonly.xml"
                )
                assert users is not None and "<grafana>" in users.read_text()
            elif source["type"] == "prometheus":
                url = urlsplit(interpolate(source["url"], grafana_env))
                port = _prometheus_port(services["prometheus"])
                assert (url.hostname, url.port) == ("prometheus", port), source
    assert {"grafana-clickhouse-datasource", "prometheus"} <= kinds


def test_grafana_dashboard_providers_load_the_shipped_dashboards(
    services: dict[str, Any],
) -> None:
    seen = 0
    for document in _provisioning(services, "dashboards"):
        for provider in document.get("providers", []):
            path = interpolate(provider["options"]["path"], environment(services["grafana"]))
            folder = host_path(services["grafana"], path)
            assert folder is not None and folder.is_dir(), provider
            dashboards = list(folder.rglob("*.json"))
            assert dashboards, f"{folder} holds no dashboard"
            for path in dashboards:
                assert "panels" in json.loads(path.read_text()), path
            seen += len(dashboards)
    assert seen


# --- Dockerfile ------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_pins_python_311_slim_and_runs_uptake_as_a_user() -> None:
    steps = _dockerfile()
    bases = [rest.split()[0] for instruction, rest in steps if instruction == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases)
    users = [rest for instruction, rest in steps if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (entrypoint,) = [rest for instruction, rest in steps if instruction == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["uptake"]
    scripts = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]
    assert "uptake" in scripts["scripts"]


def test_dockerfile_copies_what_exists_and_what_uptake_reads_at_run_time() -> None:
    copied = set()
    for instruction, rest in _dockerfile():
        if instruction == "COPY" and not rest.startswith("--from="):
            *sources, _target = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source
                copied.add(source.rstrip("/"))
    # the wheel is built from these: the package, its data folders and the lock
    wanted = {"pipeline", "schemas", "config", "dashboards", "deploy/local", "pyproject.toml"}
    assert wanted | {"uv.lock", "requirements/uv.txt"} <= copied
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not set(ignored) & copied, "the .dockerignore drops a file the Dockerfile copies"


def test_the_image_installs_the_lock_and_the_wheel_not_the_source_tree() -> None:
    steps = _dockerfile()
    last_stage = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    runs = [rest for instruction, rest in steps[last_stage:] if instruction == "RUN"]
    installs = " ".join(runs)
    assert "--require-hashes" in installs and "uptake-*.whl" in installs
    assert "--editable" not in installs and " -e " not in installs
    copies = [rest for instruction, rest in steps[last_stage:] if instruction == "COPY"]
    assert copies and all(rest.startswith("--from=build") for rest in copies), copies
    built = " ".join(rest for instruction, rest in steps[:last_stage] if instruction == "RUN")
    assert "uv export --frozen --no-dev" in built and "uv build --wheel" in built
