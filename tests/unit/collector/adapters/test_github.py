"""The GitHub adapter: signatures, real deployment_status / workflow_run / ping payloads, fuzz."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.collector.adapters import GitHubAdapter, WebhookAdapter, WebhookRejected, process
from pipeline.collector.adapters.base import AdapterResult
from pipeline.contract.events import DeployEvent
from tests.support.webhooks import (
    DELETE,
    accepted,
    assert_contract,
    fixture,
    fixture_bytes,
    mutated,
    sign,
)

SECRET = "It's a Secret to Everybody"
SUCCESS = "github/deployment_status_success.json"
IN_PROGRESS = "github/deployment_status_in_progress.json"
GHES_SUCCESS = "github/ghes-35_deployment_status_success.json"
RUN_SUCCESS = "github/workflow_run_completed_success.json"
RUN_QUEUED = "github/workflow_run_completed_queued.json"
RUN_REQUESTED = "github/workflow_run_requested.json"
PING = "github/ping.json"
# Shortly after the fixtures' own timestamps, so the worker's clock rules do not fire.
NOW_2019 = datetime(2019, 5, 15, 20, 0, tzinfo=UTC)
NOW_2020 = datetime(2020, 10, 5, 17, 0, tzinfo=UTC)
DEPLOY_WORKFLOW = {"octo-org/octo-repo:.github/workflows/test.yml": "production"}


def adapter(**kwargs: Any) -> GitHubAdapter:
    return GitHubAdapter(SECRET, **kwargs)


def deliver(
    github: GitHubAdapter,
    kind: str,
    body: bytes | dict[str, Any],
    delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
) -> AdapterResult:
    """Deliver like GitHub does: the event name, a delivery id and the body's signature."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "X-GitHub-Event": kind,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(raw, SECRET),
        "Content-Type": "application/json",
    }
    return process(github, headers, raw)


def rejected(exc: pytest.ExceptionInfo[WebhookRejected], status: int) -> str:
    assert exc.value.status == status, exc.value.reason
    return exc.value.reason


# ----------------------------------------------------------------------------- signature


def test_is_a_webhook_adapter() -> None:
    assert isinstance(adapter(), WebhookAdapter)
    assert adapter().name == "github"


def test_valid_signature_passes() -> None:
    body = fixture_bytes(SUCCESS)
    adapter().verify({"X-Hub-Signature-256": sign(body, SECRET)}, body)


def test_signature_header_name_is_case_insensitive_and_hex_case_and_spaces_are_tolerated() -> None:
    body = fixture_bytes(SUCCESS)
    signature = "sha256=" + sign(body, SECRET).removeprefix("sha256=").upper()
    adapter().verify({"x-hub-signature-256": f" {signature} "}, body)


def test_signature_with_the_wrong_secret_is_401() -> None:
    body = fixture_bytes(SUCCESS)
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-Hub-Signature-256": sign(body, "not the secret")}, body)
    assert "does not match" in rejected(exc, 401)


def test_signature_of_another_body_is_401() -> None:
    body = fixture_bytes(SUCCESS)
    tampered = body.replace(b'"success"', b'"failure"', 1)
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-Hub-Signature-256": sign(body, SECRET)}, tampered)
    rejected(exc, 401)


def test_missing_signature_is_401() -> None:
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-GitHub-Event": "ping"}, b"{}")
    assert "missing" in rejected(exc, 401)


@pytest.mark.parametrize(
    "signature",
    [
        "sha1=" + "0" * 40,  # the legacy X-Hub-Signature form
        "{hex}",  # the digest without its prefix
        "sha512={hex}",
        "",
        "sha256=",
        "sha256=zz" + "0" * 62,
        "sha256=é" + "0" * 63,  # not ASCII: must not break compare_digest
    ],
)
def test_malformed_signatures_are_401(signature: str) -> None:
    body = b'{"zen": "Design for failure."}'
    digest = sign(body, SECRET).removeprefix("sha256=")
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-Hub-Signature-256": signature.format(hex=digest)}, body)
    rejected(exc, 401)


def test_any_of_several_secrets_verifies_during_a_rotation() -> None:
    body = b"{}"
    github = GitHubAdapter(["new secret", SECRET])
    github.verify({"X-Hub-Signature-256": sign(body, SECRET)}, body)
    github.verify({"X-Hub-Signature-256": sign(body, "new secret")}, body)


@pytest.mark.parametrize("secret", ["", [], [SECRET, ""]])
def test_an_empty_secret_is_refused(secret: Any) -> None:
    with pytest.raises(ValueError):
        GitHubAdapter(secret)


def test_process_verifies_before_converting() -> None:
    with pytest.raises(WebhookRejected) as exc:
        process(adapter(), {"X-GitHub-Event": "ping"}, fixture_bytes(PING))
    rejected(exc, 401)


# ----------------------------------------------------------------------------- deployment_status


def test_real_deployment_status_success_becomes_a_deploy_event() -> None:
    github = adapter(teams={"Codertocat/Hello-World": "octo-team"})
    result = deliver(github, "deployment_status", fixture_bytes(SUCCESS))
    assert result.ignored is None
    [event] = result.events
    assert event["event_type"] == "deploy"
    assert event["schema_version"] == 1
    assert event["occurred_at"] == "2019-05-15T15:20:55Z"  # deployment_status.updated_at
    assert event["source"] == "github"
    assert event["capability"] == "deploy-pipeline"
    assert event["team"] == "octo-team"
    assert event["service"] == "Hello-World"
    assert event["user"] == "Codertocat"  # deployment.creator.login
    assert event["data"] == {
        "deployment_id": "145988746",
        "service": "Hello-World",
        "environment": "production",
        "status": "succeeded",
        "commits": [],  # the payload has deployment.sha but no commit timestamp
        "started_at": "2019-05-15T15:20:53Z",  # deployment.created_at
    }
    [decoded] = accepted(result.events, NOW_2019)
    assert isinstance(decoded, DeployEvent)
    assert str(decoded.event_id) == event["event_id"]
    assert decoded.data.status == "succeeded"


def test_real_github_enterprise_payload_without_action_maps_too() -> None:
    result = deliver(adapter(), "deployment_status", fixture_bytes(GHES_SUCCESS))
    [event] = result.events
    assert event["data"]["deployment_id"] == "2"
    assert event["data"]["environment"] == "production"
    assert event["occurred_at"] == "2019-05-15T19:38:21Z"
    assert event["team"] is None and event["service"] == "Hello-World"
    accepted(result.events, NOW_2019)


def test_without_a_team_mapping_the_service_attributes_the_event() -> None:
    [event] = deliver(adapter(), "deployment_status", fixture_bytes(SUCCESS)).events
    assert event["team"] is None
    assert event["service"] == "Hello-World"
    accepted([event], NOW_2019)


def test_team_of_the_owner_applies_and_the_repository_entry_wins() -> None:
    body = fixture_bytes(SUCCESS)
    owner = adapter(teams={"Codertocat": "owner-team"})
    assert deliver(owner, "deployment_status", body).events[0]["team"] == "owner-team"
    both = adapter(teams={"Codertocat": "owner-team", "Codertocat/Hello-World": "repo-team"})
    assert deliver(both, "deployment_status", body).events[0]["team"] == "repo-team"


def test_service_mapping_renames_the_service() -> None:
    github = adapter(services={"Codertocat/Hello-World": "hello-api"})
    [event] = deliver(github, "deployment_status", fixture_bytes(SUCCESS)).events
    assert event["service"] == event["data"]["service"] == "hello-api"


@pytest.mark.parametrize(("state", "status"), [("failure", "failed"), ("error", "failed")])
def test_failure_and_error_states_are_failed_deploys(state: str, status: str) -> None:
    # The examples package has no failure example: the real success payload, state changed.
    body = mutated(fixture(SUCCESS), {"deployment_status.state": state})
    [event] = deliver(adapter(), "deployment_status", body).events
    assert event["data"]["status"] == status
    accepted([event], NOW_2019)


def test_real_in_progress_payload_is_ignored_with_an_explanation() -> None:
    result = deliver(adapter(), "deployment_status", fixture_bytes(IN_PROGRESS))
    assert result.events == []
    assert result.ignored is not None and "in_progress" in result.ignored


@pytest.mark.parametrize("state", ["pending", "queued", "in_progress", "inactive", "waiting"])
def test_unfinished_and_inactive_states_are_ignored(state: str) -> None:
    body = mutated(fixture(SUCCESS), {"deployment_status.state": state})
    result = deliver(adapter(), "deployment_status", body)
    assert result.events == []
    assert result.ignored is not None and state in result.ignored


def test_an_unknown_state_is_422() -> None:
    body = mutated(fixture(SUCCESS), {"deployment_status.state": "exploded"})
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), "deployment_status", body)
    assert "exploded" in rejected(exc, 422)


def test_a_redelivery_has_the_same_event_id() -> None:
    body = fixture_bytes(SUCCESS)
    first = deliver(adapter(), "deployment_status", body, delivery="aaaa")
    again = deliver(adapter(), "deployment_status", body, delivery="bbbb")
    assert first.events[0]["event_id"] == again.events[0]["event_id"]
    # ... and so has the same status delivered to a second hook (org and repo hooks).
    assert first.events == again.events


def test_another_status_or_another_adapter_name_gives_another_event_id() -> None:
    body = fixture(SUCCESS)
    [base] = deliver(adapter(), "deployment_status", body).events
    other_status = mutated(body, {"deployment_status.id": 209916255})
    [other] = deliver(adapter(), "deployment_status", other_status).events
    [enterprise] = deliver(adapter(name="github-enterprise"), "deployment_status", body).events
    assert len({base["event_id"], other["event_id"], enterprise["event_id"]}) == 3
    assert enterprise["source"] == "github-enterprise"


def test_occurred_at_falls_back_to_created_at_and_keeps_the_offset() -> None:
    body = mutated(
        fixture(SUCCESS),
        {
            "deployment_status.updated_at": DELETE,
            "deployment_status.created_at": "2019-05-15T17:20:55+02:00",
        },
    )
    [event] = deliver(adapter(), "deployment_status", body).events
    assert event["occurred_at"] == "2019-05-15T17:20:55+02:00"
    accepted([event], NOW_2019)


def test_environment_falls_back_to_the_status_environment() -> None:
    body = mutated(
        fixture(SUCCESS),
        {"deployment.environment": DELETE, "deployment_status.environment": "staging"},
    )
    [event] = deliver(adapter(), "deployment_status", body).events
    assert event["data"]["environment"] == "staging"


def test_user_falls_back_to_the_sender_and_may_be_absent() -> None:
    body = mutated(fixture(SUCCESS), {"deployment.creator": None, "sender.login": "octobot"})
    assert deliver(adapter(), "deployment_status", body).events[0]["user"] == "octobot"
    body = mutated(body, {"sender": DELETE})
    assert deliver(adapter(), "deployment_status", body).events[0]["user"] is None


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"deployment_status.state": DELETE}, "deployment_status.state"),
        ({"deployment_status": []}, "deployment_status.state"),
        ({"deployment.id": None}, "deployment.id"),
        ({"deployment.id": True}, "deployment.id"),
        ({"repository": DELETE}, "repository.full_name"),
        (
            {"deployment_status.updated_at": DELETE, "deployment_status.created_at": DELETE},
            "timestamp is required",
        ),
        ({"deployment_status.updated_at": "2019-05-15T15:20:55"}, "RFC 3339"),
        ({"deployment_status.updated_at": "yesterday"}, "RFC 3339"),
        ({"deployment_status.updated_at": 1557933655}, "timestamp string"),
        ({"deployment.environment": "p" * 201}, "contract rejects"),
        ({"deployment.environment": "", "deployment_status.environment": None}, "environment"),
    ],
)
def test_malformed_deployment_status_payloads_are_400(changes: dict[str, Any], words: str) -> None:
    body = mutated(fixture(SUCCESS), changes)
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), "deployment_status", body)
    assert words in rejected(exc, 400)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"\xff\xfe{}", b"[]", b'"a string"', b"null", b"1e400", b"[" * 5000],
)
def test_malformed_json_is_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), "deployment_status", body)
    rejected(exc, 400)


# ----------------------------------------------------------------------------- workflow_run


def test_a_ci_workflow_run_is_ignored_because_contract_v1_has_no_ci_type() -> None:
    result = deliver(adapter(), "workflow_run", fixture_bytes(RUN_SUCCESS))
    assert result.events == []
    assert result.ignored is not None
    assert "not a configured deploy workflow" in result.ignored
    assert "CI runs have no event type" in result.ignored


def test_a_completed_deploy_workflow_run_becomes_a_deploy_event_with_its_commit() -> None:
    github = adapter(deploy_workflows=DEPLOY_WORKFLOW, teams={"octo-org": "octo"})
    result = deliver(github, "workflow_run", fixture_bytes(RUN_SUCCESS))
    [event] = result.events
    assert event["occurred_at"] == "2020-10-05T16:33:49Z"  # workflow_run.updated_at
    assert event["team"] == "octo"
    assert event["service"] == "octo-repo"
    assert event["user"] == "Codertocat"  # workflow_run.triggering_actor.login
    assert event["data"] == {
        "deployment_id": "289782451-1",  # run id - run attempt
        "service": "octo-repo",
        "environment": "production",
        "status": "succeeded",
        "commits": [
            {
                "sha": "3484a3fb816e0859fd6e1cea078d76385ff50625",
                "committed_at": "2020-10-05T16:32:07Z",  # head_commit.timestamp
            }
        ],
        "started_at": "2020-10-05T16:33:49Z",
    }
    [decoded] = accepted(result.events, NOW_2020)
    assert isinstance(decoded, DeployEvent)
    assert decoded.data.commits[0].sha == "3484a3fb816e0859fd6e1cea078d76385ff50625"


def test_a_deploy_workflow_can_be_configured_by_path_for_every_repository() -> None:
    github = adapter(deploy_workflows={".github/workflows/test.yml": "staging"})
    [event] = deliver(github, "workflow_run", fixture_bytes(RUN_SUCCESS)).events
    assert event["data"]["environment"] == "staging"
    scoped = adapter(deploy_workflows={".github/workflows/test.yml": "staging", **DEPLOY_WORKFLOW})
    [event] = deliver(scoped, "workflow_run", fixture_bytes(RUN_SUCCESS)).events
    assert event["data"]["environment"] == "production"  # the repository's entry wins


def test_a_deploy_workflow_of_another_repository_does_not_match() -> None:
    github = adapter(deploy_workflows={"octo-org/other:.github/workflows/test.yml": "production"})
    assert deliver(github, "workflow_run", fixture_bytes(RUN_SUCCESS)).events == []


def test_a_reusable_workflow_path_with_a_ref_matches() -> None:
    body = mutated(
        fixture(RUN_SUCCESS), {"workflow_run.path": ".github/workflows/test.yml@refs/heads/main"}
    )
    github = adapter(deploy_workflows=DEPLOY_WORKFLOW)
    assert len(deliver(github, "workflow_run", body).events) == 1


def test_real_requested_run_of_a_deploy_workflow_is_ignored() -> None:
    github = adapter(deploy_workflows=DEPLOY_WORKFLOW)
    result = deliver(github, "workflow_run", fixture_bytes(RUN_REQUESTED))
    assert result.events == []
    assert result.ignored is not None and "requested" in result.ignored


def test_real_completed_run_without_a_conclusion_is_ignored() -> None:
    # The examples' "completed" action with status queued and conclusion null.
    github = adapter(deploy_workflows={".github/workflows/syntax.yml": "production"})
    result = deliver(github, "workflow_run", fixture_bytes(RUN_QUEUED))
    assert result.events == []
    assert result.ignored is not None and "without a conclusion" in result.ignored


@pytest.mark.parametrize(
    ("conclusion", "status"),
    [("failure", "failed"), ("timed_out", "failed"), ("startup_failure", "failed")],
)
def test_failed_deploy_workflow_runs_are_failed_deploys(conclusion: str, status: str) -> None:
    body = mutated(fixture(RUN_SUCCESS), {"workflow_run.conclusion": conclusion})
    [event] = deliver(adapter(deploy_workflows=DEPLOY_WORKFLOW), "workflow_run", body).events
    assert event["data"]["status"] == status
    accepted([event], NOW_2020)


@pytest.mark.parametrize("conclusion", ["cancelled", "skipped", "neutral", "action_required"])
def test_deploy_workflow_runs_that_did_not_deploy_are_ignored(conclusion: str) -> None:
    body = mutated(fixture(RUN_SUCCESS), {"workflow_run.conclusion": conclusion})
    result = deliver(adapter(deploy_workflows=DEPLOY_WORKFLOW), "workflow_run", body)
    assert result.events == []
    assert result.ignored is not None and conclusion in result.ignored


def test_an_unknown_conclusion_is_422() -> None:
    body = mutated(fixture(RUN_SUCCESS), {"workflow_run.conclusion": "meh"})
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(deploy_workflows=DEPLOY_WORKFLOW), "workflow_run", body)
    rejected(exc, 422)


def test_a_rerun_is_another_deploy_and_a_redelivery_is_not() -> None:
    github = adapter(deploy_workflows=DEPLOY_WORKFLOW)
    body = fixture(RUN_SUCCESS)
    [first] = deliver(github, "workflow_run", body, delivery="one").events
    [again] = deliver(github, "workflow_run", body, delivery="two").events
    rerun_body = mutated(body, {"workflow_run.run_attempt": 2})
    [rerun] = deliver(github, "workflow_run", rerun_body).events
    assert first["event_id"] == again["event_id"]
    assert rerun["event_id"] != first["event_id"]
    assert rerun["data"]["deployment_id"] == "289782451-2"


def test_a_head_commit_without_a_timestamp_gives_no_commit() -> None:
    body = mutated(fixture(RUN_SUCCESS), {"workflow_run.head_commit": None})
    [event] = deliver(adapter(deploy_workflows=DEPLOY_WORKFLOW), "workflow_run", body).events
    assert event["data"]["commits"] == []


# ----------------------------------------------------------------------------- other events


def test_real_ping_is_ignored() -> None:
    result = deliver(adapter(), "ping", fixture_bytes(PING))
    assert result.events == []
    assert result.ignored is not None and "ping" in result.ignored


def test_a_deployment_creation_is_ignored() -> None:
    result = deliver(adapter(), "deployment", fixture_bytes(SUCCESS))
    assert result.events == [] and result.ignored


@pytest.mark.parametrize("kind", ["push", "issues", "check_run", "Deployment_Status"])
def test_other_events_are_422(kind: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), kind, fixture_bytes(SUCCESS))
    assert kind in rejected(exc, 422)


def test_a_missing_event_header_is_400() -> None:
    body = fixture_bytes(PING)
    with pytest.raises(WebhookRejected) as exc:
        process(adapter(), {"X-Hub-Signature-256": sign(body, SECRET)}, body)
    rejected(exc, 400)


# ----------------------------------------------------------------------------- fuzz

KINDS = st.sampled_from(["deployment_status", "workflow_run", "ping", "deployment", "push", ""])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "success",
            "failure",
            "completed",
            "2019-05-15T15:20:55Z",
            "2019-05-15T15:20:55",
            "0001-01-01T00:00:00+23:59",
            "",
            "x" * 300,
            ".github/workflows/test.yml",
            "3484a3fb816e0859fd6e1cea078d76385ff50625",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    "action",
    "deployment_status",
    "deployment_status.state",
    "deployment_status.id",
    "deployment_status.updated_at",
    "deployment_status.created_at",
    "deployment_status.environment",
    "deployment",
    "deployment.id",
    "deployment.environment",
    "deployment.created_at",
    "deployment.creator",
    "deployment.creator.login",
    "repository",
    "repository.full_name",
    "repository.name",
    "sender",
    "workflow.path",
    "workflow_run",
    "workflow_run.id",
    "workflow_run.path",
    "workflow_run.conclusion",
    "workflow_run.run_attempt",
    "workflow_run.updated_at",
    "workflow_run.run_started_at",
    "workflow_run.head_sha",
    "workflow_run.head_commit",
    "workflow_run.head_commit.timestamp",
    "workflow_run.triggering_actor",
]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_ADAPTER = adapter(deploy_workflows=DEPLOY_WORKFLOW, teams={"octo-org": "octo"})


def outcome(kind: str, raw: bytes) -> AdapterResult | None:
    """Deliver; None for a rejection. Anything but WebhookRejected fails the test."""
    try:
        result = deliver(FUZZ_ADAPTER, kind, raw)
    except WebhookRejected as exc:
        assert exc.status in (400, 422)
        event(f"rejected {exc.status}")
        return None
    assert_contract(result.events)
    assert bool(result.events) != bool(result.ignored)
    event("events" if result.events else "ignored")
    return result


@FUZZ
@given(kind=KINDS, raw=st.binary(max_size=200))
def test_fuzz_random_bytes_never_raise_anything_but_rejections(kind: str, raw: bytes) -> None:
    outcome(kind, raw)


@FUZZ
@given(kind=KINDS, value=JSON)
def test_fuzz_random_json_never_raises_anything_but_rejections(kind: str, value: Any) -> None:
    outcome(kind, json.dumps(value).encode())


@FUZZ
@given(
    name=st.sampled_from([SUCCESS, GHES_SUCCESS, RUN_SUCCESS, RUN_REQUESTED, RUN_QUEUED]),
    changes=st.dictionaries(st.sampled_from(PATHS), JSON | st.just(DELETE), max_size=4),
)
def test_fuzz_mutated_real_payloads_give_contract_events_or_rejections(
    name: str, changes: dict[str, Any]
) -> None:
    kind = "workflow_run" if "workflow_run" in name else "deployment_status"
    outcome(kind, json.dumps(mutated(fixture(name), changes)).encode())


@FUZZ
@given(signature=st.text(max_size=80), raw=st.binary(max_size=50))
def test_fuzz_random_signatures_are_401(signature: str, raw: bytes) -> None:
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-Hub-Signature-256": signature}, raw)
    rejected(exc, 401)
