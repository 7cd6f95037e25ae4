"""What every webhook adapter shares: the result and error types, the protocol and helpers.

An adapter turns one HTTP delivery (its headers and raw body, nothing else) into zero or more
contract events; it is pure: it never blocks and does no I/O. `verify` then `convert` (or
`process`) raise `WebhookRejected` (its `status` and `reason` are the answer) or return an
`AdapterResult`: events to produce, or none with `ignored` set. The events already passed the
contract structs; the decoder's clock rules are left to the collector (docs/webhooks.md,
"What the collector does with a delivery").
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol, runtime_checkable

import msgspec
from msgspec import Meta

from pipeline.contract.events import Event

#: Namespace of the deterministic event ids: uuid5(NAMESPACE, '["<adapter>","<kind>",<keys>]').
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://uptake.dev/adapters")

_UtcTime = Annotated[datetime, Meta(tz=True)]
_EVENT = msgspec.json.Decoder(Event)
_ANY = msgspec.json.Decoder()
_MAX_NAME = 200


class WebhookRejected(Exception):
    """The delivery cannot be accepted; the collector answers with `status` and `reason`.

    `status` is 401 for a missing or wrong signature or token, 400 for a malformed payload
    (not JSON, a required field missing or of the wrong type, a value the contract forbids)
    and 422 for a well-formed delivery of an event the adapter does not map.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass
class AdapterResult:
    """Outcome of a delivery the adapter accepted.

    `events` are contract events as JSON-ready dicts (produce each one as it is). When there
    are none, `ignored` says why the delivery carried nothing to record, e.g. a deployment that
    is still in progress; the collector still answers 202 so the sender does not retry.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: str | None = None


@runtime_checkable
class WebhookAdapter(Protocol):
    """A webhook source the collector can mount (at `POST /v1/webhooks/<name>`)."""

    name: str
    delivery_headers: tuple[str, ...]
    """Headers naming the delivery, the same on a redelivery, first present wins (may be ())."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Authenticate the delivery; raise `WebhookRejected(401, ...)` when it is not."""
        ...

    def convert(self, headers: Mapping[str, str], body: bytes) -> AdapterResult:
        """Map an authenticated delivery to events; raise `WebhookRejected` (400/422)."""
        ...


def process(adapter: WebhookAdapter, headers: Mapping[str, str], body: bytes) -> AdapterResult:
    """Verify, then convert one delivery: the only call the collector needs per request."""
    adapter.verify(headers, body)
    return adapter.convert(headers, body)


@dataclass(frozen=True)
class DeliveryId:
    """The id a sender gives one delivery (and its redeliveries), for replay protection.

    `key` is the adapter's name with a 128-bit hash of the id, so a long header costs the
    replay cache no more memory than a short one.
    """

    header: str
    value: str
    key: str

    @property
    def shown(self) -> str:
        """The id as quoted in answers and logs (at most 100 characters)."""
        return self.value[:100]

    @classmethod
    def of(cls, adapter: WebhookAdapter, headers: Mapping[str, str]) -> DeliveryId | None:
        """The delivery id of a request to `adapter`, None when it carries none."""
        for name in adapter.delivery_headers:
            value = (header(headers, name) or "").strip()
            if value:
                digest = hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=16)
                return cls(name, value, f"{adapter.name}:{digest.hexdigest()}")
        return None


# ----------------------------------------------------------------------------- requests


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name`, looked up case-insensitively in any mapping."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return candidate
    return None


def secrets_of(secret: str | bytes | Sequence[str | bytes], what: str) -> tuple[bytes, ...]:
    """Normalise one secret or several (during a rotation) to non-empty byte strings."""
    items: Iterable[str | bytes] = (secret,) if isinstance(secret, str | bytes) else secret
    result = tuple(s.encode() if isinstance(s, str) else bytes(s) for s in items)
    if not result or not all(result):
        raise ValueError(f"{what} must be a non-empty string (or a list of them)")
    return result


def token_matches(presented: str | None, tokens: Sequence[bytes]) -> bool:
    """Whether `presented` equals one of `tokens`, compared in constant time."""
    if presented is None:
        return False
    candidate = presented.encode("utf-8", "surrogateescape")
    # Compare against every token (no early exit) so timing reveals nothing about which.
    matches = [hmac.compare_digest(candidate, token) for token in tokens]
    return any(matches)


def hmac_sha256_matches(
    signature: str | None, body: bytes, secrets: Sequence[bytes], prefix: str = "sha256="
) -> str | None:
    """Check a `sha256=<hex HMAC of the body>` signature; None when valid, else why not."""
    if signature is None:
        return "missing"
    signature = signature.strip()
    if not signature.startswith(prefix):
        return f"does not start with {prefix!r}"
    presented = signature[len(prefix) :].lower().encode("utf-8", "surrogateescape")
    expected = [hmac.new(s, body, "sha256").hexdigest().encode() for s in secrets]
    matches = [hmac.compare_digest(presented, digest) for digest in expected]
    return None if any(matches) else "does not match the body"


def json_object(body: bytes) -> dict[str, Any]:
    """Decode the body as one JSON object, or raise `WebhookRejected(400)`."""
    try:
        decoded = _ANY.decode(body)
    except (ValueError, RecursionError) as exc:  # msgspec errors, bad UTF-8, deep nesting
        raise WebhookRejected(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise WebhookRejected(400, f"the body is JSON {type(decoded).__name__}, not an object")
    return decoded


# ----------------------------------------------------------------------------- payloads


class Payload:
    """Typed, path-aware access to a decoded JSON payload.

    Every accessor names the dotted path it reads, so a malformed payload is rejected with a
    reason such as ``deployment.environment: expected a string, got null``.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def get(self, path: str) -> Any:
        """The value at a dotted path, or None when any step is missing or not an object."""
        node: Any = self.data
        for key in path.split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    def text(self, path: str) -> str:
        """A required non-empty string."""
        value = self.get(path)
        if not isinstance(value, str) or not value:
            raise WebhookRejected(400, f"{path}: expected a non-empty string, got {_kind(value)}")
        return value

    def optional_text(self, path: str) -> str | None:
        """A string if present and non-empty, else None (wrong types count as absent)."""
        value = self.get(path)
        return value if isinstance(value, str) and value else None

    def ident(self, path: str) -> str:
        """A required id: a JSON integer or a non-empty string, returned as a string."""
        value = self.get(path)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value:
            return value
        reason = f"{path}: expected an id (integer or string), got {_kind(value)}"
        raise WebhookRejected(400, reason)

    def time(self, *paths: str) -> str:
        """The first of `paths` that holds an RFC 3339 timestamp, normalised; else 400."""
        for path in paths:
            value = self.get(path)
            if value is not None:
                return rfc3339(value, path)
        raise WebhookRejected(400, f"{' or '.join(paths)}: a timestamp is required")

    def optional_time(self, path: str) -> str | None:
        """An RFC 3339 timestamp if present, normalised; None when absent or unparseable."""
        value = self.get(path)
        if value is None:
            return None
        try:
            return rfc3339(value, path)
        except WebhookRejected:
            return None


def finished_status(states: Mapping[str, str | None], state: str, path: str) -> str | AdapterResult:
    """The contract status of a sender's deployment `state` (read at `path`), or an ignored
    result when the deployment has not finished; 422 for a state `states` does not know."""
    if state not in states:
        raise WebhookRejected(422, f"{path} {state[:80]!r} is not known")
    status = states[state]
    if status is not None:
        return status
    finals = ", ".join(name for name, mapped in states.items() if mapped)
    return AdapterResult(
        ignored=f"{path} {state}: not a finished deployment; the deploy event is sent for {finals}"
    )


def rfc3339(value: Any, path: str) -> str:
    """Normalise a timestamp with an offset to the contract's RFC 3339 form, or raise 400."""
    if not isinstance(value, str):
        raise WebhookRejected(400, f"{path}: expected a timestamp string, got {_kind(value)}")
    try:
        parsed = msgspec.convert(value, _UtcTime)
    except msgspec.ValidationError as exc:
        raise WebhookRejected(400, f"{path}: {value[:64]!r} is not RFC 3339: {exc}") from None
    return str(msgspec.to_builtins(parsed))


def _kind(value: Any) -> str:
    if value is None:
        return "null (or missing)"
    if isinstance(value, str):
        return "an empty string" if not value else f"the string {value[:40]!r}"
    return f"JSON {type(value).__name__}"


def short_name(value: str | None) -> str | None:
    """`value` if it fits an optional contract name (1-200 characters), else None."""
    return value if value and len(value) <= _MAX_NAME else None


def event_id(adapter: str, kind: str, *keys: str) -> str:
    """A deterministic event id: the same delivery (or redelivery) gives the same id.

    The key is what identifies the reported fact in the source system (a deployment status id,
    a workflow run attempt), so the warehouse folds redeliveries and duplicate hooks into one.
    """
    name = msgspec.json.encode([adapter, kind, *keys]).decode()  # unambiguous, unlike a join
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def team_for(path: str, teams: Mapping[str, str]) -> str | None:
    """The team of a repository or project path: its own entry, else its nearest group's.

    ``teams = {"acme/checkout-api": "checkout", "acme/payments": "payments"}``: the path
    ``acme/payments/ledger`` (a GitLab subgroup project) belongs to ``payments``.
    """
    parts = path.split("/")
    for end in range(len(parts), 0, -1):
        team = teams.get("/".join(parts[:end]))
        if team:
            return team
    return None


def deploy_event(
    *,
    event_id: str,
    occurred_at: str,
    source: str,
    capability: str,
    team: str | None,
    service: str,
    user: str | None,
    deployment_id: str,
    environment: str,
    status: str,
    commits: list[dict[str, str]],
    started_at: str | None,
) -> dict[str, Any]:
    """Build a `deploy` event and check it against the contract (see `checked`)."""
    data: dict[str, Any] = {
        "deployment_id": deployment_id,
        "service": service,
        "environment": environment,
        "status": status,
        "commits": commits,
        "started_at": started_at,
    }
    return checked(
        {
            "event_id": event_id,
            "event_type": "deploy",
            "schema_version": 1,
            "occurred_at": occurred_at,
            "source": source,
            "capability": capability,
            "team": team,
            "service": service,
            "user": short_name(user),
            "data": data,
        }
    )


def checked(event: dict[str, Any]) -> dict[str, Any]:
    """Return `event` if the worker's structs accept it, else raise `WebhookRejected(400)`.

    A payload whose values break the contract (an environment name of 300 characters, a
    malformed commit sha) is the sender's problem; rejecting it here tells the sender at once
    instead of producing an event the worker would send to `rejected_events`.
    """
    try:
        _EVENT.decode(msgspec.json.encode(event))
    except (msgspec.MsgspecError, ValueError) as exc:
        reason = f"the payload maps to an event the contract rejects: {exc}"
        raise WebhookRejected(400, reason) from None
    if not event.get("team") and not event.get("service"):
        raise WebhookRejected(400, "the payload names neither a team nor a service")
    return event
