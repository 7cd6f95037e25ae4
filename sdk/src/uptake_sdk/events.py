"""Event builders and message packing: dicts that follow docs/events.md, JSON-array messages.

Pure functions, no I/O. The builders fill `event_id` (a random UUID), `occurred_at` (now, UTC)
and `schema_version` (1); timestamps may be aware `datetime`s or RFC 3339 strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MESSAGE_TARGET_BYTES",
    "api_call",
    "deploy",
    "feedback",
    "incident",
    "model_training",
    "pack_messages",
    "rfc3339",
]

MESSAGE_TARGET_BYTES = 512 * 1024
"""Largest JSON-array message the SDK and the collector build from several events.

Below the worker's `UPTAKE_MAX_MESSAGE_BYTES` (1 MiB by default) and Kafka's default
`message.max.bytes` with room for the record overhead. A single event larger than this is
still sent alone (the decoder has already checked it against `max_message_bytes`).
"""


def rfc3339(value: datetime | str | None = None) -> str:
    """RFC 3339 text of `value` (default: now). Aware datetimes are converted to UTC (`Z`).

    A naive datetime keeps no offset, so validation rejects it: the SDK never guesses a zone.
    Strings are returned unchanged.
    """
    if value is None:
        value = datetime.now(UTC)
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        return value.isoformat()
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def pack_messages(
    items: Iterable[tuple[str, bytes]],
    max_events: int,
    max_bytes: int = MESSAGE_TARGET_BYTES,
) -> list[tuple[str, bytes]]:
    """Group encoded events (key, JSON bytes) into JSON-array messages sharing one key.

    Events keep their order within a key; a message holds at most `max_events` events and at
    most `max_bytes` bytes unless a single event is larger on its own.
    """
    groups: dict[str, list[list[bytes]]] = {}
    sizes: dict[str, int] = {}
    for key, raw in items:
        batches = groups.setdefault(key, [[]])
        current = batches[-1]
        size = sizes.get(key, 1)
        if current and (len(current) >= max_events or size + len(raw) + 1 > max_bytes):
            current = []
            batches.append(current)
            size = 1
        current.append(raw)
        sizes[key] = size + len(raw) + 1
    return [(key, b"[" + b",".join(b) + b"]") for key, batches in groups.items() for b in batches]


def _envelope(
    event_type: str,
    *,
    capability: str,
    data: dict[str, Any],
    team: str | None,
    service: str | None,
    user: str | None,
    occurred_at: datetime | str | None,
    event_id: str | uuid.UUID | None,
    source: str | None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(event_id or uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": rfc3339(occurred_at),
        "capability": capability,
    }
    optional = {"source": source, "team": team, "service": service, "user": user}
    event.update({k: v for k, v in optional.items() if v is not None})
    event["data"] = data
    return event


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def api_call(
    *,
    capability: str,
    api: str,
    operation: str,
    status_code: int,
    latency_ms: float,
    team: str | None = None,
    service: str | None = None,
    user: str | None = None,
    outcome: Mapping[str, Any] | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """An `api_call` event dict (docs/events.md); `occurred_at` defaults to now.

    `outcome` is the optional business decision, e.g.
    `{"name": "risk_decision", "decision": "approve", "value": 249.9, "unit": "EUR"}`.
    """
    data = _without_none(
        {
            "api": api,
            "operation": operation,
            "status_code": status_code,
            "latency_ms": latency_ms,
            "outcome": dict(outcome) if outcome is not None else None,
        }
    )
    return _envelope(
        "api_call",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


def deploy(
    *,
    deployment_id: str,
    service: str,
    environment: str,
    status: str,
    team: str | None = None,
    commits: Iterable[Mapping[str, Any] | tuple[str, datetime | str]] = (),
    started_at: datetime | str | None = None,
    capability: str = "deploy-pipeline",
    user: str | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A `deploy` event dict, sent when the deployment ended (`status`: succeeded, failed,
    rolled_back). `commits` are `{"sha", "committed_at"}` mappings or `(sha, committed_at)`
    pairs. The envelope's `service` is the deployed service."""
    commit_list = [
        {"sha": c[0], "committed_at": rfc3339(c[1])}
        if isinstance(c, tuple)
        else {**c, "committed_at": rfc3339(c["committed_at"])}
        for c in commits
    ]
    data = _without_none(
        {
            "deployment_id": deployment_id,
            "service": service,
            "environment": environment,
            "status": status,
            "started_at": rfc3339(started_at) if started_at is not None else None,
        }
    )
    if commit_list:
        data["commits"] = commit_list
    return _envelope(
        "deploy",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


def model_training(
    *,
    run_id: str,
    model: str,
    status: str,
    duration_s: float,
    gpu_hours: float | None = None,
    registered_model: str | None = None,
    team: str | None = None,
    service: str | None = None,
    capability: str = "ml-training",
    user: str | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A `model_training` event dict, sent when the run ended (`status`: succeeded, failed,
    cancelled)."""
    data = _without_none(
        {
            "run_id": run_id,
            "model": model,
            "status": status,
            "duration_s": duration_s,
            "gpu_hours": gpu_hours,
            "registered_model": registered_model,
        }
    )
    return _envelope(
        "model_training",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


def incident(
    *,
    incident_id: str,
    service: str,
    severity: str,
    status: str,
    opened_at: datetime | str,
    resolved_at: datetime | str | None = None,
    caused_by_deployment: str | None = None,
    team: str | None = None,
    capability: str = "incident-response",
    user: str | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """An `incident` event dict (`severity` sev1..sev4, `status` opened or resolved); the
    envelope's `service` is the affected service."""
    data = _without_none(
        {
            "incident_id": incident_id,
            "service": service,
            "severity": severity,
            "status": status,
            "opened_at": rfc3339(opened_at),
            "resolved_at": rfc3339(resolved_at) if resolved_at is not None else None,
            "caused_by_deployment": caused_by_deployment,
        }
    )
    return _envelope(
        "incident",
        capability=capability,
        data=data,
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )


def feedback(
    *,
    capability: str,
    scale: str,
    score: int,
    comment: str | None = None,
    user: str | None = None,
    team: str | None = None,
    service: str | None = None,
    occurred_at: datetime | str | None = None,
    event_id: str | uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A `feedback` event dict: `user` (the respondent) rates `capability` with `score` on
    `scale` (`csat` 1-5 or `nps` 0-10), with an optional `comment` of at most 1,000 characters.
    The worker stores the respondent only as a pseudonymous key."""
    return _envelope(
        "feedback",
        capability=capability,
        data=_without_none({"scale": scale, "score": score, "comment": comment}),
        team=team,
        service=service,
        user=user,
        occurred_at=occurred_at,
        event_id=event_id,
        source=source,
    )
