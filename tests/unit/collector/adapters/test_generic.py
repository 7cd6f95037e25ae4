"""The generic deploy webhook: bearer token and HMAC auth, the documented body, fuzz.

Also the package-level pieces the collector uses: `process`, `routes`, the protocol.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.collector.adapters import (
    GenericAdapter,
    GitHubAdapter,
    GitLabAdapter,
    WebhookAdapter,
    WebhookRejected,
    process,
    routes,
)
from pipeline.collector.adapters.base import AdapterResult
from pipeline.collector.adapters.generic import SIGNATURE_HEADER
from pipeline.contract.events import DeployEvent
from tests.support.webhooks import DELETE, accepted, assert_contract, mutated, sign

TOKEN = "argo-notifications-token"
SECRET = "jenkins-hmac-secret"
NOW = datetime(2025, 6, 1, 14, 10, tzinfo=UTC)
BODY: dict[str, Any] = {
    "deployment_id": "checkout-api-2025-06-01-3",
    "service": "checkout-api",
    "environment": "production",
    "status": "succeeded",
    "commits": [
        {"sha": "9fceb02d0ae598e95dc970b74767f19372d61af8", "committed_at": "2025-05-31T16:20:11Z"},
        {"sha": "e83c516", "committed_at": "2025-06-01T08:47:53+01:00"},
    ],
    "finished_at": "2025-06-01T14:05:31Z",
    "started_at": "2025-06-01T13:58:02Z",
    "team": "checkout",
    "user": "checkout.eng1",
    "app": {"ignored": "unknown fields are ignored"},
}


def adapter(**kwargs: Any) -> GenericAdapter:
    kwargs.setdefault("token", TOKEN)
    return GenericAdapter(**kwargs)


def deliver(generic: GenericAdapter, body: bytes | dict[str, Any]) -> AdapterResult:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return process(generic, {"Authorization": f"Bearer {TOKEN}"}, raw)


def rejected(exc: pytest.ExceptionInfo[WebhookRejected], status: int) -> str:
    assert exc.value.status == status, exc.value.reason
    return exc.value.reason


# ----------------------------------------------------------------------------- auth


def test_a_bearer_token_or_a_secret_is_required() -> None:
    with pytest.raises(ValueError):
        GenericAdapter()
    with pytest.raises(ValueError):
        GenericAdapter(token="")
    assert isinstance(GenericAdapter(secret=SECRET), WebhookAdapter)


@pytest.mark.parametrize("value", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  Bearer   {TOKEN} "])
def test_valid_bearer_token_passes(value: str) -> None:
    adapter().verify({"authorization": value}, b"{}")


@pytest.mark.parametrize(
    "value", ["Bearer wrong", f"Basic {TOKEN}", TOKEN, "Bearer", "", f"Bearer {TOKEN}x", "Bearer é"]
)
def test_invalid_bearer_token_is_401(value: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({"Authorization": value}, b"{}")
    assert "does not match" in rejected(exc, 401)


def test_missing_bearer_token_is_401() -> None:
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({}, b"{}")
    assert "missing" in rejected(exc, 401)


def test_valid_hmac_signature_passes() -> None:
    body = json.dumps(BODY).encode()
    GenericAdapter(secret=SECRET).verify({SIGNATURE_HEADER: sign(body, SECRET)}, body)


@pytest.mark.parametrize(
    ("signature", "words"),
    [
        (None, "missing"),
        ("sha256=" + "0" * 64, "does not match"),
        ("{hex}", "does not start with"),
        ("sha1={hex}", "does not start with"),
    ],
)
def test_invalid_hmac_signature_is_401(signature: str | None, words: str) -> None:
    body = json.dumps(BODY).encode()
    digest = sign(body, SECRET).removeprefix("sha256=")
    headers = {} if signature is None else {SIGNATURE_HEADER: signature.format(hex=digest)}
    with pytest.raises(WebhookRejected) as exc:
        GenericAdapter(secret=SECRET).verify(headers, body)
    assert words in rejected(exc, 401)


def test_a_signature_of_another_body_is_401() -> None:
    body = json.dumps(BODY).encode()
    with pytest.raises(WebhookRejected) as exc:
        GenericAdapter(secret=SECRET).verify({SIGNATURE_HEADER: sign(body, SECRET)}, body + b" ")
    rejected(exc, 401)


@pytest.mark.parametrize(
    ("headers", "missing"),
    [
        ({SIGNATURE_HEADER: "valid"}, "bearer token missing"),
        ({"Authorization": f"Bearer {TOKEN}"}, f"{SIGNATURE_HEADER} missing"),
        ({SIGNATURE_HEADER: "valid", "Authorization": "Bearer nope"}, "does not match"),
        ({SIGNATURE_HEADER: "sha256=" + "0" * 64, "Authorization": f"Bearer {TOKEN}"}, "match"),
    ],
)
def test_with_both_configured_both_are_required(headers: dict[str, str], missing: str) -> None:
    """A leaked token alone (or a leaked secret alone) cannot forge a delivery."""
    body = json.dumps(BODY).encode()
    both = GenericAdapter(token=TOKEN, secret=SECRET)
    if headers.get(SIGNATURE_HEADER) == "valid":
        headers = {**headers, SIGNATURE_HEADER: sign(body, SECRET)}
    with pytest.raises(WebhookRejected) as exc:
        both.verify(headers, body)
    reason = rejected(exc, 401)
    assert missing in reason and "needs both X-Uptake-Signature-256 and a bearer token" in reason
    # The control: with both valid the same delivery is accepted.
    both.verify({SIGNATURE_HEADER: sign(body, SECRET), "Authorization": f"Bearer {TOKEN}"}, body)


def test_a_token_alone_does_not_accept_signatures() -> None:
    body = b"{}"
    with pytest.raises(WebhookRejected) as exc:
        adapter().verify({SIGNATURE_HEADER: sign(body, SECRET)}, body)
    rejected(exc, 401)


# ----------------------------------------------------------------------------- mapping


def test_the_documented_body_becomes_a_deploy_event() -> None:
    result = deliver(adapter(name="argo-cd"), BODY)
    assert result.ignored is None
    [event] = result.events
    assert event["occurred_at"] == "2025-06-01T14:05:31Z"  # finished_at
    assert event["source"] == "argo-cd"
    assert event["capability"] == "deploy-pipeline"
    assert event["team"] == "checkout"
    assert event["service"] == "checkout-api"
    assert event["user"] == "checkout.eng1"
    assert event["data"] == {
        "deployment_id": "checkout-api-2025-06-01-3",
        "service": "checkout-api",
        "environment": "production",
        "status": "succeeded",
        "commits": [
            {
                "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                "committed_at": "2025-05-31T16:20:11Z",
            },
            {"sha": "e83c516", "committed_at": "2025-06-01T08:47:53+01:00"},
        ],
        "started_at": "2025-06-01T13:58:02Z",
    }
    [decoded] = accepted(result.events, NOW)
    assert isinstance(decoded, DeployEvent)
    assert len(decoded.data.commits) == 2


def test_the_minimal_body_with_an_integer_id_and_a_team_mapping() -> None:
    body = {
        "deployment_id": 1234,  # e.g. a Jenkins BUILD_NUMBER
        "service": "checkout-api",
        "environment": "staging",
        "status": "rolled_back",
        "finished_at": "2025-06-01T16:05:31+02:00",
    }
    [event] = deliver(adapter(teams={"checkout-api": "checkout"}), body).events
    assert event["team"] == "checkout"
    assert event["user"] is None
    assert event["data"]["deployment_id"] == "1234"
    assert event["data"]["status"] == "rolled_back"
    assert event["data"]["commits"] == []
    assert event["data"]["started_at"] is None
    accepted([event], NOW)


def test_the_body_team_wins_over_the_mapping_and_no_team_is_fine() -> None:
    [event] = deliver(adapter(teams={"checkout-api": "mapped"}), BODY).events
    assert event["team"] == "checkout"
    [event] = deliver(adapter(), mutated(BODY, {"team": DELETE})).events
    assert event["team"] is None
    accepted([event], NOW)


@pytest.mark.parametrize("status", ["failed", "rolled_back"])
def test_failed_and_rolled_back(status: str) -> None:
    [event] = deliver(adapter(), mutated(BODY, {"status": status})).events
    assert event["data"]["status"] == status


@pytest.mark.parametrize("status", ["started", "running", "pending", "queued", "in_progress"])
def test_unfinished_deployments_are_ignored(status: str) -> None:
    result = deliver(adapter(), mutated(BODY, {"status": status}))
    assert result.events == []
    assert result.ignored is not None and status in result.ignored


@pytest.mark.parametrize("status", ["success", "Succeeded", "deployed"])
def test_other_statuses_are_422(status: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), mutated(BODY, {"status": status}))
    assert "succeeded" in rejected(exc, 422)


def test_a_redelivery_has_the_same_event_id_and_another_environment_does_not() -> None:
    [first] = deliver(adapter(), BODY).events
    [again] = deliver(adapter(), BODY).events
    [staging] = deliver(adapter(), mutated(BODY, {"environment": "staging"})).events
    [failed] = deliver(adapter(), mutated(BODY, {"status": "failed"})).events
    [jenkins] = deliver(adapter(name="jenkins"), BODY).events
    assert first["event_id"] == again["event_id"]
    assert (
        len({first["event_id"], staging["event_id"], failed["event_id"], jenkins["event_id"]}) == 4
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"deployment_id": DELETE}, "deployment_id"),
        ({"deployment_id": ""}, "deployment_id"),
        ({"deployment_id": 1.5}, "deployment_id"),
        ({"service": None}, "service"),
        ({"service": "s" * 201}, "service"),
        ({"environment": DELETE}, "environment"),
        ({"status": DELETE}, "status"),
        ({"finished_at": DELETE}, "finished_at"),
        ({"finished_at": "2025-06-01T14:05:31"}, "finished_at"),
        ({"finished_at": "2025-02-30T14:05:31Z"}, "finished_at"),
        ({"commits": None}, "commits"),
        ({"commits": [{"sha": "not-hex!", "committed_at": "2025-05-31T16:20:11Z"}]}, "sha"),
        ({"commits": [{"sha": "abc", "committed_at": "2025-05-31T16:20:11Z"}]}, "sha"),
        ({"commits": [{"sha": "9fceb02"}]}, "committed_at"),
        ({"team": 7}, "team"),
        ({"user": "u" * 201}, "user"),
    ],
)
def test_malformed_bodies_are_400(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), mutated(BODY, changes))
    assert words in rejected(exc, 400)


@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b"[]", b"null", b"[" * 5000])
def test_malformed_json_is_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as exc:
        deliver(adapter(), body)
    rejected(exc, 400)


# ----------------------------------------------------------------------------- package


def test_routes_mount_each_adapter_under_its_name() -> None:
    github, gitlab = GitHubAdapter("s"), GitLabAdapter("t")
    argo, jenkins = adapter(name="argo-cd"), adapter(name="jenkins")
    table = routes([github, gitlab, argo, jenkins])
    assert table == {
        "/v1/webhooks/github": github,
        "/v1/webhooks/gitlab": gitlab,
        "/v1/webhooks/argo-cd": argo,
        "/v1/webhooks/jenkins": jenkins,
    }


@pytest.mark.parametrize("names", [["generic", "generic"], ["a/b"], [""]])
def test_routes_refuse_clashing_or_unusable_names(names: list[str]) -> None:
    with pytest.raises(ValueError):
        routes([adapter(name=name) for name in names])


# ----------------------------------------------------------------------------- fuzz

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(min_size=1, max_size=12) | st.sampled_from(["", " ", "x" * 201, "ü" * 200])
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5.5))])
# st.timezones() adds historical zones whose offsets have seconds: not RFC 3339, so rejected.
TIMES = st.datetimes(timezones=ZONES | st.timezones()).map(datetime.isoformat) | st.sampled_from(
    ["", "2025-06-01", "2025-06-01T14:05:31", "2025-06-01 14:05:31Z", "2025-06-01T14:05:31+0200"]
)
SHAS = st.text(alphabet="0123456789abcdef", min_size=7, max_size=64) | st.text(max_size=70)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


def outcome(raw: bytes) -> None:
    """Deliver; anything but a result or a WebhookRejected fails the test."""
    try:
        result = deliver(adapter(teams={"svc": "team"}), raw)
    except WebhookRejected as exc:
        assert exc.status in (400, 422)
        event(f"rejected {exc.status}")
        return
    assert_contract(result.events)
    assert bool(result.events) != bool(result.ignored)
    event("events" if result.events else "ignored")


@FUZZ
@given(raw=st.binary(max_size=200))
def test_fuzz_random_bytes_never_raise_anything_but_rejections(raw: bytes) -> None:
    outcome(raw)


@FUZZ
@given(value=JSON)
def test_fuzz_random_json_never_raises_anything_but_rejections(value: Any) -> None:
    outcome(json.dumps(value).encode())


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {
            "deployment_id": TEXT | st.integers(),
            "service": TEXT,
            "environment": TEXT,
            "status": st.sampled_from(["succeeded", "failed", "rolled_back", "running", "ok"]),
            "finished_at": TIMES,
        },
        optional={
            "commits": st.lists(
                st.fixed_dictionaries({"sha": SHAS, "committed_at": TIMES}), max_size=3
            ),
            "started_at": TIMES | st.none(),
            "team": TEXT | st.none(),
            "user": TEXT | st.none(),
        },
    )
)
def test_fuzz_shaped_bodies_give_contract_events_or_rejections(body: dict[str, Any]) -> None:
    outcome(json.dumps(body).encode())


@FUZZ
@given(authorization=st.text(max_size=60), signature=st.text(max_size=80))
def test_fuzz_random_credentials_are_401(authorization: str, signature: str) -> None:
    headers = {"Authorization": authorization, SIGNATURE_HEADER: signature}
    with pytest.raises(WebhookRejected) as exc:
        GenericAdapter(token=TOKEN, secret=SECRET).verify(headers, b"{}")
    rejected(exc, 401)
