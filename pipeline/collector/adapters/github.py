"""GitHub webhooks (github.com and GitHub Enterprise Server) to `deploy` events.

Authenticated with `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the webhook's
secret). Mapped deliveries, by `X-GitHub-Event`:

- `deployment_status`: a deployment reached a final state -> one `deploy` event
  (`success` -> `succeeded`, `failure`/`error` -> `failed`); non-final states (`pending`,
  `queued`, `in_progress`) and `inactive` (a newer deployment superseded this one) are ignored.
- `workflow_run`: only a *completed* run of a workflow configured as a deploy workflow
  (`deploy_workflows`) -> one `deploy` event. Other workflows are CI, which contract v1 has no
  event type for; they are ignored with that explanation (see docs/webhooks.md).
- `ping` and `deployment` (a deployment was created; its outcome comes as a
  `deployment_status`) are ignored. Every other event is rejected with 422.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.collector.adapters.base import (
    AdapterResult,
    Payload,
    WebhookRejected,
    deploy_event,
    event_id,
    finished_status,
    header,
    hmac_sha256_matches,
    json_object,
    secrets_of,
    team_for,
)

#: deployment_status.state -> contract status; None means "not a final state: ignore".
DEPLOYMENT_STATES: dict[str, str | None] = {
    "success": "succeeded",
    "failure": "failed",
    "error": "failed",
    "pending": None,
    "queued": None,
    "in_progress": None,
    "waiting": None,
    "inactive": None,
}

#: workflow_run.conclusion -> contract status; None means "the deploy did not run: ignore".
RUN_CONCLUSIONS: dict[str, str | None] = {
    "success": "succeeded",
    "failure": "failed",
    "timed_out": "failed",
    "startup_failure": "failed",
    "cancelled": None,
    "skipped": None,
    "neutral": None,
    "action_required": None,
    "stale": None,
}

_IGNORED_EVENTS = {
    "ping": "ping: GitHub checks that the webhook is reachable; nothing to record",
    "deployment": "deployment created: its outcome arrives later as a deployment_status event",
}


class GitHubAdapter:
    """Maps GitHub `deployment_status` and deploy-workflow `workflow_run` deliveries.

    A redelivery (GitHub's "Redeliver" button or API) keeps its `X-GitHub-Delivery` GUID.

    Args:
        secret: the webhook secret, or several during a rotation (any one may sign).
        teams: repository `owner/name` (or an `owner` for a whole organisation) -> team.
        services: repository `owner/name` -> service; default: the repository's name.
        deploy_workflows: which workflows deploy, as workflow file path -> environment.
            A key is `.github/workflows/deploy.yml` (that path in any repository) or
            `owner/name:.github/workflows/deploy.yml` (one repository; takes precedence).
        name: the adapter's name: the route `/v1/webhooks/<name>`, the events' `source` and
            part of their ids (give a GitHub Enterprise server its own name).
        capability: the `capability` of the events.
    """

    delivery_headers: tuple[str, ...] = ("X-GitHub-Delivery",)

    def __init__(
        self,
        secret: str | bytes | Sequence[str | bytes],
        *,
        teams: Mapping[str, str] | None = None,
        services: Mapping[str, str] | None = None,
        deploy_workflows: Mapping[str, str] | None = None,
        name: str = "github",
        capability: str = "deploy-pipeline",
    ) -> None:
        self.name = name
        self.capability = capability
        self.teams = dict(teams or {})
        self.services = dict(services or {})
        self.deploy_workflows = dict(deploy_workflows or {})
        self._secrets = secrets_of(secret, "the GitHub webhook secret")

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check `X-Hub-Signature-256` against the body; raise `WebhookRejected(401)`."""
        problem = hmac_sha256_matches(header(headers, "X-Hub-Signature-256"), body, self._secrets)
        if problem is not None:
            raise WebhookRejected(401, f"X-Hub-Signature-256 {problem}")

    def convert(self, headers: Mapping[str, str], body: bytes) -> AdapterResult:
        """Map a verified delivery to events (see the module docstring for what maps)."""
        kind = header(headers, "X-GitHub-Event")
        if not kind:
            raise WebhookRejected(400, "the X-GitHub-Event header is missing")
        payload = Payload(json_object(body))
        if kind == "deployment_status":
            return self._deployment_status(payload)
        if kind == "workflow_run":
            return self._workflow_run(payload)
        if kind in _IGNORED_EVENTS:
            return AdapterResult(ignored=_IGNORED_EVENTS[kind])
        raise WebhookRejected(
            422,
            f"GitHub event {kind[:80]!r} is not mapped; subscribe the webhook to "
            "deployment_status (and workflow_run for deploy workflows) only",
        )

    # ------------------------------------------------------------------------- events

    def _deployment_status(self, payload: Payload) -> AdapterResult:
        path = "deployment_status.state"
        status = finished_status(DEPLOYMENT_STATES, payload.text(path), path)
        if isinstance(status, AdapterResult):
            return status
        repo = payload.text("repository.full_name")
        service = self._service(repo, payload.text("repository.name"))
        status_id = payload.ident("deployment_status.id")
        event = deploy_event(
            event_id=event_id(self.name, "deployment_status", status_id),
            occurred_at=payload.time(
                "deployment_status.updated_at", "deployment_status.created_at"
            ),
            source=self.name,
            capability=self.capability,
            team=team_for(repo, self.teams),
            service=service,
            user=payload.optional_text("deployment.creator.login")
            or payload.optional_text("sender.login"),
            deployment_id=payload.ident("deployment.id"),
            environment=payload.optional_text("deployment.environment")
            or payload.text("deployment_status.environment"),
            status=status,
            # A deployment_status payload carries deployment.sha but not when that commit was
            # made, and the contract needs committed_at for a commit (lead time): none here.
            commits=[],
            started_at=payload.optional_time("deployment.created_at"),
        )
        return AdapterResult(events=[event])

    def _workflow_run(self, payload: Payload) -> AdapterResult:
        action = payload.text("action")
        repo = payload.optional_text("repository.full_name") or payload.text(
            "workflow_run.repository.full_name"
        )
        path = payload.optional_text("workflow_run.path") or payload.optional_text("workflow.path")
        workflow = path or payload.optional_text("workflow_run.name") or "?"
        environment = self._deploy_environment(repo, path)
        if environment is None:
            return AdapterResult(
                ignored=f"workflow {workflow[:200]!r} of {repo[:200]} is not a configured deploy "
                "workflow; CI runs have no event type in contract v1"
            )
        if action != "completed":
            return AdapterResult(ignored=f"workflow_run {action[:80]}: the run has not finished")
        conclusion = payload.optional_text("workflow_run.conclusion")
        if conclusion is None:
            return AdapterResult(ignored="workflow_run completed without a conclusion")
        if conclusion not in RUN_CONCLUSIONS:
            raise WebhookRejected(422, f"workflow_run.conclusion {conclusion[:80]!r} is not known")
        status = RUN_CONCLUSIONS[conclusion]
        if status is None:
            return AdapterResult(
                ignored=f"deploy workflow concluded {conclusion}: it did not deploy"
            )
        run_id = payload.ident("workflow_run.id")
        attempt = payload.get("workflow_run.run_attempt")
        attempt_id = str(attempt) if isinstance(attempt, int) and attempt > 0 else "1"
        name = payload.optional_text("repository.name") or repo.rsplit("/", 1)[-1]
        event = deploy_event(
            event_id=event_id(self.name, "workflow_run", run_id, attempt_id),
            occurred_at=payload.time("workflow_run.updated_at"),
            source=self.name,
            capability=self.capability,
            team=team_for(repo, self.teams),
            service=self._service(repo, name),
            user=payload.optional_text("workflow_run.triggering_actor.login")
            or payload.optional_text("workflow_run.actor.login")
            or payload.optional_text("sender.login"),
            deployment_id=f"{run_id}-{attempt_id}",
            environment=environment,
            status=status,
            commits=_head_commit(payload),
            started_at=payload.optional_time("workflow_run.run_started_at"),
        )
        return AdapterResult(events=[event])

    # ------------------------------------------------------------------------- helpers

    def _service(self, repo: str, name: str) -> str:
        return self.services.get(repo) or name

    def _deploy_environment(self, repo: str, path: str | None) -> str | None:
        if path is None:
            return None
        path = path.split("@", 1)[0]  # reusable workflows report "path@ref"
        return self.deploy_workflows.get(f"{repo}:{path}") or self.deploy_workflows.get(path)


def _head_commit(payload: Payload) -> list[dict[str, str]]:
    """The run's head commit with its timestamp, when the payload has both."""
    sha = payload.optional_text("workflow_run.head_sha") or payload.optional_text(
        "workflow_run.head_commit.id"
    )
    committed_at = payload.optional_time("workflow_run.head_commit.timestamp")
    if sha is None or committed_at is None or not _is_sha(sha):
        return []
    return [{"sha": sha, "committed_at": committed_at}]


def _is_sha(value: str) -> bool:
    return 7 <= len(value) <= 64 and all(c in "0123456789abcdefABCDEF" for c in value)
