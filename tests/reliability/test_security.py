"""Security properties of Uptake, each checked against the real pieces.

- Collector tokens: stored as sha256 digests (a file holding a raw token does not authenticate
  that token), compared with `hmac.compare_digest` against every digest, 401 for a wrong
  token, 413 over the size limits, 429 over the rate.
- Webhooks: unsigned or wrongly signed GitHub / generic deliveries and a wrong GitLab token are
  401, and nothing reaches Kafka.
- Secrets never shown: `repr(Settings)`, `uptake settings`, warehouse errors, webhook answers and
  the collector's logs never contain a password, the pseudonym key or a webhook secret.
- SQL injection: team, capability and other names made of quotes, backslashes, backticks,
  `; DROP TABLE events; --`, `{x:String}` and control characters go through the real sink into
  a real warehouse and come back byte-exact; the adoption SQL returns them as label values;
  `uptake query --format json` escapes them.
- Pseudonyms: the stored user key is the keyed BLAKE2b of the user, not an unkeyed hash and not
  the key of another secret.

Bugs found in pipeline/ (BUG-7 to BUG-9), all fixed, are pinned by regression tests; BUG-1 to
BUG-6 are in test_hostile_decoder.py and test_hostile_collector.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from pipeline.collector import auth
from pipeline.collector.adapters import (
    GenericAdapter,
    GitHubAdapter,
    GitLabAdapter,
    WebhookRejected,
)
from pipeline.collector.adapters import base as adapters_base
from pipeline.collector.app import create_app
from pipeline.collector.auth import TokensFileError, TokenTable, hash_token
from pipeline.collector.config import CollectorConfig
from pipeline.collector.webhooks import WebhooksFileError, load_webhooks, webhooks_from_mapping
from pipeline.config.settings import Settings, SettingsError, redact_url
from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.contract.events import NAME_RULE, name_problem
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.kafka.topics import ensure_topics
from pipeline.observability.adoption import families, read_figures
from pipeline.sink.clickhouse import ClickHouseSink
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.conftest import REPO, env_without_settings, free_port
from tests.support.collector import Collector, FakeClock, Reply, serve_in_thread
from tests.support.webhooks import fixture_bytes, sign

pytestmark = pytest.mark.reliability

TOKEN = "sec-token-4f1c9a0e7b2d6c83"
OTHER_TOKEN = "sec-other-token-0d9e8f7a6b5c"
ROTATED_TOKEN = "sec-rotated-token-5e6f7a8b9c0d"
RAW_HEX_TOKEN = "ab" * 32  # a token that looks exactly like a digest
PASSWORD = "s3cretpw"
PSEUDONYM_KEY = "topsecretkey123456"
WEBHOOK_SECRET = "whsecret-XYZ"


# =============================================================================== collectors


@pytest.fixture
def collector(kafka_bootstrap: str) -> Iterator[Callable[..., Collector]]:
    """Start collectors on the session's real Kafka (own topic each); `tokens` and `webhooks`
    as create_app takes them, other options are CollectorConfig fields."""
    started: list[Collector] = []

    def make(tokens: TokenTable, webhooks: Sequence[Any] = (), **options: Any) -> Collector:
        topic = f"test.security.{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_bootstrap, {topic: 2})
        config = CollectorConfig(
            host="127.0.0.1", port=0, kafka_bootstrap=kafka_bootstrap, events_topic=topic, **options
        )
        clock = FakeClock()
        app = create_app(config, tokens, webhooks=webhooks, clock=clock, kafka_threads=4)
        server = serve_in_thread(app, topic, kafka_bootstrap, clock)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def event(team: str = "checkout", **changes: Any) -> dict[str, Any]:
    built = {
        "event_id": str(uuid.uuid4()),
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "capability": "api-gateway",
        "team": team,
        "data": {
            "api": "orders",
            "operation": "POST /v1/orders",
            "status_code": 201,
            "latency_ms": 2,
        },
    }
    built.update(changes)
    return built


def post(server: Collector, body: Any, token: str | None = TOKEN, **headers: str) -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return server.request("POST", "/v1/events", data, sent)


# =============================================================================== tokens


@pytest.mark.integration
def test_the_tokens_file_holds_sha256_digests_and_a_raw_token_does_not_authenticate(
    tmp_path: Path, collector: Callable[..., Collector]
) -> None:
    assert hash_token(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()
    # A raw token by mistake: refused at start, and the message does not repeat it.
    pasted = tmp_path / "pasted.json"
    pasted.write_text(json.dumps({"api-gateway": TOKEN}))
    with pytest.raises(TokensFileError) as refused:
        TokenTable.load(pasted)
    assert TOKEN not in str(refused.value)
    # A raw token that happens to look like a digest loads, but is not a token for anyone:
    # what is presented is hashed first.
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({"api-gateway": hash_token(TOKEN), "ci": RAW_HEX_TOKEN}))
    table = TokenTable.load(tokens_file)
    assert table.source_for(TOKEN) == "api-gateway"
    assert table.source_for(RAW_HEX_TOKEN) is None
    assert table.source_for(hash_token(TOKEN)) is None  # the digest itself is no token either
    assert TOKEN.encode() not in tokens_file.read_bytes()

    server = collector(table)
    sent = event()
    assert post(server, [sent]).status == 200
    for presented in (RAW_HEX_TOKEN, hash_token(TOKEN), TOKEN.upper(), TOKEN[:-1], TOKEN + "x"):
        reply = post(server, [event()], token=presented)
        assert (reply.status, reply.json["error"]) == (401, "invalid_token"), presented
    assert [e["event_id"] for e in server.landed_events()] == [sent["event_id"]]


@pytest.fixture
def compare_digest_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every call of hmac.compare_digest (in any thread) while the test runs."""
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((bytes(a), bytes(b)))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert auth.hmac is hmac and adapters_base.hmac is hmac  # the modules use this function
    return calls


@pytest.mark.integration
def test_tokens_are_compared_in_constant_time_against_every_digest(
    collector: Callable[..., Collector], compare_digest_calls: list[tuple[bytes, bytes]]
) -> None:
    table = TokenTable.from_mapping(
        {
            "api-gateway": hash_token(TOKEN),
            "deploys": [hash_token(OTHER_TOKEN), hash_token(ROTATED_TOKEN)],
            "ci": hash_token("ci-token-0123456789ab"),
        }
    )
    digests = sorted(expected for _, expected in table.entries)
    server = collector(table)
    for presented, status in (
        ("wrong-token-0123456789", 401),
        (TOKEN, 200),  # the first entry matches: the others are still compared
        (ROTATED_TOKEN, 200),  # the last digest of a source
    ):
        compare_digest_calls.clear()
        reply = post(server, [event(source=None)], token=presented)
        assert reply.status == status, reply.raw
        assert sorted(b for _, b in compare_digest_calls) == digests, "not every digest compared"
        assert {a for a, _ in compare_digest_calls} == {hash_token(presented).encode()}
        assert all(presented.encode() not in pair for pair in compare_digest_calls)
    compare_digest_calls.clear()
    assert post(server, [event()], token=None).status == 401
    assert compare_digest_calls == []  # no header: nothing to compare, nothing to time


def test_webhook_secrets_are_compared_in_constant_time_against_every_secret(
    compare_digest_calls: list[tuple[bytes, bytes]],
) -> None:
    secrets = ["gh-secret-one-0123", "gh-secret-two-4567"]
    body = fixture_bytes("github/deployment_status_success.json")
    github = GitHubAdapter(secrets)
    with pytest.raises(WebhookRejected):
        github.verify({"X-Hub-Signature-256": sign(body, "not-the-secret")}, body)
    assert len(compare_digest_calls) == 2
    compare_digest_calls.clear()
    github.verify({"X-Hub-Signature-256": sign(body, secrets[0])}, body)  # first one matches
    assert len(compare_digest_calls) == 2

    compare_digest_calls.clear()
    gitlab = GitLabAdapter(["gl-token-one-0123", "gl-token-two-4567"])
    with pytest.raises(WebhookRejected):
        gitlab.verify({"X-Gitlab-Token": "gl-token-one-0124"}, b"{}")
    assert sorted(b for _, b in compare_digest_calls) == [
        b"gl-token-one-0123",
        b"gl-token-two-4567",
    ]

    compare_digest_calls.clear()
    generic = GenericAdapter(token=["tok-a-0123456789"], secret=["sec-a-0123", "sec-b-4567"])
    with pytest.raises(WebhookRejected):
        generic.verify(
            {"Authorization": "Bearer tok-a-0123456780", "X-Uptake-Signature-256": "sha256=00"},
            b"{}",
        )
    assert len(compare_digest_calls) == 3  # both secrets, then the token


# =============================================================================== limits


@pytest.mark.integration
def test_a_body_over_the_limit_is_413_with_or_without_content_length(
    collector: Callable[..., Collector],
) -> None:
    table = TokenTable.from_mapping({"api-gateway": hash_token(TOKEN)})
    server = collector(table, max_body_bytes=2000)
    small = [event()]
    body = json.dumps(small).encode()
    assert post(server, body + b" " * (2000 - len(body))).status == 200  # exactly the limit
    over = body + b" " * (2001 - len(body))
    reply = post(server, over)
    assert (reply.status, reply.json["error"]) == (413, "body_too_large")
    # Chunked (no Content-Length): the limit is enforced while reading.
    request = urllib.request.Request(
        server.url + "/v1/events",
        data=iter([over[:1000], over[1000:], b" " * 5000]),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    assert (status, json.loads(raw)["error"]) == (413, "body_too_large")
    assert len(server.landed_events()) == 1


@pytest.mark.integration
def test_too_many_events_is_413_and_a_source_over_its_rate_is_429(
    collector: Callable[..., Collector],
) -> None:
    table = TokenTable.from_mapping(
        {"api-gateway": hash_token(TOKEN), "deploys": hash_token(OTHER_TOKEN)}
    )
    server = collector(table, max_events=3, rate=1, burst=3)
    too_many = post(server, [event() for _ in range(4)])
    assert (too_many.status, too_many.json["error"]) == (413, "too_many_events")
    assert post(server, [event() for _ in range(3)]).status == 200  # the whole burst
    limited = post(server, [event()])
    assert (limited.status, limited.json["error"]) == (429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    # Invalid events count too: an attacker cannot spend the bucket for free.
    assert post(server, [{"not": "an event"}]).status == 429
    assert post(server, [event(source="deploys")], token=OTHER_TOKEN).status == 200  # own bucket
    server.clock.now += 1.0
    assert post(server, [event()]).status == 200
    assert len(server.landed_events()) == 5


# =============================================================================== webhooks

WEBHOOKS_TOML = """
[github]
secret_env = "SEC_GITHUB_SECRET"

[gitlab]
token_env = "SEC_GITLAB_TOKEN"

[[generic]]
name = "jenkins"
secret_env = "SEC_JENKINS_SECRET"

[[generic]]
name = "argo-cd"
token_env = "SEC_ARGO_TOKEN"
"""
WEBHOOK_ENV = {
    "SEC_GITHUB_SECRET": WEBHOOK_SECRET,
    "SEC_GITLAB_TOKEN": WEBHOOK_SECRET + "-gitlab",
    "SEC_JENKINS_SECRET": WEBHOOK_SECRET + "-jenkins",
    "SEC_ARGO_TOKEN": WEBHOOK_SECRET + "-argo",
}


@pytest.fixture
def hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: Callable[..., Collector]
) -> Collector:
    """A collector with the adapters of WEBHOOKS_TOML, secrets read from the environment like
    `uptake collector --webhooks` does."""
    path = tmp_path / "webhooks.toml"
    path.write_text(WEBHOOKS_TOML)
    for name, value in WEBHOOK_ENV.items():
        monkeypatch.setenv(name, value)
    assert WEBHOOK_SECRET not in path.read_text()
    adapters = load_webhooks(path, os.environ)
    return collector(TokenTable.from_mapping({"api-gateway": hash_token(TOKEN)}), adapters)


def generic_body(**changes: Any) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    body = {
        "deployment_id": f"dep-{uuid.uuid4().hex[:8]}",
        "service": "checkout-api",
        "environment": "production",
        "status": "succeeded",
        "finished_at": now.isoformat(),
    }
    body.update(changes)
    return json.dumps(body).encode()


GITHUB_BODY = fixture_bytes("github/deployment_status_success.json")
GITLAB_BODY = fixture_bytes("gitlab/deployment_success.json")


def _github(signature: str | None) -> tuple[str, dict[str, str], bytes]:
    headers = {"X-GitHub-Event": "deployment_status"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return "github", headers, GITHUB_BODY


REFUSED_DELIVERIES: dict[str, tuple[str, dict[str, str], bytes]] = {
    "github unsigned": _github(None),
    "github wrong secret": _github(sign(GITHUB_BODY, "not-the-secret")),
    "github signature of another body": _github(sign(b"{}", WEBHOOK_SECRET)),
    "github secret prefix": _github(sign(GITHUB_BODY, WEBHOOK_SECRET[:-1])),
    "github zeros": _github("sha256=" + "0" * 64),
    "github sha1": _github("sha1=" + hashlib.sha1(GITHUB_BODY).hexdigest()),
    "github bearer instead": (
        "github",
        {"X-GitHub-Event": "deployment_status", "Authorization": "Bearer not-a-secret"},
        GITHUB_BODY,
    ),
    "gitlab wrong token": (
        "gitlab",
        {"X-Gitlab-Event": "Deployment Hook", "X-Gitlab-Token": "not-the-token"},
        GITLAB_BODY,
    ),
    "gitlab other case": (
        "gitlab",
        {
            "X-Gitlab-Event": "Deployment Hook",
            "X-Gitlab-Token": WEBHOOK_ENV["SEC_GITLAB_TOKEN"].upper(),
        },
        GITLAB_BODY,
    ),
    "gitlab missing token": ("gitlab", {"X-Gitlab-Event": "Deployment Hook"}, GITLAB_BODY),
    "jenkins unsigned": ("jenkins", {}, generic_body()),
    "jenkins wrong secret": (
        "jenkins",
        {"X-Uptake-Signature-256": sign(generic_body(), "not-the-secret")},
        generic_body(),
    ),
    "argo-cd wrong bearer": ("argo-cd", {"Authorization": "Bearer not-the-token"}, generic_body()),
    "argo-cd basic": ("argo-cd", {"Authorization": "Basic not-the-token"}, generic_body()),
    "argo-cd missing": ("argo-cd", {}, generic_body()),
}


@pytest.mark.integration
def test_unsigned_or_wrongly_signed_deliveries_are_401_and_never_show_a_secret(
    hooks: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="kafka")
    shown: list[bytes] = []
    for name, (route, headers, body) in REFUSED_DELIVERIES.items():
        reply = hooks.request(
            "POST", f"/v1/webhooks/{route}", body, {"Content-Type": "application/json", **headers}
        )
        assert (reply.status, reply.json["error"]) == (401, "unauthorized"), (name, reply.raw)
        shown += [reply.raw, str(reply.headers).encode()]
    # A valid delivery of each kind still works, so the 401s above were about the credentials.
    signed = generic_body()
    accepted = [
        hooks.request(
            "POST",
            "/v1/webhooks/jenkins",
            signed,
            {"X-Uptake-Signature-256": sign(signed, WEBHOOK_ENV["SEC_JENKINS_SECRET"])},
        ),
        hooks.request(
            "POST",
            "/v1/webhooks/argo-cd",
            generic_body(),
            {"Authorization": f"Bearer {WEBHOOK_ENV['SEC_ARGO_TOKEN']}"},
        ),
    ]
    assert [r.status for r in accepted] == [202, 202], [r.raw for r in accepted]
    shown += [r.raw for r in accepted] + [hooks.scrape().raw]
    assert len(hooks.landed_events()) == 2  # only the two valid deliveries reached Kafka
    hooks.stop()  # every log line of the server thread is written
    # Neither a secret nor the signature it would make of a refused body is ever shown.
    expected_signatures = {
        hmac.new(WEBHOOK_SECRET.encode(), body, "sha256").hexdigest()
        for _, _, body in REFUSED_DELIVERIES.values()
    }
    logged = caplog.text + "".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    assert "collector: webhook github answered 401" in logged  # the logs were captured
    for text in [*(s.decode("utf-8", "replace") for s in shown), logged]:
        assert WEBHOOK_SECRET not in text
        assert not any(signature in text for signature in expected_signatures)


@pytest.mark.parametrize(
    "config",
    [
        {"github": {"secret_env": WEBHOOK_SECRET}},
        {"github": {"secret": WEBHOOK_SECRET, "secret_env": "SEC_GITHUB_SECRET"}},
        {"github": {"webhook_secret": WEBHOOK_SECRET}},
        {"gitlab": {"token_env": ["SEC_GITLAB_TOKEN", WEBHOOK_SECRET]}},
        {"generic": [{"name": "argo-cd", "token": WEBHOOK_SECRET}]},
        {"generic": [{"name": "argo-cd", "token_env": "SEC_UNSET_VARIABLE"}]},
    ],
)
def test_a_secret_pasted_into_the_webhooks_file_is_refused_without_echoing_it(
    config: dict[str, Any],
) -> None:
    with pytest.raises(WebhooksFileError) as refused:
        webhooks_from_mapping(config, WEBHOOK_ENV)
    assert WEBHOOK_SECRET not in str(refused.value)


# =============================================================================== secrets shown

SECRET_ENV = {
    "UPTAKE_CLICKHOUSE_URL": f"http://u:{PASSWORD}@h:8123/db",
    "UPTAKE_PSEUDONYM_KEY": PSEUDONYM_KEY,
}


def test_settings_never_show_the_password_or_the_pseudonym_key() -> None:
    settings = Settings.from_env(SECRET_ENV)
    url = settings.warehouse.clickhouse_url
    assert url.reveal() == SECRET_ENV["UPTAKE_CLICKHOUSE_URL"]  # it is set
    assert settings.catalog.pseudonym_key.reveal() == PSEUDONYM_KEY
    for text in (repr(settings), str(settings), repr(settings.describe())):
        assert PASSWORD not in text and PSEUDONYM_KEY not in text
    described = {name: value for name, value, _ in settings.describe()}
    assert described["UPTAKE_CLICKHOUSE_URL"] == "http://u:***@h:8123/db"
    assert described["UPTAKE_PSEUDONYM_KEY"] == "(set, hidden)"
    assert repr(Pseudonymizer(PSEUDONYM_KEY.encode())) == "Pseudonymizer(key=***)"


def _uptake(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = env_without_settings()
    env.update({"UPTAKE_HOME": str(tmp_path / "home"), **values})
    return env


def test_uptake_settings_and_warehouse_errors_never_show_the_secrets(tmp_path: Path) -> None:
    shown = _uptake(_clean_env(tmp_path, **SECRET_ENV), "settings")
    assert shown.returncode == 0, shown.stderr
    assert "UPTAKE_CLICKHOUSE_URL" in shown.stdout and "http://u:***@h:8123/db" in shown.stdout
    assert PASSWORD not in shown.stdout + shown.stderr
    assert PSEUDONYM_KEY not in shown.stdout + shown.stderr
    # A server that does not answer: the error names the URL, redacted.
    unreachable = {
        **SECRET_ENV,
        "UPTAKE_CLICKHOUSE_URL": f"http://u:{PASSWORD}@127.0.0.1:{free_port()}/db",
    }
    failed = _uptake(_clean_env(tmp_path, **unreachable), "query", "SELECT 1")
    assert failed.returncode == 1
    assert "cannot reach the ClickHouse server at http://u:***@127.0.0.1" in failed.stderr
    assert PASSWORD not in failed.stdout + failed.stderr


def test_a_percent_encoded_password_with_a_slash_stays_hidden() -> None:
    """The documented way to put '/' or ':' in a password (the control for BUG-7)."""
    url = "http://u:s3cret%2Fpw@h:8123/db"
    settings = Settings.from_env({"UPTAKE_CLICKHOUSE_URL": url})
    assert "s3cret" not in repr(settings) + repr(settings.describe())
    assert redact_url(url) == "http://u:***@h:8123/db"


BUG7 = (
    "BUG-7: a password with an unencoded '/', '#' or '?' is printed in clear: urlsplit puts "
    "it outside the netloc, so redact_url returns the URL unchanged, and the SettingsError "
    "'UPTAKE_CLICKHOUSE_URL has an invalid port: <url>' (the very mistake it explains) shows it"
)


@pytest.mark.parametrize(
    "url",
    [
        "http://u:s3cret/pw@h:8123/db",
        "http://u:s3cret#pw@h:8123/db",
        "http://u:s3cret?pw@h:8123/db",
    ],
)
def test_bug7_a_password_with_a_slash_is_never_shown(url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"UPTAKE_CLICKHOUSE_URL": url})
    assert "s3cret" not in str(refused.value), str(refused.value)
    assert "s3cret" not in redact_url(url)


BUG8 = (
    "BUG-8: a malformed URL (an unclosed IPv6 bracket) makes urlsplit raise ValueError in "
    "Settings.validate: `uptake settings` and every command die with a traceback (exit 1) "
    "instead of a SettingsError naming UPTAKE_CLICKHOUSE_URL (exit 2)"
)


def test_bug8_a_malformed_warehouse_url_is_a_settings_error() -> None:
    url = f"https://u:{PASSWORD}@[::1:8123/db"
    try:
        Settings.from_env({"UPTAKE_CLICKHOUSE_URL": url})
    except SettingsError as exc:
        assert PASSWORD not in str(exc)
        return
    except ValueError as exc:
        raise AssertionError(f"ValueError, not SettingsError: {exc}") from None
    raise AssertionError("the URL was accepted")


# =============================================================================== SQL injection

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
HOSTILE = [  # legal names (docs/events.md#names) that look like SQL, placeholders or markup
    "o'brien",
    "it''s",
    "'",
    "back`tick`",
    "x'; DROP TABLE events; --",
    "'); DROP TABLE events; --",
    '"; DROP TABLE events; --',
    "`; DROP TABLE events; --",
    ":x String",
    "$team :team",
    "%s %(team)s $1 ?",
    "-- comment",
    "/* comment */",
    "N",
    "NULL",
    "\u00e9 \U0001f600 \u00a0\u200b",
    "x" * 200,
]
ILLEGAL_NAMES = [  # what the name rule excludes, in team, service and capability
    "back\\slash",
    "trailing\\",
    "\\'",
    "{x:String}",
    "{0},{1}",
    "\\N",
    "tab\there",
    "new\nline",
    "cr\rreturn",
    "nul\x00byte",
    "\u202eevil\u202c",
]
HOSTILE_RAW = [
    b"x'; DROP TABLE rejected_events; --",
    b"\x00\xff\xfe not UTF-8 \\' {x:String}",
    b'{"team": "{x:String}", "event_type": "api_call"}',
    "\u202e'); DROP TABLE events; --".encode(),
]
USERS = ["alice.o'hara@example.com", "bob\\; DROP TABLE events; --"]
PSEUDONYMS = Pseudonymizer(PSEUDONYM_KEY.encode())


def _id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(parts)))


def hostile_events() -> list[dict[str, Any]]:
    """An api_call and a production deploy per hostile name, in every name field."""
    events: list[dict[str, Any]] = []
    for i, name in enumerate(HOSTILE):
        occurred = (NOW - timedelta(hours=1 + i)).isoformat()
        free = ILLEGAL_NAMES[i % len(ILLEGAL_NAMES)]  # free-text fields take any character
        events.append(
            {
                "event_id": _id("api", name),
                "event_type": "api_call",
                "schema_version": 1,
                "occurred_at": occurred,
                "source": free,
                "capability": name,
                "team": name,
                "service": name,
                "user": USERS[i % len(USERS)],
                "data": {"api": free, "operation": name, "status_code": 200, "latency_ms": 1},
            }
        )
        events.append(
            {
                "event_id": _id("deploy", name),
                "event_type": "deploy",
                "schema_version": 1,
                "occurred_at": occurred,
                "source": "deploy-pipeline",
                "capability": "deploy-pipeline",
                "team": name,
                "service": name,
                "data": {
                    "deployment_id": free,
                    "service": name,
                    "environment": "production",
                    "status": "rolled_back" if i % 2 else "succeeded",  # rollback: change failure
                    "commits": [
                        {
                            "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                            "committed_at": (NOW - timedelta(hours=30 + i)).isoformat(),
                        }
                    ],
                },
            }
        )
    return events


@pytest.mark.parametrize("field", ["team", "service", "capability"])
def test_names_the_rule_excludes_are_rejected_with_it(field: str) -> None:
    """Each excluded name in a name field is rejected, saying which rule and which character."""
    good = hostile_events()[0]
    messages = [
        SourceMessage("uptake.events", 0, i, json.dumps({**good, field: name}).encode())
        for i, name in enumerate(ILLEGAL_NAMES)
    ]
    batch = BatchDecoder(now=lambda: NOW).decode(messages)
    assert batch.events == []
    assert [r.reason for r in batch.rejections] == ["schema_violation"] * len(ILLEGAL_NAMES)
    for rejection, name in zip(batch.rejections, ILLEGAL_NAMES, strict=True):
        assert rejection.detail.startswith(NAME_RULE) and f"at `$.{field}`" in rejection.detail
        assert name_problem(name) in rejection.detail


def hostile_messages() -> list[bytes]:
    events = [json.dumps(e).encode() for e in hostile_events()]
    return [b"[" + b",".join(events[:10]) + b"]", *events[10:], *HOSTILE_RAW]


def hostile_batch() -> DecodedBatch:
    messages = [SourceMessage("uptake.events", 0, i, m) for i, m in enumerate(hostile_messages())]
    batch = BatchDecoder(now=lambda: NOW).decode(messages)
    assert len(batch.events) == len(hostile_events()), [r.detail for r in batch.rejections]
    assert len(batch.rejections) == len(HOSTILE_RAW)
    batch.user_keys = PSEUDONYMS.keys([e.user for e in batch.events])
    return batch


def _tables(warehouse: Warehouse) -> list[str]:
    """The tables, views and materialized views of the warehouse's database, sorted."""
    return sorted(
        str(name)
        for (name,) in warehouse.rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        )
    )


# The tables the migrations created; a hostile name must never add, drop or rename one.
_MIGRATED_TABLES: list[str] = []


@pytest.fixture
def hostile_warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    """The in-process warehouse, migrated, with the hostile events written by the real sink."""
    with connect(inprocess_warehouse_url, create_database=True) as warehouse:
        migrate(warehouse, progress=lambda line: None)
        _MIGRATED_TABLES[:] = _tables(warehouse)
        assert {"events", "rejected_events", "schema_migrations"} <= set(_MIGRATED_TABLES)
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in _MIGRATED_TABLES)
        written = ClickHouseSink(warehouse).write(hostile_batch())
        assert written == {"events": len(hostile_events()), "rejected_events": len(HOSTILE_RAW)}
        assert _tables(warehouse) == _MIGRATED_TABLES
        yield warehouse


@pytest.mark.integration
def test_hostile_names_round_trip_through_the_sink_byte_exact(
    hostile_warehouse: Warehouse,
) -> None:
    rows = hostile_warehouse.rows(
        "SELECT toString(event_id), event_type, source, team, service, capability, data, "
        "hex(team), hex(capability), hex(data) FROM events"
    )
    stored = {row[0]: row[1:] for row in rows}
    assert len(stored) == len(rows) == len(hostile_events())
    for sent in hostile_events():
        kind, source, team, service, capability, data, team_hex, cap_hex, data_hex = stored[
            sent["event_id"]
        ]
        assert (kind, source, team, service, capability) == (
            sent["event_type"],
            sent["source"],
            sent["team"],
            sent["service"],
            sent["capability"],
        )
        assert bytes.fromhex(team_hex) == sent["team"].encode()
        assert bytes.fromhex(cap_hex) == sent["capability"].encode()
        assert bytes.fromhex(data_hex) == data.encode()
        body = json.loads(data)
        for key, value in sent["data"].items():
            if key != "commits":
                assert body[key] == value
    raws = [
        bytes.fromhex(h)
        for (h,) in hostile_warehouse.rows("SELECT hex(raw) FROM rejected_events ORDER BY _offset")
    ]
    assert raws == HOSTILE_RAW
    # Hostile values as query parameters are data too (parameter binding escapes them).
    for name in HOSTILE:
        [(count,)] = hostile_warehouse.rows(
            "SELECT count() FROM events WHERE team = {t:String} AND service = {s:String}",
            {"t": name, "s": name},
        )
        assert count == 2, name
    [(count,)] = hostile_warehouse.rows(
        "SELECT count() FROM events WHERE team = {a:String} OR team = {b:String}",
        {"a": "{b:String}", "b": "o'brien"},  # a value naming the next placeholder
    )
    assert count == 2
    assert _tables(hostile_warehouse) == _MIGRATED_TABLES
    [(total,)] = hostile_warehouse.rows("SELECT count() FROM events")
    assert total == len(hostile_events())


class _Families:
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


@pytest.mark.integration
def test_the_adoption_sql_returns_hostile_names_as_labels(hostile_warehouse: Warehouse) -> None:
    figures = read_figures(hostile_warehouse, NOW.timestamp(), per_team=True)
    assert set(figures.active_teams) == {*HOSTILE, "deploy-pipeline"}
    assert figures.known_teams == len(HOSTILE)
    assert {team.team for team in figures.teams} == set(HOSTILE)
    assert figures.dora.deployments == len(HOSTILE)
    assert figures.dora.failures == len(HOSTILE) // 2
    assert figures.dora.lead_time_median_s is not None
    for team in figures.teams:
        assert team.dora is not None and team.dora.deployments == 1, team
        assert set(team.active_7d) == {team.team, "deploy-pipeline"}
    # Exported as Prometheus labels, the names survive the text format (escaped, parsed back).
    registry = CollectorRegistry()
    registry.register(_Families(families(figures, per_team_max_series=10_000)))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, value in sample.labels.items():
                labels.setdefault(f"{sample.name}:{key}", set()).add(value)
    assert labels["uptake_adoption_active_teams:capability"] == {*HOSTILE, "deploy-pipeline"}
    assert labels["uptake_adoption_team_active:team"] == set(HOSTILE)
    assert labels["uptake_dora_team_change_failure_ratio:team"] == set(HOSTILE)
    assert _tables(hostile_warehouse) == _MIGRATED_TABLES


@pytest.mark.integration
def test_stored_user_keys_are_keyed_pseudonyms(hostile_warehouse: Warehouse) -> None:
    rows = hostile_warehouse.rows(
        "SELECT toString(event_id), user_key FROM events WHERE event_type = 'api_call'"
    )
    keys = dict(rows)
    other_key = Pseudonymizer(b"another-key-0123456789")
    for i, name in enumerate(HOSTILE):
        user = USERS[i % len(USERS)]
        stored = keys[_id("api", name)]
        assert stored == PSEUDONYMS.key_of(user)
        assert len(stored) == 32 and int(stored, 16) >= 0
        raw = user.encode()
        unkeyed = {
            hashlib.sha256(raw).hexdigest(),
            hashlib.sha1(raw).hexdigest(),
            hashlib.md5(raw).hexdigest(),
            hashlib.blake2b(raw).hexdigest(),
            hashlib.blake2b(raw, digest_size=16).hexdigest(),
            hashlib.blake2s(raw, digest_size=16).hexdigest(),
            hmac.new(PSEUDONYM_KEY.encode(), raw, "sha256").hexdigest(),
        }
        assert not any(stored in h for h in unkeyed), user  # nor a prefix of one
        assert stored != other_key.key_of(user)
    # The raw user id is stored nowhere.
    for user in USERS:
        [(found,)] = hostile_warehouse.rows(
            "SELECT count() FROM events WHERE position(concat(toString(event_id), source, team, "
            "service, user_key, capability, data), {u:String}) > 0",
            {"u": user},
        )
        assert found == 0, user
    # The same user under one key is one pseudonym (distinct-user counts stay exact).
    [(distinct,)] = hostile_warehouse.rows(
        "SELECT uniqExact(user_key) FROM events WHERE user_key != ''"
    )
    assert distinct == len(USERS)


# --- `uptake query` in its own process, on its own chdb folder ---------------------------------

WRITER = """
import json, sys
from datetime import datetime
from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.warehouse.connection import connect
from pipeline.sink.clickhouse import ClickHouseSink

url, messages_file, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
values = [bytes.fromhex(m) for m in json.load(open(messages_file))]
batch = BatchDecoder(now=lambda: now).decode(
    [SourceMessage("uptake.events", 0, i, v) for i, v in enumerate(values)]
)
batch.user_keys = Pseudonymizer(b"k" * 32).keys([e.user for e in batch.events])
with connect(url) as warehouse:
    print(json.dumps(ClickHouseSink(warehouse).write(batch)))
"""
QUERY = "SELECT team, capability, data FROM events WHERE event_type = 'api_call' ORDER BY team"


# The tables `uptake migrate` created in the query fixture's warehouse.
_QUERY_ENV_TABLES: list[str] = []


def _listed_tables(env: dict[str, str]) -> list[str]:
    """The warehouse's tables as `uptake query` lists them."""
    done = _uptake(
        env,
        "query",
        "--format",
        "json",
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
    )
    assert done.returncode == 0, done.stderr
    return [str(r["name"]) for r in json.loads(done.stdout)]


@pytest.fixture(scope="module")
def query_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A separate chdb folder, migrated with `uptake migrate` and written by the real sink, in
    subprocesses only: this pytest process never opens it (it may open one folder)."""
    tmp = tmp_path_factory.mktemp("security-query")
    url = f"chdb://{tmp / 'wh'}"
    env = _clean_env(tmp, UPTAKE_CLICKHOUSE_URL=url)
    migrated = _uptake(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    _QUERY_ENV_TABLES[:] = _listed_tables(env)
    assert {"events", "rejected_events", "schema_migrations"} <= set(_QUERY_ENV_TABLES)
    messages = tmp / "messages.json"
    messages.write_text(json.dumps([m.hex() for m in hostile_messages()]))
    written = subprocess.run(
        [sys.executable, "-c", WRITER, url, str(messages), NOW.isoformat()],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout) == {
        "events": len(hostile_events()),
        "rejected_events": len(HOSTILE_RAW),
    }
    return env


def _expected_query_rows() -> list[dict[str, Any]]:
    rows = [e for e in hostile_events() if e["event_type"] == "api_call"]
    return [
        {"team": e["team"], "capability": e["capability"], "api": e["data"]["api"]}
        for e in sorted(rows, key=lambda e: e["team"].encode())
    ]


@pytest.mark.integration
def test_uptake_query_json_escapes_hostile_values(query_env: dict[str, str]) -> None:
    # `uptake query` runs the operator's SQL as given: raw SQL by design (like clickhouse-client),
    # never built from event data. What must hold is that its output escapes hostile values.
    done = _uptake(query_env, "query", "--format", "json", QUERY)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    got = [
        {"team": r["team"], "capability": r["capability"], "api": json.loads(r["data"])["api"]}
        for r in rows
    ]
    assert got == _expected_query_rows()
    assert _listed_tables(query_env) == _QUERY_ENV_TABLES  # no hostile value made or lost one


BUG9 = (
    "BUG-9: `uptake query --format tsv` writes values with tabs, newlines and backslashes "
    "unescaped, so a team named 'x\\ty' or 'a\\nb' shifts columns or forges rows for any "
    "script reading the TSV (ClickHouse's own TSV escapes them as \\t, \\n, \\\\)"
)


@pytest.mark.integration
def test_bug9_uptake_query_tsv_escapes_hostile_values(query_env: dict[str, str]) -> None:
    done = _uptake(
        query_env,
        "query",
        "--format",
        "tsv",
        "SELECT team, capability FROM events WHERE event_type = 'api_call' ORDER BY team",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[-1] == ""
    header, body = lines[0], lines[1:-1]
    assert header == "team\tcapability"
    assert len(body) == len(HOSTILE), f"{len(body)} TSV rows for {len(HOSTILE)} events"
    unescape = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\\\": "\\", "\\0": "\x00"}

    def cell(text: str) -> str:
        out, i = [], 0
        while i < len(text):
            pair = text[i : i + 2]
            if pair in unescape:
                out.append(unescape[pair])
                i += 2
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    got = [[cell(c) for c in line.split("\t")] for line in body]
    assert got == [[r["team"], r["capability"]] for r in _expected_query_rows()]
