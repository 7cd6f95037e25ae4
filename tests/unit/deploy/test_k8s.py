"""Static checks of the Kubernetes manifests in deploy/k8s (no cluster needed).

Built-in kinds are validated against the Kubernetes OpenAPI schemas that kubernetes-validate
ships (strict: unknown fields fail). The kustomization is rendered with `kubectl kustomize`
when kubectl is installed, else its resource files are read one by one. The Prometheus
Operator's PodMonitor has no schema there: its selector and ports are checked against the pods.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipeline.config.settings import Settings
from tests.unit.deploy.conftest import DEPLOY, REPO, setting_variables

BASE = DEPLOY / "k8s" / "base"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")  # oldest still common, and a current one


def _kustomization() -> dict[str, Any]:
    loaded = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _from_files() -> list[dict[str, Any]]:
    """The resources listed by the kustomization, without kustomize (namespace applied)."""
    kustomization = _kustomization()
    out = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE / name).read_text()):
            if doc:
                if doc["kind"] != "Namespace":
                    doc["metadata"].setdefault("namespace", kustomization["namespace"])
                out.append(doc)
    return out


def _rendered() -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return _rendered() or _from_files()


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def config(resources: list[dict[str, Any]]) -> dict[str, str]:
    return dict(by_kind(resources, "ConfigMap")["uptake-config"]["data"])


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_kustomization_lists_files_that_exist() -> None:
    for name in _kustomization()["resources"]:
        assert (BASE / name).is_file(), name
    listed = set(_kustomization()["resources"])
    assert {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"} == listed


def test_kubectl_kustomize_renders_the_same_resources_as_the_files() -> None:
    rendered = _rendered()
    if rendered is None:
        pytest.skip("kubectl is not installed: resources are checked file by file")
    names = sorted((r["kind"], r["metadata"]["name"]) for r in rendered)
    assert names == sorted((r["kind"], r["metadata"]["name"]) for r in _from_files())
    for resource in rendered:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "uptake"
        assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "uptake"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_resources_are_valid_against_the_kubernetes_schemas(
    resources: list[dict[str, Any]], version: str
) -> None:
    checked = set()
    for resource in resources:
        if resource["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(resource, version, strict=True)
        checked.add(resource["kind"])
    assert checked >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Job",
    }


def test_the_schema_check_catches_a_misplaced_field(resources: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(by_kind(resources, "Deployment")["uptake-worker"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def documented_secret_variables() -> set[str]:
    """The variables of `kubectl create secret generic uptake-secrets` in docs/deploy.md."""
    text = (REPO / "docs" / "deploy.md").read_text()
    command = text[text.index("create secret generic uptake-secrets") :].split("\n\n")[0]
    return set(re.findall(r"--from-literal=([A-Z0-9_]+)=", command))


def test_config_and_secret_name_only_real_settings(resources: list[dict[str, Any]]) -> None:
    known = setting_variables()
    data = config(resources)
    variables = {k: v for k, v in data.items() if k.isupper()}
    assert set(variables) - known == set()
    Settings.from_env(variables)  # every value parses
    secret = documented_secret_variables()
    assert {"UPTAKE_CLICKHOUSE_URL", "UPTAKE_PSEUDONYM_KEY"} <= secret <= known
    assert not set(data) & secret, "secrets in clear"
    # No Secret ships: the operator creates uptake-secrets and uptake-collector-tokens.
    assert by_kind(resources, "Secret") == {}


def test_workers_fit_the_partitions(resources: list[dict[str, Any]]) -> None:
    worker = by_kind(resources, "Deployment")["uptake-worker"]
    assert 1 < worker["spec"]["replicas"] <= int(config(resources)["UPTAKE_TOPIC_PARTITIONS"])


def _port(c: dict[str, Any], name: str) -> int:
    return next(int(p["containerPort"]) for p in c["ports"] if p["name"] == name)


def test_probes_hit_the_endpoints_each_process_serves(resources: list[dict[str, Any]]) -> None:
    deployments = by_kind(resources, "Deployment")
    data = config(resources)
    worker = container(deployments["uptake-worker"])
    assert _port(worker, "metrics") == int(data["UPTAKE_METRICS_PORT"])
    collector = container(deployments["uptake-collector"])
    assert _port(collector, "http") == int(data["UPTAKE_COLLECTOR_PORT"])
    assert _port(collector, "metrics") == int(data["UPTAKE_COLLECTOR_METRICS_PORT"])
    for c, port in ((worker, "metrics"), (collector, "http")):
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert c["args"][0] in ("worker", "collector")


def test_containers_run_unprivileged_and_share_the_settings(
    resources: list[dict[str, Any]],
) -> None:
    pods = [d["spec"]["template"]["spec"] for d in by_kind(resources, "Deployment").values()]
    pods += [j["spec"]["template"]["spec"] for j in by_kind(resources, "Job").values()]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        sources = {next(iter(s.values()))["name"] for s in c["envFrom"]}
        assert sources == {"uptake-config", "uptake-secrets"}
        mounted = {m["mountPath"] for m in c["volumeMounts"]}
        assert data_home(resources) in mounted  # UPTAKE_HOME is writable


def data_home(resources: list[dict[str, Any]]) -> str:
    return config(resources)["UPTAKE_HOME"]


def test_migrate_job_runs_uptake_migrate(resources: list[dict[str, Any]]) -> None:
    job = by_kind(resources, "Job")["uptake-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_disruption_budgets_and_service_select_the_pods(resources: list[dict[str, Any]]) -> None:
    deployments = by_kind(resources, "Deployment")
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    budgets = by_kind(resources, "PodDisruptionBudget")
    assert set(budgets) == set(deployments)
    for name, budget in budgets.items():
        assert _selects(budget["spec"]["selector"], pod_labels[name]), name
        assert not any(
            _selects(budget["spec"]["selector"], pod_labels[o]) for o in budgets if o != name
        )
    assert budgets["uptake-worker"]["spec"]["maxUnavailable"] == 1
    service = by_kind(resources, "Service")["uptake-collector"]
    selector = {"matchLabels": service["spec"]["selector"]}
    assert _selects(selector, pod_labels["uptake-collector"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {
        p["name"] for p in container(deployments["uptake-collector"])["ports"]
    }


def test_pod_monitors_scrape_the_metrics_ports_under_the_rules_job_names(
    resources: list[dict[str, Any]],
) -> None:
    deployments = by_kind(resources, "Deployment")
    monitors = by_kind(resources, "PodMonitor")
    rules_jobs = {
        job["job_name"]
        for job in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())[
            "scrape_configs"
        ]
    }
    jobs = set()
    for monitor in monitors.values():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        matched = [
            d
            for d in deployments.values()
            if _selects(monitor["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(matched) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in container(matched[0])["ports"]}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
            (job,) = [
                r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"
            ]
            jobs.add(job)
    assert jobs == rules_jobs


def test_image_is_set_by_kustomize_with_a_version() -> None:
    (image,) = _kustomization()["images"]
    assert image["name"] == "uptake" and image["newTag"] not in ("", "latest")


def test_manifests_are_plain_yaml_files() -> None:
    paths = sorted(BASE.glob("*.yaml"))
    assert paths, f"no manifests found in {BASE}"  # an empty glob would pass vacuously
    for path in paths:
        list(yaml.safe_load_all(Path(path).read_text()))
