"""Hostile input to the webhook adapters: random bytes and JSON, validly signed, and mutated real
payloads (generators: tests/support/hostile.py). Only `WebhookRejected` (400/422, never 401
since we sign) or an `AdapterResult` whose events pass the contract; the same delivery unsigned
is always 401.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from pipeline.collector.adapters import (
    AdapterResult,
    GenericAdapter,
    GitHubAdapter,
    GitLabAdapter,
    WebhookAdapter,
    WebhookRejected,
    process,
)
from tests.support.hostile import (
    FUZZ,
    NOW,
    SEEN,
    TRIED,
    dump,
    encode,
    json_values,
    mutate,
    mutations,
)
from tests.support.webhooks import assert_contract, fixture, sign

pytestmark = pytest.mark.reliability

# =============================================================================== webhooks

GITHUB_SECRET = "fuzz-gh-secret-7d1c0a9e"
GITLAB_TOKEN = "fuzz-gl-token-3b6e2f81"
GENERIC_SECRET = "fuzz-generic-secret-5a0c"
GENERIC_TOKEN = "fuzz-generic-token-9e4d"
GITHUB = GitHubAdapter(
    GITHUB_SECRET,
    teams={"Codertocat/Hello-World": "octo", "octo-org": "platform"},
    deploy_workflows={".github/workflows/test.yml": "production"},
)
GITLAB = GitLabAdapter(GITLAB_TOKEN, teams={"root": "root-team"})
GENERIC_SIGNED = GenericAdapter(secret=GENERIC_SECRET, name="jenkins")
GENERIC_BEARER = GenericAdapter(token=GENERIC_TOKEN, name="argo-cd", teams={"svc": "team"})
GENERIC_BODY = {
    "deployment_id": "checkout-api-7",
    "service": "checkout-api",
    "environment": "production",
    "status": "succeeded",
    "finished_at": "2025-06-01T14:05:31Z",
    "started_at": "2025-06-01T13:58:02Z",
    "commits": [
        {"sha": "9fceb02d0ae598e95dc970b74767f19372d61af8", "committed_at": "2025-05-31T16:20:11Z"}
    ],
    "team": "checkout",
    "user": "eng1",
}
GITHUB_BASES = {
    "deployment_status": [
        "github/deployment_status_success.json",
        "github/deployment_status_in_progress.json",
        "github/ghes-35_deployment_status_success.json",
    ],
    "workflow_run": [
        "github/workflow_run_completed_success.json",
        "github/workflow_run_completed_queued.json",
        "github/workflow_run_requested.json",
    ],
    "ping": ["github/ping.json"],
}
SECRETS = (GITHUB_SECRET, GITLAB_TOKEN, GENERIC_SECRET, GENERIC_TOKEN)


@dataclass
class Delivery:
    adapter: WebhookAdapter
    headers: dict[str, str]
    body: bytes


def _signed(adapter: WebhookAdapter, kind: str | None, body: bytes, case_mix: bool) -> Delivery:
    if adapter is GITHUB:
        headers = {"X-Hub-Signature-256": sign(body, GITHUB_SECRET), "X-GitHub-Event": kind or ""}
    elif adapter is GITLAB:
        headers = {"X-Gitlab-Token": GITLAB_TOKEN, "X-Gitlab-Event": kind or ""}
    elif adapter is GENERIC_SIGNED:
        headers = {"X-Uptake-Signature-256": sign(body, GENERIC_SECRET)}
    else:
        headers = {"Authorization": f"Bearer {GENERIC_TOKEN}"}
    if case_mix:
        headers = {k.lower(): v for k, v in headers.items()}
    return Delivery(adapter, headers, body)


github_kinds = st.one_of(
    st.sampled_from(["deployment_status", "workflow_run", "ping", "deployment", "push", ""]),
    st.text(max_size=20),
)
gitlab_kinds = st.one_of(st.just("Deployment Hook"), st.sampled_from(["Push Hook", ""]))


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    adapter = draw(st.sampled_from([GITHUB, GITLAB, GENERIC_SIGNED, GENERIC_BEARER]))
    if adapter is GITHUB:
        kind: str | None = draw(st.one_of(st.sampled_from(sorted(GITHUB_BASES)), github_kinds))
        base: dict[str, Any] = fixture(
            draw(st.sampled_from(GITHUB_BASES.get(kind or "", ["github/ping.json"])))
        )
    elif adapter is GITLAB:
        kind = draw(gitlab_kinds)
        base = fixture("gitlab/deployment_success.json")
    else:
        kind = None
        base = dict(GENERIC_BODY)
    shape = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "bytes", "as is"]))
    if shape == "bytes":
        body = draw(st.binary(max_size=1_000))
    elif shape == "json":
        body = encode(dump(draw(json_values), NOW, draw(st.booleans())))
    elif shape == "as is":
        body = json.dumps(base).encode()
    else:
        body = encode(dump(mutate(base, draw(mutations)), NOW, draw(st.booleans())))
    return _signed(adapter, kind, body, draw(st.booleans()))


def check_delivery(delivery: Delivery) -> None:
    TRIED["webhook adapters"] += 1
    TRIED[f"webhook adapters: {delivery.adapter.name}"] += 1
    headers: Any = delivery.headers
    if len(delivery.body) % 2:
        headers = CIMultiDict(headers)  # what aiohttp hands the adapter
    try:
        result = process(delivery.adapter, headers, delivery.body)
    except WebhookRejected as exc:
        assert exc.status in (400, 422), f"a validly signed delivery got {exc.status}: {exc}"
        assert isinstance(exc.reason, str) and exc.reason
        assert not any(secret in exc.reason for secret in SECRETS)
        SEEN[f"webhook {delivery.adapter.name}: {exc.status}"] += 1
        return
    assert isinstance(result, AdapterResult)
    if result.events:
        assert_contract(result.events)
        for event in result.events:
            assert event["event_type"] == "deploy"
            assert event["source"] == delivery.adapter.name
            uuid.UUID(event["event_id"])
        SEEN[f"webhook {delivery.adapter.name}: events"] += 1
    else:
        assert isinstance(result.ignored, str) and result.ignored
        SEEN[f"webhook {delivery.adapter.name}: ignored"] += 1
    # The same delivery without its signature or token is always refused with 401.
    with pytest.raises(WebhookRejected) as unsigned:
        process(delivery.adapter, {}, delivery.body)
    assert unsigned.value.status == 401


@settings(FUZZ, max_examples=600)
@given(deliveries())
def test_webhook_adapters_on_signed_hostile_deliveries(delivery: Delivery) -> None:
    check_delivery(delivery)
