"""Webhook routes of the collector (`POST /v1/webhooks/<name>`), served in-process and producing
to the session's real Kafka broker, with the real GitHub and GitLab payloads of
tests/support/fixtures/webhooks; and the webhooks file (`load_webhooks`) with its error
messages, and the CLI flag.

Each test gets its own topic and server; what landed is read back with KafkaConsumer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.collector.adapters import GenericAdapter, GitHubAdapter, GitLabAdapter
from pipeline.collector.adapters.base import event_id
from pipeline.collector.app import create_app
from pipeline.collector.auth import TokenTable
from pipeline.collector.config import CollectorConfig
from pipeline.collector.webhooks import WebhooksFileError, load_webhooks, webhooks_from_mapping
from pipeline.contract.decode import Limits
from pipeline.kafka.topics import ensure_topics
from tests.conftest import REPO, free_port
from tests.support.collector import Collector, FakeClock, Reply, landed, metric, serve_in_thread
from tests.support.webhooks import fixture, fixture_bytes, mutated, sign

pytestmark = pytest.mark.integration

GITHUB_SECRET = "gh-webhook-secret-5d0c9f0e2b7a4e1f"
GITLAB_TOKEN = "gl-webhook-token-8a1e6c3b9d2f4a70"
ARGO_TOKEN = "argo-webhook-token-3f7b2d9e1c6a4b58"
JENKINS_SECRET = "jenkins-hmac-secret-0e4d8b2a6f1c9e37"
ENVIRON = {
    "UPTAKE_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    "UPTAKE_GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
    "UPTAKE_ARGOCD_WEBHOOK_TOKEN": ARGO_TOKEN,
    "UPTAKE_JENKINS_WEBHOOK_SECRET": JENKINS_SECRET,
}
WEBHOOKS_TOML = """
[github]
secret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"
teams = { "Codertocat/Hello-World" = "octo", "acme" = "platform" }
services = { "acme/monolith" = "shop" }
deploy_workflows = { ".github/workflows/deploy.yml" = "production" }

[gitlab]
token_env = "UPTAKE_GITLAB_WEBHOOK_TOKEN"
teams = { "root" = "root-team" }

[[generic]]
name = "argo-cd"
token_env = "UPTAKE_ARGOCD_WEBHOOK_TOKEN"
teams = { "checkout-api" = "checkout" }

[[generic]]
name = "jenkins"
secret_env = "UPTAKE_JENKINS_WEBHOOK_SECRET"
"""
GITHUB_SUCCESS = "github/deployment_status_success.json"
GITLAB_SUCCESS = "gitlab/deployment_success.json"
# The published example payloads are from 2019 and 2021: older than the worker's default
# lateness (7 days), so these servers accept old events; one test keeps the default.
OLD_PAYLOADS = Limits(max_lateness=timedelta(days=365 * 30))


@pytest.fixture
def webhooks_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhooks.toml"
    path.write_text(WEBHOOKS_TOML)
    return path


@pytest.fixture
def hooks(kafka_bootstrap: str, webhooks_file: Path) -> Iterator[Callable[..., Collector]]:
    """Start collectors with the adapters of WEBHOOKS_TOML; options are CollectorConfig fields."""
    started: list[Collector] = []

    def make(**options: Any) -> Collector:
        topic = f"test.webhooks.{uuid.uuid4().hex[:10]}"
        bootstrap = options.pop("kafka_bootstrap", kafka_bootstrap)
        if bootstrap == kafka_bootstrap:
            ensure_topics(kafka_bootstrap, {topic: 3})
        options.setdefault("limits", OLD_PAYLOADS)
        config = CollectorConfig(
            host="127.0.0.1", port=0, kafka_bootstrap=bootstrap, events_topic=topic, **options
        )
        adapters = load_webhooks(webhooks_file, ENVIRON)
        app = create_app(config, TokenTable(()), webhooks=adapters, kafka_threads=4)
        server = serve_in_thread(app, topic, kafka_bootstrap, FakeClock())
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def github(server: Collector, body: bytes, signature: str | None, kind: str) -> Reply:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": kind}
    headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return server.request("POST", "/v1/webhooks/github", body, headers)


def gitlab(server: Collector, body: bytes, token: str | None) -> Reply:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Deployment Hook"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return server.request("POST", "/v1/webhooks/gitlab", body, headers)


def generic_body(**changes: Any) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    body: dict[str, Any] = {
        "deployment_id": f"checkout-api-{uuid.uuid4().hex[:8]}",
        "service": "checkout-api",
        "environment": "production",
        "status": "succeeded",
        "finished_at": now.isoformat(),
        "started_at": (now - timedelta(minutes=7)).isoformat(),
        "commits": [
            {
                "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                "committed_at": "2025-05-31T16:20:11Z",
            }
        ],
    }
    body.update(changes)
    return json.dumps(body).encode()


# --- GitHub ------------------------------------------------------------------------------------


def test_a_signed_real_github_deployment_status_lands_on_the_topic(
    hooks: Callable[..., Collector],
) -> None:
    server = hooks()
    body = fixture_bytes(GITHUB_SUCCESS)
    reply = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    assert reply.status == 202, reply.raw
    expected_id = event_id("github", "deployment_status", "209916254")
    assert reply.json == {
        "accepted": 1,
        "rejected": 0,
        "results": [
            {
                "index": 0,
                "event_id": expected_id,
                "status": "accepted",
                "reason": None,
                "detail": None,
            }
        ],
    }
    [(key, [landed])] = server.landed()
    assert key == "octo"  # the team, as for /v1/events
    assert landed["event_id"] == expected_id
    assert (landed["event_type"], landed["source"], landed["team"]) == ("deploy", "github", "octo")
    assert landed["service"] == "Hello-World"
    assert landed["data"]["deployment_id"] == "145988746"
    assert landed["data"]["environment"] == "production"
    assert landed["data"]["status"] == "succeeded"
    assert landed["occurred_at"] == "2019-05-15T15:20:55Z"


def test_a_redelivery_gives_the_same_event_id(hooks: Callable[..., Collector]) -> None:
    server = hooks()
    body = fixture_bytes(GITHUB_SUCCESS)
    first = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    again = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    assert first.status == again.status == 202
    ids = {e["event_id"] for e in server.landed_events()}
    assert ids == {first.json["results"][0]["event_id"]}  # the warehouse folds the two


@pytest.mark.parametrize(
    ("signature", "words"),
    [
        (None, "X-Hub-Signature-256 missing"),
        ("sha256=" + "0" * 64, "X-Hub-Signature-256 does not match the body"),
        ("signed-with-the-wrong-secret", "X-Hub-Signature-256 does not match the body"),
        ("sha1=abcdef", "X-Hub-Signature-256 does not start with 'sha256='"),
    ],
)
def test_a_wrong_or_missing_github_signature_is_401_and_nothing_is_produced(
    hooks: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
    signature: str | None,
    words: str,
) -> None:
    server = hooks()
    body = fixture_bytes(GITHUB_SUCCESS)
    if signature == "signed-with-the-wrong-secret":
        signature = sign(body, "not-the-" + GITHUB_SECRET)
    with caplog.at_level(logging.DEBUG):
        reply = github(server, body, signature, "deployment_status")
    assert reply.status == 401, reply.raw
    assert reply.json == {"error": "unauthorized", "message": words}
    assert server.landed_events() == []
    # Never the secret, the expected signature or the presented one, in the answer or the log.
    expected = sign(body, GITHUB_SECRET)
    for text in (reply.raw.decode(), caplog.text):
        assert GITHUB_SECRET not in text
        assert expected.removeprefix("sha256=") not in text
        if signature:
            assert signature not in text


def test_a_body_signed_for_another_body_is_401(hooks: Callable[..., Collector]) -> None:
    server = hooks()
    body = fixture_bytes(GITHUB_SUCCESS)
    tampered = body.replace(b'"production"', b'"staging"')
    assert tampered != body
    reply = github(server, tampered, sign(body, GITHUB_SECRET), "deployment_status")
    assert reply.status == 401
    assert server.landed_events() == []


def test_an_unfinished_github_deployment_is_202_ignored_and_nothing_is_produced(
    hooks: Callable[..., Collector],
) -> None:
    server = hooks()
    # The real success payload with only the state changed, as tests/unit/collector/adapters does.
    body = json.dumps(
        mutated(fixture(GITHUB_SUCCESS), {"deployment_status.state": "pending"})
    ).encode()
    reply = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    assert reply.status == 202, reply.raw
    assert reply.json["accepted"] == 0
    assert reply.json["ignored"].startswith(
        "deployment_status.state pending: not a finished deployment"
    )
    assert set(reply.json) == {"accepted", "ignored"}
    ping = fixture_bytes("github/ping.json")
    pong = github(server, ping, sign(ping, GITHUB_SECRET), "ping")
    assert (pong.status, pong.json["accepted"]) == (202, 0)
    assert "ping" in pong.json["ignored"]
    assert server.landed_events() == []


def test_a_failed_github_deployment_lands_as_a_failed_deploy(
    hooks: Callable[..., Collector],
) -> None:
    server = hooks()
    body = json.dumps(
        mutated(fixture(GITHUB_SUCCESS), {"deployment_status.state": "failure"})
    ).encode()
    reply = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    assert reply.status == 202, reply.raw
    [landed] = server.landed_events()
    assert landed["data"]["status"] == "failed"


@pytest.mark.parametrize(
    ("body", "kind", "status", "code", "words"),
    [
        (b"this is not json", "deployment_status", 400, "bad_payload", "not valid JSON"),
        (b"[1, 2]", "deployment_status", 400, "bad_payload", "not an object"),
        (b'{"zen": "Keep it logically awesome."}', "push", 422, "unmapped_delivery", "'push'"),
    ],
)
def test_a_malformed_or_unmapped_github_delivery_is_answered_with_the_adapters_status(
    hooks: Callable[..., Collector], body: bytes, kind: str, status: int, code: str, words: str
) -> None:
    server = hooks()
    reply = github(server, body, sign(body, GITHUB_SECRET), kind)
    assert reply.status == status, reply.raw
    assert reply.json["error"] == code
    assert words in reply.json["message"]
    assert server.landed_events() == []


def test_an_event_the_worker_would_reject_is_422_with_the_reason(
    hooks: Callable[..., Collector],
) -> None:
    # The default lateness (7 days): the 2019 example is too old for the worker, so it is not
    # produced, and the sender sees the failed delivery with the reason.
    server = hooks(limits=Limits())
    body = fixture_bytes(GITHUB_SUCCESS)
    reply = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    assert reply.status == 422, reply.raw
    answer = reply.json
    assert answer["error"] == "events_rejected"
    assert (answer["accepted"], answer["rejected"]) == (0, 1)
    assert answer["results"][0]["reason"] == "occurred_at_too_old"
    assert "occurred_at_too_old" in answer["message"]
    assert server.landed_events() == []


def test_a_body_over_the_limit_is_413(hooks: Callable[..., Collector]) -> None:
    server = hooks(webhook_max_body_bytes=2000)
    body = fixture_bytes(GITHUB_SUCCESS)
    assert len(body) > 2000
    reply = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    assert reply.status == 413
    assert reply.json["error"] == "body_too_large"
    assert "2000 bytes" in reply.json["message"]
    assert server.landed_events() == []


# --- GitLab and generic ------------------------------------------------------------------------


def test_the_real_gitlab_deployment_with_its_token_lands(hooks: Callable[..., Collector]) -> None:
    server = hooks()
    reply = gitlab(server, fixture_bytes(GITLAB_SUCCESS), GITLAB_TOKEN)
    assert reply.status == 202, reply.raw
    assert reply.json["accepted"] == 1
    [(key, [landed])] = server.landed()
    assert key == "root-team"  # teams: the nearest group "root"
    assert (landed["source"], landed["service"]) == ("gitlab", "root/test-deployment-webhooks")
    assert landed["data"]["environment"] == "staging"
    assert landed["occurred_at"] == "2021-04-28T21:50:00+02:00"
    assert landed["event_id"] == reply.json["results"][0]["event_id"]


@pytest.mark.parametrize(
    ("token", "words"),
    [(None, "X-Gitlab-Token missing"), ("not-" + GITLAB_TOKEN, "X-Gitlab-Token does not match")],
)
def test_a_wrong_or_missing_gitlab_token_is_401(
    hooks: Callable[..., Collector], token: str | None, words: str
) -> None:
    server = hooks()
    reply = gitlab(server, fixture_bytes(GITLAB_SUCCESS), token)
    assert (reply.status, reply.json) == (401, {"error": "unauthorized", "message": words})
    assert GITLAB_TOKEN not in reply.raw.decode()
    assert server.landed_events() == []


def test_a_generic_webhook_with_its_bearer_token_lands(hooks: Callable[..., Collector]) -> None:
    server = hooks()
    body = generic_body()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ARGO_TOKEN}"}
    reply = server.request("POST", "/v1/webhooks/argo-cd", body, headers)
    assert reply.status == 202, reply.raw
    [(key, [landed])] = server.landed()
    assert key == "checkout"  # teams: service -> team
    assert (landed["source"], landed["service"]) == ("argo-cd", "checkout-api")
    assert landed["data"]["deployment_id"] == json.loads(body)["deployment_id"]
    assert landed["data"]["commits"][0]["sha"].startswith("9fceb02")
    wrong = server.request(
        "POST", "/v1/webhooks/argo-cd", body, {**headers, "Authorization": "Bearer nope"}
    )
    assert (wrong.status, wrong.json["message"]) == (401, "bearer token does not match")
    missing = server.request("POST", "/v1/webhooks/argo-cd", body, {})
    assert (missing.status, missing.json["message"]) == (401, "bearer token missing")
    assert len(server.landed_events()) == 1


def test_a_generic_webhook_signed_with_its_secret_lands_and_a_running_one_is_ignored(
    hooks: Callable[..., Collector],
) -> None:
    server = hooks()
    body = generic_body()
    signed = {"X-Uptake-Signature-256": sign(body, JENKINS_SECRET)}
    assert server.request("POST", "/v1/webhooks/jenkins", body, signed).status == 202
    running = generic_body(status="running")
    reply = server.request(
        "POST",
        "/v1/webhooks/jenkins",
        running,
        {"X-Uptake-Signature-256": sign(running, JENKINS_SECRET)},
    )
    assert (reply.status, reply.json) == (
        202,
        {"accepted": 0, "ignored": "deployment running: it has not ended yet"},
    )
    # The argo-cd token does not open jenkins' route: each adapter has its own credentials.
    other = server.request(
        "POST", "/v1/webhooks/jenkins", body, {"Authorization": f"Bearer {ARGO_TOKEN}"}
    )
    assert other.status == 401
    [landed] = server.landed_events()
    assert landed["source"] == "jenkins"


# --- Kafka, routes, metrics --------------------------------------------------------------------


def test_kafka_unreachable_is_503_never_202(hooks: Callable[..., Collector]) -> None:
    server = hooks(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_timeout_s=1.0)
    undelivered = metric(
        server, "uptake_collector_events_total", route="webhook", outcome="undelivered"
    )
    body = fixture_bytes(GITHUB_SUCCESS)
    started = time.monotonic()
    reply = github(server, body, sign(body, GITHUB_SECRET), "deployment_status")
    assert reply.status == 503, reply.raw
    assert time.monotonic() - started < 10
    assert reply.json["error"] == "kafka_unavailable"
    assert "Kafka did not acknowledge the events within 1 s" in reply.json["message"]
    assert "Redeliver the webhook" in reply.json["message"]
    assert int(reply.headers["Retry-After"]) > 0
    gl = gitlab(server, fixture_bytes(GITLAB_SUCCESS), GITLAB_TOKEN)
    assert gl.status == 503
    assert metric(
        server, "uptake_collector_events_total", route="webhook", outcome="undelivered"
    ) == (undelivered + 2)
    # Deliveries with nothing to produce need no Kafka.
    ping = fixture_bytes("github/ping.json")
    assert github(server, ping, sign(ping, GITHUB_SECRET), "ping").status == 202


def test_an_unconfigured_webhook_is_404_naming_the_configured_ones(
    hooks: Callable[..., Collector],
) -> None:
    server = hooks()
    reply = server.request("POST", "/v1/webhooks/bitbucket", b"{}", {})
    assert reply.status == 404
    assert reply.json == {
        "error": "not_found",
        "message": "no webhook adapter is configured at /v1/webhooks/bitbucket; configured: "
        "/v1/webhooks/argo-cd, /v1/webhooks/github, /v1/webhooks/gitlab, /v1/webhooks/jenkins",
    }
    get = server.request("GET", "/v1/webhooks/github")
    assert (get.status, get.json["error"], get.headers["Allow"]) == (
        405,
        "method_not_allowed",
        "POST",
    )


def test_webhook_requests_and_events_are_counted_under_route_webhook(
    hooks: Callable[..., Collector],
) -> None:
    server = hooks()

    def count(name: str, **labels: str) -> float:
        return metric(server, name, **labels)

    before = {
        "202": count("uptake_collector_requests_total", route="webhook", status="202"),
        "401": count("uptake_collector_requests_total", route="webhook", status="401"),
        "accepted": count("uptake_collector_events_total", route="webhook", outcome="accepted"),
        "events_accepted": count(
            "uptake_collector_events_total", route="events", outcome="accepted"
        ),
        "duration": count("uptake_collector_request_duration_seconds_count", route="webhook"),
    }
    body = fixture_bytes(GITHUB_SUCCESS)
    assert github(server, body, sign(body, GITHUB_SECRET), "deployment_status").status == 202
    assert github(server, body, None, "deployment_status").status == 401
    assert count("uptake_collector_requests_total", route="webhook", status="202") == (
        before["202"] + 1
    )
    assert count("uptake_collector_requests_total", route="webhook", status="401") == (
        before["401"] + 1
    )
    assert count("uptake_collector_events_total", route="webhook", outcome="accepted") == (
        before["accepted"] + 1
    )
    assert (
        count("uptake_collector_events_total", route="events", outcome="accepted")
        == (before["events_accepted"])
    )
    assert count("uptake_collector_request_duration_seconds_count", route="webhook") == (
        before["duration"] + 2
    )
    text = server.scrape().raw.decode()
    routes = set(re.findall(r'uptake_collector_\w+\{[^}]*route="([^"]+)"', text))
    assert routes == {"events", "webhook", "feedback"}  # bounded: never an adapter name


def test_events_route_still_needs_a_token_without_a_tokens_file(
    hooks: Callable[..., Collector],
) -> None:
    server = hooks()
    reply = server.request("POST", "/v1/events", b"{}", {"Authorization": f"Bearer {ARGO_TOKEN}"})
    assert (reply.status, reply.json["error"]) == (401, "invalid_token")


# --- the webhooks file -------------------------------------------------------------------------


def test_the_webhooks_file_mounts_the_configured_adapters(webhooks_file: Path) -> None:
    adapters = load_webhooks(webhooks_file, ENVIRON)
    assert [a.name for a in adapters] == ["github", "gitlab", "argo-cd", "jenkins"]
    gh, gl, argo, jenkins = adapters
    assert isinstance(gh, GitHubAdapter)
    assert gh.teams == {"Codertocat/Hello-World": "octo", "acme": "platform"}
    assert gh.services == {"acme/monolith": "shop"}
    assert gh.deploy_workflows == {".github/workflows/deploy.yml": "production"}
    assert isinstance(gl, GitLabAdapter) and gl.teams == {"root": "root-team"}
    assert isinstance(argo, GenericAdapter) and argo.teams == {"checkout-api": "checkout"}
    assert isinstance(jenkins, GenericAdapter)


def test_the_same_configuration_in_json(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.json"
    path.write_text(
        json.dumps(
            {
                "github": {"secret_env": "UPTAKE_GITHUB_WEBHOOK_SECRET"},
                "generic": [{"name": "argo-cd", "token_env": "UPTAKE_ARGOCD_WEBHOOK_TOKEN"}],
            }
        )
    )
    assert [a.name for a in load_webhooks(path, ENVIRON)] == ["github", "argo-cd"]


def test_a_list_of_variables_accepts_every_secret_during_a_rotation() -> None:
    environ = {"OLD": "old-secret-0123456789", "NEW": "new-secret-0123456789"}
    [adapter] = webhooks_from_mapping({"github": {"secret_env": ["OLD", "NEW"]}}, environ)
    for secret in environ.values():
        adapter.verify({"X-Hub-Signature-256": sign(b"{}", secret)}, b"{}")


def test_the_example_of_docs_webhooks_md_loads(tmp_path: Path) -> None:
    text = (REPO / "docs" / "webhooks.md").read_text()
    section = text[text.index("## The webhooks file") :]
    example = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert example, "docs/webhooks.md has no TOML example in 'The webhooks file'"
    path = tmp_path / "webhooks.toml"
    path.write_text(example.group(1))
    names = set(re.findall(r'(?:secret|token)_env = "(\w+)"', example.group(1)))
    adapters = load_webhooks(path, {name: f"value-of-{name}" for name in names})
    assert {"github", "gitlab"} <= {a.name for a in adapters}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[github]\nsecret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"\nteam = { "a/b" = "c" }\n',
            "{path}: [github] has an unknown key 'team'; its keys are deploy_workflows, "
            "secret_env, services, teams",
        ),
        (
            '[gitlab]\ntoken_env = "UPTAKE_GITLAB_WEBHOOK_TOKEN"\ndeploy_workflows = {}\n',
            "{path}: [gitlab] has an unknown key 'deploy_workflows'; its keys are services, "
            "teams, token_env",
        ),
        (
            '[[generic]]\nname = "argo-cd"\ntoken_env = "UPTAKE_ARGOCD_WEBHOOK_TOKEN"\nurl = "x"\n',
            "{path}: [[generic]] 'argo-cd' has an unknown key 'url'; its keys are name, "
            "secret_env, teams, token_env",
        ),
        (
            '[bitbucket]\ntoken_env = "X"\n',
            "{path}: unknown section 'bitbucket'; the sections are [github], [gitlab] and "
            "[[generic]]",
        ),
        (
            '[github]\nsecret_env = "UPTAKE_MISSING_SECRET"\n',
            "{path}: [github] secret_env names the environment variable UPTAKE_MISSING_SECRET, "
            "which is not set; set it to the webhook's secret before starting the collector",
        ),
        (
            '[[generic]]\nname = "argo-cd"\ntoken_env = "UPTAKE_EMPTY"\n',
            "{path}: [[generic]] 'argo-cd' token_env names the environment variable "
            "UPTAKE_EMPTY, which is empty",
        ),
        (
            "[gitlab]\nteams = {}\n",
            "{path}: [gitlab] needs token_env, the environment variable holding the webhook "
            'secret token (e.g. token_env = "UPTAKE_GITLAB_WEBHOOK_TOKEN")',
        ),
        (
            '[[generic]]\ntoken_env = "UPTAKE_ARGOCD_WEBHOOK_TOKEN"\n',
            "{path}: [[generic]] number 1 needs a name: 1-63 characters of a-z, 0-9, '.', '_', "
            "'-' starting with a letter or digit; it is the route /v1/webhooks/<name> and the "
            "events' source",
        ),
        (
            '[[generic]]\nname = "argo-cd"\nteams = {}\n',
            "{path}: [[generic]] 'argo-cd' needs token_env (a bearer token), secret_env (an "
            "HMAC secret) or both: the environment variable holding it",
        ),
        (
            '[generic]\nname = "argo-cd"\ntoken_env = "UPTAKE_ARGOCD_WEBHOOK_TOKEN"\n',
            "{path}: generic must be an array of tables, one per tool: write [[generic]] "
            "(JSON: a list of objects), each with its own name",
        ),
        (
            '[github]\nsecret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"\n'
            '[[generic]]\nname = "github"\ntoken_env = "UPTAKE_ARGOCD_WEBHOOK_TOKEN"\n',
            "{path}: two webhook adapters are named 'github'; every route /v1/webhooks/<name> "
            "must differ: give each [[generic]] its own name",
        ),
        (
            '[github]\nsecret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"\nteams = { "acme" = 7 }\n',
            "{path}: [github] teams: the value for 'acme' must be a non-empty string, not int 7",
        ),
        (
            '[github]\nsecret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"\nteams = ["acme"]\n',
            '{path}: [github] teams must be a table of strings, e.g. teams = { "acme/checkout-api"'
            ' = "checkout" }',
        ),
        (
            '[github]\nsecret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"\n'
            'teams = { "acme" = "a\\\\b" }\n',
            "{path}: [github] teams: the value for 'acme' breaks the name rule: a team, service or "
            "capability name may not contain a control character, a bidirectional control, a "
            "backslash, ',', '{' or '}' (docs/events.md#names); found '\\\\' at character 2",
        ),
        ("", "{path}: no webhook adapter is configured; add [github], [gitlab] or [[generic]]"),
        ("[github\n", "the webhooks file {path} is not valid JSON/TOML: "),
    ],
)
def test_a_bad_webhooks_file_gets_a_precise_message(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "webhooks.toml"
    path.write_text(content)
    with pytest.raises(WebhooksFileError) as caught:
        load_webhooks(path, {**ENVIRON, "UPTAKE_EMPTY": ""})
    assert str(caught.value).startswith(message.replace("{path}", str(path))), str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        f'[github]\nsecret = "{GITHUB_SECRET}"\n',
        f'[github]\nsecret_env = "{GITHUB_SECRET}"\n',  # the secret pasted instead of a name
        f'[[generic]]\nname = "argo-cd"\ntoken_env = ["{GITHUB_SECRET}"]\n',
    ],
)
def test_a_secret_written_into_the_file_is_refused_and_never_echoed(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "webhooks.toml"
    path.write_text(content)
    with pytest.raises(WebhooksFileError) as caught:
        load_webhooks(path, ENVIRON)
    message = str(caught.value)
    assert "never go" in message
    assert GITHUB_SECRET not in message


def test_an_unreadable_webhooks_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(WebhooksFileError, match=f"cannot read the webhooks file {missing}"):
        load_webhooks(missing, ENVIRON)


# --- command line ------------------------------------------------------------------------------


@pytest.fixture
def clean_collector_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("UPTAKE_COLLECTOR_") or name.startswith("UPTAKE_GITHUB"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "10000")


def test_collector_help_mentions_webhooks(
    capsys: pytest.CaptureFixture[str], clean_collector_environment: None
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["collector", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--webhooks FILE" in out
    assert "UPTAKE_COLLECTOR_WEBHOOKS" in out
    assert "/v1/webhooks/<name>" in out
    assert 'secret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"' in out


def test_the_cli_needs_tokens_or_webhooks(
    capsys: pytest.CaptureFixture[str], clean_collector_environment: None
) -> None:
    assert main(["collector"]) == 2
    err = capsys.readouterr().err
    assert "--tokens FILE or UPTAKE_COLLECTOR_TOKENS" in err
    assert "--webhooks FILE or UPTAKE_COLLECTOR_WEBHOOKS" in err


def test_the_cli_reads_the_named_variable_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    clean_collector_environment: None,
    monkeypatch: pytest.MonkeyPatch,
    webhooks_file: Path,
) -> None:
    monkeypatch.setenv("UPTAKE_COLLECTOR_WEBHOOKS", str(webhooks_file))
    assert main(["collector"]) == 2  # before any server starts
    err = capsys.readouterr().err
    assert "UPTAKE_GITHUB_WEBHOOK_SECRET, which is not set" in err


def test_uptake_collector_serves_webhooks_end_to_end(
    kafka_bootstrap: str, webhooks_file: Path, tmp_path: Path
) -> None:
    """The real command: the file from --webhooks, the secrets from the process environment."""
    topic = f"test.webhooks.cli.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, {topic: 1})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPTAKE_", "KAFKA_"))}
    env.update(ENVIRON)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "UPTAKE_EVENTS_TOPIC": topic,
            "UPTAKE_HOME": str(tmp_path / "home"),
            "UPTAKE_MAX_LATENESS_S": str(OLD_PAYLOADS.max_lateness.total_seconds()),
            "UPTAKE_COLLECTOR_METRICS_PORT": str(free_port()),  # not the shared default 9101
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = tmp_path / "collector.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "pipeline.cli", "collector"),
                *("--port", str(port), "--webhooks", str(webhooks_file)),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        body = fixture_bytes(GITHUB_SUCCESS)
        request = urllib.request.Request(
            url + "/v1/webhooks/github",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "deployment_status",
                "X-Hub-Signature-256": sign(body, GITHUB_SECRET),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{error.code}: {error.read()!r}\n{log.read_text()}") from None
        assert status == 202
        assert answer["accepted"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    output = log.read_text()
    assert "webhooks: /v1/webhooks/github, /v1/webhooks/gitlab" in output
    assert GITHUB_SECRET not in output
    [(key, [event])] = landed(kafka_bootstrap, topic)
    assert key == "octo"
    assert event["event_id"] == answer["results"][0]["event_id"]
