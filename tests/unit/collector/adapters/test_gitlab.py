"""The GitLab adapter: the token, GitLab's documented Deployment Hook payload, fuzz."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.collector.adapters import GitLabAdapter, WebhookAdapter, WebhookRejected, process
from pipeline.collector.adapters.base import AdapterResult
from pipeline.collector.adapters.gitlab import gitlab_time
from pipeline.contract.events import DeployEvent
from tests.support.webhooks import (
    DELETE,
    accepted,
    assert_contract,
    fixture,
    fixture_bytes,
    mutated,
)

TOKEN = "glwht-secret-token"
SUCCESS = "gitlab/deployment_success.json"
# The documented status_changed_at is 2021-04-28 21:50:00 +0200 (19:50 UTC).
NOW = datetime(2021, 4, 28, 20, 0, tzinfo=UTC)


def adapter(**kwargs: Any) -> GitLabAdapter:
    return GitLabAdapter(TOKEN, **kwargs)


def deliver(
    gitlab: GitLabAdapter, body: bytes | dict[str, Any], kind: str = "Deployment Hook"
) -> AdapterResult:
    """Deliver like GitLab does: the event name, the secret token, a JSON body."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "X-Gitlab-Event": kind,
        "X-Gitlab-Token": TOKEN,
        "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        "Content-Type": "application/json",
    }
    return process(gitlab, headers, raw)


def rejected(exc: pytest.ExceptionInfo[WebhookRejected], status: int) -> str:
    assert exc.value.status == status, exc.value.reason
    return exc.value.reason


# ----------------------------------------------------------------------------- token


def test_is_a_webhook_adapter() -> None:
    assert isinstance(adapter(), WebhookAdapter)
    assert adapter().name == "gitlab"


def test_valid_token_passes_and_the_header_name_is_case_insensitive() -> None:
    adapter().verify({"X-Gitlab-Token": TOKEN}, b"{}")
    adapter().verify({"x-gitlab-token": TOKEN}, b"{}")


@pytest.mark.parametrize(
    "token", ["wrong", "", TOKEN.upper(), TOKEN + " ", " " + TOKEN, TOKEN[:-1], "tökén"]
)
def test_invalid_token_is_401(token: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-Gitlab-Token": token}, b"{}")
    assert "does not match" in rejected(exc, 401)


def test_missing_token_is_401() -> None:
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-Gitlab-Event": "Deployment Hook"}, b"{}")
    assert "missing" in rejected(exc, 401)


def test_any_of_several_tokens_verifies_during_a_rotation() -> None:
    gitlab = GitLabAdapter(["next-token", TOKEN])
    gitlab.verify({"X-Gitlab-Token": TOKEN}, b"{}")
    gitlab.verify({"X-Gitlab-Token": "next-token"}, b"{}")


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError):
        GitLabAdapter("")


def test_process_verifies_before_converting() -> None:
    headers = {"X-Gitlab-Event": "Deployment Hook", "X-Gitlab-Token": "wrong"}
    with pytest.raises(WebhookRejected) as exc:
        process(adapter(), headers, fixture_bytes(SUCCESS))
    rejected(exc, 401)


# ----------------------------------------------------------------------------- mapping


def test_documented_deployment_success_becomes_a_deploy_event() -> None:
    result = deliver(adapter(teams={"root": "admins"}), fixture_bytes(SUCCESS))
    assert result.ignored is None
    [event] = result.events
    assert event["event_type"] == "deploy"
    assert event["schema_version"] == 1
    assert event["occurred_at"] == "2021-04-28T21:50:00+02:00"  # status_changed_at
    assert event["source"] == "gitlab"
    assert event["capability"] == "deploy-pipeline"
    assert event["team"] == "admins"
    assert event["service"] == "root/test-deployment-webhooks"  # project.path_with_namespace
    assert event["user"] == "root"  # user.username
    assert event["data"] == {
        "deployment_id": "15",
        "service": "root/test-deployment-webhooks",
        "environment": "staging",
        "status": "succeeded",
        "commits": [],  # short_sha and commit_url, but no commit timestamp
        "started_at": None,  # not in the payload
    }
    [decoded] = accepted(result.events, NOW)
    assert isinstance(decoded, DeployEvent)
    assert decoded.occurred_at == datetime(2021, 4, 28, 19, 50, tzinfo=UTC)


def test_without_a_team_mapping_the_service_attributes_the_event() -> None:
    [event] = deliver(adapter(), fixture_bytes(SUCCESS)).events
    assert event["team"] is None
    accepted([event], NOW)


def test_the_project_entry_wins_over_its_group_and_the_nearest_group_applies() -> None:
    body = mutated(fixture(SUCCESS), {"project.path_with_namespace": "acme/payments/ledger"})
    teams = {"acme": "platform", "acme/payments": "payments"}
    assert deliver(adapter(teams=teams), body).events[0]["team"] == "payments"
    teams["acme/payments/ledger"] = "ledger"
    assert deliver(adapter(teams=teams), body).events[0]["team"] == "ledger"
    assert deliver(adapter(teams={"acme/pay": "no"}), body).events[0]["team"] is None


def test_service_mapping_renames_the_service() -> None:
    gitlab = adapter(services={"root/test-deployment-webhooks": "webhooks-api"})
    [event] = deliver(gitlab, fixture_bytes(SUCCESS)).events
    assert event["service"] == event["data"]["service"] == "webhooks-api"


def test_a_failed_deployment_is_a_failed_deploy_with_its_own_event_id() -> None:
    body = mutated(fixture(SUCCESS), {"status": "failed"})
    [failed] = deliver(adapter(), body).events
    [succeeded] = deliver(adapter(), fixture_bytes(SUCCESS)).events
    assert failed["data"]["status"] == "failed"
    assert failed["event_id"] != succeeded["event_id"]
    accepted([failed], NOW)


@pytest.mark.parametrize("status", ["running", "created", "canceled", "blocked", "skipped"])
def test_unfinished_and_canceled_deployments_are_ignored(status: str) -> None:
    result = deliver(adapter(), mutated(fixture(SUCCESS), {"status": status}))
    assert result.events == []
    assert result.ignored is not None and status in result.ignored


def test_an_unknown_status_is_422() -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), mutated(fixture(SUCCESS), {"status": "exploded"}))
    rejected(exc, 422)


def test_a_redelivery_has_the_same_event_id() -> None:
    first = deliver(adapter(), fixture_bytes(SUCCESS))
    again = deliver(adapter(), fixture_bytes(SUCCESS))
    assert first.events == again.events
    [other] = deliver(adapter(), mutated(fixture(SUCCESS), {"deployment_id": 16})).events
    assert other["event_id"] != first.events[0]["event_id"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-04-28 21:50:00 +0200", "2021-04-28T21:50:00+02:00"),
        ("2021-04-28 19:50:00 UTC", "2021-04-28T19:50:00Z"),
        ("2021-04-28T19:50:00Z", "2021-04-28T19:50:00Z"),
        ("2021-04-28T21:50:00.5+02:00", "2021-04-28T21:50:00.500000+02:00"),
    ],
)
def test_gitlab_timestamps_are_normalised(value: str, expected: str) -> None:
    assert gitlab_time(value, "status_changed_at") == expected


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"status_changed_at": DELETE}, "status_changed_at"),
        ({"status_changed_at": "2021-04-28 21:50:00"}, "status_changed_at"),
        ({"status_changed_at": "2021-02-30 21:50:00 +0200"}, "status_changed_at"),
        ({"object_kind": "build"}, "object_kind"),
        ({"status": DELETE}, "status"),
        ({"status": 1}, "status"),
        ({"deployment_id": None}, "deployment_id"),
        ({"environment": ""}, "environment"),
        ({"project": "root/test"}, "project.path_with_namespace"),
        ({"environment": "e" * 201}, "contract rejects"),
    ],
)
def test_malformed_payloads_are_400(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), mutated(fixture(SUCCESS), changes))
    assert words in rejected(exc, 400)


@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b"[]", b"null", b'{"a": NaN}'])
def test_malformed_json_is_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), body)
    rejected(exc, 400)


@pytest.mark.parametrize("kind", ["Push Hook", "Pipeline Hook", "Job Hook", "deployment hook"])
def test_other_hooks_are_422(kind: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), fixture_bytes(SUCCESS), kind=kind)
    rejected(exc, 422)


def test_a_missing_event_header_is_400() -> None:
    with pytest.raises(WebhookRejected) as exc:
        process(adapter(), {"X-Gitlab-Token": TOKEN}, fixture_bytes(SUCCESS))
    rejected(exc, 400)


# ----------------------------------------------------------------------------- fuzz

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=30)
    | st.sampled_from(
        ["success", "failed", "running", "2021-04-28 21:50:00 +0200", "", "x" * 300, "a/b/c"]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    "object_kind",
    "status",
    "status_changed_at",
    "deployment_id",
    "environment",
    "project",
    "project.path_with_namespace",
    "user",
    "user.username",
    # Fields the adapter does not read: changing them must not matter.
    "short_sha",
    "commit_url",
    "deployable_id",
    "environment_tier",
    "project.id",
]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(raw: bytes, kind: str = "Deployment Hook") -> None:
    """Deliver; anything but a result or a WebhookRejected fails the test."""
    try:
        result = deliver(adapter(teams={"a": "team-a"}), raw, kind=kind)
    except WebhookRejected as exc:
        assert exc.status in (400, 422)
        event(f"rejected {exc.status}")
        return
    assert_contract(result.events)
    assert bool(result.events) != bool(result.ignored)
    event("events" if result.events else "ignored")


@FUZZ
@given(raw=st.binary(max_size=200), kind=st.sampled_from(["Deployment Hook", "Push Hook", ""]))
def test_fuzz_random_bytes_never_raise_anything_but_rejections(raw: bytes, kind: str) -> None:
    outcome(raw, kind)


@FUZZ
@given(value=JSON)
def test_fuzz_random_json_never_raises_anything_but_rejections(value: Any) -> None:
    outcome(json.dumps(value).encode())


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(PATHS), JSON | st.just(DELETE), max_size=2))
def test_fuzz_mutated_documented_payload_gives_contract_events_or_rejections(
    changes: dict[str, Any],
) -> None:
    outcome(json.dumps(mutated(fixture(SUCCESS), changes)).encode())


@FUZZ
@given(token=st.text(max_size=40).filter(lambda t: t != TOKEN))
def test_fuzz_random_tokens_are_401(token: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"X-Gitlab-Token": token}, b"{}")
    rejected(exc, 401)
