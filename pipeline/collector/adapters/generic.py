"""A generic deploy webhook for CD tools without a dedicated adapter (Argo CD, Spinnaker, Jenkins).

The tool sends one small JSON object when a deployment ends; its fields, and the statuses that
are accepted and ignored (a deployment not ended yet), are in docs/webhooks.md, "Generic deploy
webhook". Authenticated by a bearer token, an HMAC-SHA256 signature of the raw body
(`X-Uptake-Signature-256`), or both: every one configured must be present and valid. A delivery
may name itself in `X-Uptake-Delivery` for replay protection. Pure: never blocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from pipeline.collector.adapters.base import (
    AdapterResult,
    WebhookRejected,
    deploy_event,
    event_id,
    header,
    hmac_sha256_matches,
    secrets_of,
    token_matches,
)
from pipeline.contract.events import Commit

SIGNATURE_HEADER = "X-Uptake-Signature-256"
DELIVERY_HEADER = "X-Uptake-Delivery"
FINAL_STATUSES = frozenset({"succeeded", "failed", "rolled_back"})
RUNNING_STATUSES = frozenset({"started", "running", "pending", "queued", "in_progress"})

_Name = Annotated[str, Meta(min_length=1, max_length=200)]
_OptionalName = Annotated[str, Meta(max_length=200)] | None
_UtcTime = Annotated[datetime, Meta(tz=True)]


class GenericDeploy(msgspec.Struct, kw_only=True, frozen=True):
    """The documented body of a generic deploy webhook."""

    deployment_id: _Name | int
    service: _Name
    environment: _Name
    status: _Name
    finished_at: _UtcTime
    commits: list[Commit] = []
    started_at: _UtcTime | None = None
    team: _OptionalName = None
    user: _OptionalName = None


_DECODER = msgspec.json.Decoder(GenericDeploy)


class GenericAdapter:
    """Maps the generic deploy webhook body to a `deploy` event.

    Args:
        token: bearer token(s) the tool sends in `Authorization: Bearer <token>`.
        secret: HMAC secret(s) the tool signs the body with (`X-Uptake-Signature-256`).
        teams: service -> team, used when the body has no `team`.
        name: the adapter's name: the route `/v1/webhooks/<name>`, the events' `source` and
            part of their ids. Mount one instance per tool (`argo-cd`, `jenkins`) so each has
            its own credentials and events name their emitter.
        capability: the `capability` of the events.

    At least one of `token` and `secret` is required; when both are configured a delivery
    needs both (a leaked token alone cannot forge a delivery, nor a leaked secret alone).
    """

    delivery_headers: tuple[str, ...] = (DELIVERY_HEADER,)

    def __init__(
        self,
        *,
        token: str | bytes | Sequence[str | bytes] | None = None,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        teams: Mapping[str, str] | None = None,
        name: str = "generic",
        capability: str = "deploy-pipeline",
    ) -> None:
        if token is None and secret is None:
            raise ValueError("configure a bearer token, an HMAC secret or both")
        self.name = name
        self.capability = capability
        self.teams = dict(teams or {})
        self._tokens = secrets_of(token, "the bearer token") if token is not None else ()
        self._secrets = secrets_of(secret, "the HMAC secret") if secret is not None else ()

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Require every configured credential: the body signature and the bearer token."""
        problems = []
        if self._secrets:
            signature = header(headers, SIGNATURE_HEADER)
            problem = hmac_sha256_matches(signature, body, self._secrets)
            if problem is not None:
                problems.append(f"{SIGNATURE_HEADER} {problem}")
        if self._tokens:
            authorization = header(headers, "Authorization")
            scheme, _, presented = (authorization or "").strip().partition(" ")
            if scheme.lower() != "bearer" or not token_matches(presented.strip(), self._tokens):
                problems.append(
                    "bearer token missing"
                    if authorization is None
                    else "bearer token does not match"
                )
        if problems and self._secrets and self._tokens:
            reason = "; ".join(problems)
            raise WebhookRejected(
                401, f"{reason} (this adapter needs both {SIGNATURE_HEADER} and a bearer token)"
            )
        if problems:
            raise WebhookRejected(401, problems[0])

    def convert(self, headers: Mapping[str, str], body: bytes) -> AdapterResult:
        """Map a verified body to a `deploy` event, or ignore a not-yet-finished deployment."""
        try:
            deploy = _DECODER.decode(body)
        except (ValueError, RecursionError) as exc:  # msgspec errors, bad UTF-8, deep nesting
            raise WebhookRejected(400, f"not a generic deploy body: {exc}") from None
        if deploy.status in RUNNING_STATUSES:
            return AdapterResult(ignored=f"deployment {deploy.status}: it has not ended yet")
        if deploy.status not in FINAL_STATUSES:
            known = ", ".join(sorted(FINAL_STATUSES | RUNNING_STATUSES))
            raise WebhookRejected(422, f"status {deploy.status!r} is not one of {known}")
        deployment_id = str(deploy.deployment_id)
        event = deploy_event(
            event_id=event_id(
                self.name,
                "deploy",
                deploy.service,
                deploy.environment,
                deployment_id,
                deploy.status,
            ),
            occurred_at=_time(deploy.finished_at),
            source=self.name,
            capability=self.capability,
            team=deploy.team or self.teams.get(deploy.service),
            service=deploy.service,
            user=deploy.user,
            deployment_id=deployment_id,
            environment=deploy.environment,
            status=deploy.status,
            commits=[
                {"sha": commit.sha, "committed_at": _time(commit.committed_at)}
                for commit in deploy.commits
            ],
            started_at=_time(deploy.started_at) if deploy.started_at else None,
        )
        return AdapterResult(events=[event])


def _time(value: datetime) -> str:
    return str(msgspec.to_builtins(value))
