"""What ships in deploy/ is safe to run as it is (issue #16, hole 4).

- No secret is written out in deploy/ or in the docs that show how to deploy, and no collector
  token is registered in the Kubernetes base (a digest there is a token someone can use).
- Compose publishes every port on 127.0.0.1 only and requires every password, key and token
  (`${VAR:?message}`: no default such as uptake/uptake or admin/admin).
- The Kubernetes base denies ingress by default and opens the collector's public port to all,
  the metrics ports only to the namespace and Prometheus.

Each check is a function that a negative control runs on what main shipped before.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.safety import KNOWN_DEMO_TOKEN_DIGESTS, is_demo_secret
from tests.support.secret_scan import literal_secrets
from tests.unit.deploy.conftest import COMPOSE_FILE, DEPLOY, REPO

GRAFANA_COMPOSE = DEPLOY / "grafana" / "docker-compose.yml"
COMPOSE_FILES = (COMPOSE_FILE, GRAFANA_COMPOSE)
DEPLOY_DOCS = ("docs/deploy.md", "docs/dashboards.md", "README.md")
BASE = DEPLOY / "k8s" / "base"
_HEX64 = re.compile(r"\b[0-9a-fA-F]{64}\b")


def shipped_files() -> list[Path]:
    """deploy/ as git tracks it (not the broker's jar cache), and the deployment docs."""
    listed = subprocess.run(
        ["git", "ls-files", "deploy", *DEPLOY_DOCS],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / name for name in listed if (REPO / name).is_file()]


def test_no_secret_is_written_out_in_deploy_or_the_deployment_docs() -> None:
    files = shipped_files()
    assert any(f.name == "docker-compose.yml" for f in files), "the scan found no files"
    found = {
        str(path.relative_to(REPO)): secrets
        for path in files
        if (secrets := literal_secrets(path.read_text(errors="replace")))
    }
    assert found == {}


def test_the_secret_scan_catches_what_main_shipped() -> None:
    # Negative control: lines of deploy/ and docs/deploy.md before this change.
    shipped = """
        curl -H "Authorization: Bearer uptake-demo-token-change-me" \\
        UPTAKE_CLICKHOUSE_URL: http://uptake:${CLICKHOUSE_PASSWORD:-uptake}@clickhouse:8123/uptake
        UPTAKE_PSEUDONYM_KEY: ${UPTAKE_PSEUDONYM_KEY:-demo-only-pseudonym-key-change-me}
        GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:-admin}
          UPTAKE_PSEUDONYM_KEY: "change-me-to-a-long-random-secret"
          # UPTAKE_KAFKA_SASL_PASSWORD: "change-me"
    """
    assert literal_secrets(shipped) == [
        "uptake-demo-token-change-me",
        "uptake",
        "demo-only-pseudonym-key-change-me",
        "admin",
        "change-me-to-a-long-random-secret",
        "change-me",
    ]
    assert all(is_demo_secret(value) for value in literal_secrets(shipped))
    # ... and leaves placeholders alone
    assert literal_secrets("UPTAKE_PSEUDONYM_KEY: ${UPTAKE_PSEUDONYM_KEY:?set it}\n") == []
    assert literal_secrets("Authorization: Bearer $TOKEN <token> https://u:<password>@h") == []


def registered_token_digests(text: str) -> list[str]:
    return _HEX64.findall(text)


def test_no_collector_token_is_registered_in_the_kubernetes_base() -> None:
    manifests = sorted(BASE.glob("*.yaml"))
    assert manifests
    for path in manifests:
        assert registered_token_digests(path.read_text()) == [], path.name
    # nor anywhere in deploy/ the digest of a token the repository published
    for path in shipped_files():
        digests = {d.lower() for d in registered_token_digests(path.read_text(errors="replace"))}
        assert not digests & KNOWN_DEMO_TOKEN_DIGESTS, path
    # Negative control: main's ConfigMap registered the demo token's digest.
    shipped = '{"demo": "22d1dd0c95b61125de2d7a6fd4adb25b34b49f35304e1392b9ff3e0a866ca2ab"}'
    assert set(registered_token_digests(shipped)) <= KNOWN_DEMO_TOKEN_DIGESTS
    assert registered_token_digests(shipped)


# --- Compose ----------------------------------------------------------------------------------

_SECRET_VARIABLE = re.compile(
    r"\$\{(?P<name>[A-Z0-9_]*(?:PASSWORD|TOKEN|KEY|SECRET)[A-Z0-9_]*)(?P<op>:?[-?+]?)"
)


def unrequired_secret_variables(text: str) -> list[str]:
    """Secret variables a Compose file uses without `:?` (a default, or silently empty)."""
    return [m["name"] for m in _SECRET_VARIABLE.finditer(text) if m["op"] != ":?"]


def ports_not_on_loopback(services: dict[str, Any]) -> list[str]:
    """Published ports bound to an interface other than 127.0.0.1 (or to all of them)."""
    wrong = []
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip", "")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else ""
            if host_ip != "127.0.0.1":
                wrong.append(f"{name}: {port}")
    return wrong


def test_compose_publishes_every_port_on_loopback_only() -> None:
    for path in COMPOSE_FILES:
        services = yaml.safe_load(path.read_text())["services"]
        assert ports_not_on_loopback(services) == [], path.name
    published = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert sum(len(s.get("ports", [])) for s in published.values()) == 5  # not vacuous
    # Negative control: main's ports.
    shipped = {"kafka": {"ports": ["9094:9094"]}, "grafana": {"ports": [{"target": 3000}]}}
    assert ports_not_on_loopback(shipped) == ["kafka: 9094:9094", "grafana: {'target': 3000}"]


def test_host_networked_services_listen_on_loopback_only() -> None:
    """deploy/grafana's stack uses host networking: no ports to publish, so each service is
    told to listen on 127.0.0.1 itself."""
    services = yaml.safe_load(GRAFANA_COMPOSE.read_text())["services"]
    assert {s.get("network_mode") for s in services.values()} == {"host"}
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    (mount,) = [v for v in services["clickhouse"]["volumes"] if "config.d" in v]
    source, target = mount.split(":")[:2]
    # over the image's file that would listen on :: and 0.0.0.0
    assert target == "/etc/clickhouse-server/config.d/docker_related_config.xml"
    listen = re.findall(
        r"<listen_host>([^<]*)</listen_host>", (GRAFANA_COMPOSE.parent / source).read_text()
    )
    assert listen == ["127.0.0.1"]


def test_compose_requires_every_password_key_and_token() -> None:
    for path in COMPOSE_FILES:
        text = path.read_text()
        assert unrequired_secret_variables(text) == [], path.name
    required = set(_SECRET_VARIABLE.findall(COMPOSE_FILE.read_text()))
    assert {name for name, _ in required} >= {
        "CLICKHOUSE_PASSWORD",
        "UPTAKE_PSEUDONYM_KEY",
        "UPTAKE_GRAFANA_CLICKHOUSE_PASSWORD",
        "CLICKHOUSE_ANALYST_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    }
    assert "${UPTAKE_COLLECTOR_TOKENS_FILE:?" in COMPOSE_FILE.read_text()  # no demo tokens file
    # Negative control: main's defaults.
    shipped = (
        "P: ${CLICKHOUSE_PASSWORD:-uptake}\nK: ${UPTAKE_PSEUDONYM_KEY-x}\n"
        "A: $ADMIN ${GRAFANA_ADMIN_PASSWORD}"
    )
    assert unrequired_secret_variables(shipped) == [
        "CLICKHOUSE_PASSWORD",
        "UPTAKE_PSEUDONYM_KEY",
        "GRAFANA_ADMIN_PASSWORD",
    ]


# --- Kubernetes NetworkPolicy -----------------------------------------------------------------


def _resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    out = []
    for name in kustomization["resources"]:
        out += [doc for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]
    return out


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def network_policy_problems(resources: list[dict[str, Any]]) -> list[str]:
    """What lets traffic in that should not: the policies against the pods and their ports."""
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"]
    problems = []
    if not any(
        p["spec"]["podSelector"] == {}
        and "Ingress" in p["spec"].get("policyTypes", [])
        and not p["spec"].get("ingress")
        for p in policies
    ):
        problems.append("no default-deny ingress policy")
    public = {  # the Service's target ports: the only ports open to everyone
        (s["spec"]["selector"]["app.kubernetes.io/name"], port["targetPort"])
        for s in resources
        if s["kind"] == "Service"
        for port in s["spec"]["ports"]
    }
    monitored = {  # what the PodMonitors scrape: must be open to the monitoring namespace
        (m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], e["port"])
        for m in resources
        if m["kind"] == "PodMonitor"
        for e in m["spec"]["podMetricsEndpoints"]
    }
    opened: dict[tuple[str, str], list[list[dict[str, Any]] | None]] = {}
    for deployment in (r for r in resources if r["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        name = labels["app.kubernetes.io/name"]
        for policy in policies:
            if not _selects(policy["spec"]["podSelector"], labels):
                continue
            for rule in policy["spec"].get("ingress") or []:
                if not rule.get("ports"):
                    problems.append(f"{policy['metadata']['name']}: a rule opens every port")
                for port in rule.get("ports") or []:
                    opened.setdefault((name, port["port"]), []).append(rule.get("from"))
    for (name, port), sources in sorted(opened.items()):
        from_anywhere = any(not peers for peers in sources)
        if from_anywhere and (name, port) not in public:
            problems.append(f"{name} port {port} is open to every source")
    for name, port in sorted(public - opened.keys()):
        problems.append(f"{name} port {port} (the Service's) is not let in")
    for name, port in sorted(monitored):
        peers = [peer for peers in opened.get((name, port), []) if peers for peer in peers]
        namespaces = [
            p["namespaceSelector"]["matchLabels"].get("kubernetes.io/metadata.name")
            for p in peers
            if "namespaceSelector" in p
        ]
        if "monitoring" not in namespaces:
            problems.append(f"{name} port {port} is not open to Prometheus")
    return problems


def test_network_policies_deny_by_default_and_open_only_the_public_port() -> None:
    resources = _resources()
    assert sum(r["kind"] == "NetworkPolicy" for r in resources) == 3
    assert network_policy_problems(resources) == []


def test_the_network_policy_check_catches_an_open_metrics_port() -> None:
    # Negative controls: metrics open to all; no default deny; main shipped no policy at all.
    resources = _resources()
    opened = copy.deepcopy(resources)
    worker = next(
        r
        for r in opened
        if r["metadata"]["name"] == "uptake-worker" and r["kind"] == "NetworkPolicy"
    )
    del worker["spec"]["ingress"][0]["from"]
    assert "uptake-worker port metrics is open to every source" in network_policy_problems(opened)
    no_deny = [r for r in resources if r["metadata"]["name"] != "uptake-default-deny-ingress"]
    assert network_policy_problems(no_deny) == ["no default-deny ingress policy"]
    none = [r for r in resources if r["kind"] != "NetworkPolicy"]
    assert "no default-deny ingress policy" in network_policy_problems(none)


# --- Batch size against the memory limit ------------------------------------------------------

_QUANTITY = {"Mi": 1, "Gi": 1024}


def measured_worker_rss_mib() -> dict[int, int]:
    """batch size -> worker peak RSS (MiB) of the first table of docs/benchmarks.md's
    "Batch size and memory"."""
    text = (REPO / "docs" / "benchmarks.md").read_text()
    section = text[text.index("## Batch size and memory") :]
    table = section[section.index("| batch (messages) | worker peak RSS") :].split("\n\n")[0]
    rows = re.findall(r"^\| ([\d,]+) \| ([\d,]+) MiB \|", table, re.M)
    return {int(batch.replace(",", "")): int(rss.replace(",", "")) for batch, rss in rows}


def _mib(quantity: str) -> int:
    return int(quantity[:-2]) * _QUANTITY[quantity[-2:]]


def batch_problems(batch: int, limit_mib: int, measured: dict[int, int]) -> list[str]:
    if batch not in measured:
        return [f"batch {batch} has no measured peak RSS in docs/benchmarks.md"]
    if measured[batch] > 0.6 * limit_mib:
        return [f"batch {batch} peaks at {measured[batch]} MiB, over 60 % of {limit_mib} MiB"]
    return []


def test_shipped_batch_sizes_are_measured_well_within_the_memory_limit() -> None:
    from pipeline.config.settings import Settings

    measured = measured_worker_rss_mib()
    assert len(measured) >= 3
    resources = _resources()
    config = next(r for r in resources if r["kind"] == "ConfigMap")["data"]
    worker = next(r for r in resources if r["metadata"]["name"] == "uptake-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    limit = _mib(container["resources"]["limits"]["memory"])
    request = _mib(container["resources"]["requests"]["memory"])
    batch = int(config["UPTAKE_BATCH_MAX_MESSAGES"])
    assert batch_problems(batch, limit, measured) == []
    assert request >= measured[batch]  # the scheduler reserves what a backlog takes
    assert batch_problems(Settings().ingest.batch_max_messages, limit, measured) == []  # Compose
    # Negative control: main's Kubernetes base, 5,000-message batches under the same 2Gi limit.
    assert batch_problems(5000, limit, measured) == [
        f"batch 5000 peaks at {measured[5000]} MiB, over 60 % of 2048 MiB"
    ]
