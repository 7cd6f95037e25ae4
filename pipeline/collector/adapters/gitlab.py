"""GitLab deployment webhooks (`X-Gitlab-Event: Deployment Hook`) to `deploy` events.

Authenticated with the webhook's secret token, which GitLab sends as is in `X-Gitlab-Token`.
GitLab sends a Deployment Hook when a deployment starts (`running`), succeeds (`success`),
fails (`failed`) or is canceled (`canceled`); only `success` and `failed` end a deployment that
changed (or tried to change) what runs, so only they become `deploy` events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline.collector.adapters.base import (
    AdapterResult,
    Payload,
    WebhookRejected,
    deploy_event,
    event_id,
    finished_status,
    header,
    json_object,
    rfc3339,
    secrets_of,
    team_for,
    token_matches,
)

#: Deployment Hook `status` -> contract status; None means "not a finished deploy: ignore".
DEPLOYMENT_STATUSES: dict[str, str | None] = {
    "success": "succeeded",
    "failed": "failed",
    "canceled": None,
    "created": None,
    "running": None,
    "blocked": None,
    "skipped": None,
}

_GITLAB_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S UTC")


class GitLabAdapter:
    """Maps GitLab Deployment Hook deliveries.

    Args:
        token: the webhook's secret token, or several during a rotation.
        teams: project path (`group/subgroup/project`) or a group path -> team; the project's
            own entry wins, else its nearest group's.
        services: project path -> service; default: the project path itself.
        name: the adapter's name: the route `/v1/webhooks/<name>`, the events' `source` and
            part of their ids (give each GitLab instance its own name).
        capability: the `capability` of the events.

    A retry keeps its `Idempotency-Key` (GitLab 17.4 and later); older GitLab sends only
    `X-Gitlab-Event-UUID`, which a manual "Resend request" also keeps.
    """

    delivery_headers: tuple[str, ...] = ("Idempotency-Key", "X-Gitlab-Event-UUID")

    def __init__(
        self,
        token: str | bytes | Sequence[str | bytes],
        *,
        teams: Mapping[str, str] | None = None,
        services: Mapping[str, str] | None = None,
        name: str = "gitlab",
        capability: str = "deploy-pipeline",
    ) -> None:
        self.name = name
        self.capability = capability
        self.teams = dict(teams or {})
        self.services = dict(services or {})
        self._tokens = secrets_of(token, "the GitLab webhook token")

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check `X-Gitlab-Token` in constant time; raise `WebhookRejected(401)`."""
        presented = header(headers, "X-Gitlab-Token")
        if presented is None:
            raise WebhookRejected(401, "X-Gitlab-Token missing")
        if not token_matches(presented, self._tokens):
            raise WebhookRejected(401, "X-Gitlab-Token does not match")

    def convert(self, headers: Mapping[str, str], body: bytes) -> AdapterResult:
        """Map a verified Deployment Hook to a `deploy` event; other hooks are 422."""
        kind = header(headers, "X-Gitlab-Event")
        if not kind:
            raise WebhookRejected(400, "the X-Gitlab-Event header is missing")
        if kind != "Deployment Hook":
            raise WebhookRejected(
                422,
                f"GitLab event {kind[:80]!r} is not mapped; enable only Deployment events "
                "on this webhook",
            )
        payload = Payload(json_object(body))
        if payload.get("object_kind") != "deployment":
            raise WebhookRejected(400, "a Deployment Hook must have object_kind 'deployment'")
        state = payload.text("status")
        status = finished_status(DEPLOYMENT_STATUSES, state, "status")
        if isinstance(status, AdapterResult):
            return status
        project = payload.text("project.path_with_namespace")
        deployment_id = payload.ident("deployment_id")
        event = deploy_event(
            event_id=event_id(self.name, "deployment", deployment_id, state),
            occurred_at=gitlab_time(payload.get("status_changed_at"), "status_changed_at"),
            source=self.name,
            capability=self.capability,
            team=team_for(project, self.teams),
            service=self.services.get(project) or project,
            user=payload.optional_text("user.username"),
            deployment_id=deployment_id,
            environment=payload.text("environment"),
            status=status,
            # The hook names the commit (short_sha, commit_url) but not when it was made, and the
            # contract needs committed_at for a commit (lead time): none here.
            commits=[],
            # Nor does it say when the deployment started.
            started_at=None,
        )
        return AdapterResult(events=[event])


def gitlab_time(value: Any, path: str) -> str:
    """Normalise GitLab's `2021-04-28 21:50:00 +0200` (or RFC 3339) to RFC 3339."""
    if not isinstance(value, str):
        raise WebhookRejected(400, f"{path}: a timestamp string is required")
    for layout in _GITLAB_TIME_FORMATS:
        try:
            parsed = datetime.strptime(value, layout)
        except ValueError:
            continue
        if parsed.tzinfo is None:  # the "UTC" layout
            parsed = parsed.replace(tzinfo=UTC)
        return str(msgspec.to_builtins(parsed))
    return rfc3339(value, path)
