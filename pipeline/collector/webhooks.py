"""Webhook routes of the collector: `POST /v1/webhooks/<name>` for each configured adapter.

`load_webhooks` reads the webhooks file (docs/webhooks.md, "The webhooks file"): it names the
environment variables that hold secrets, never a secret, and a bad file raises
`WebhooksFileError`. Per delivery the handler reads the raw body within the size limit (413),
lets the adapter verify it, answers a delivery id handled before with 200 without producing,
lets the adapter convert it, judges the events with the decoder of `POST /v1/events` and answers
202 only after Kafka acknowledged them, 503 otherwise (docs/webhooks.md, "Routes and answers").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from pipeline.collector import handling
from pipeline.collector import metrics as m
from pipeline.collector.adapters import (
    ROUTE_PREFIX,
    AdapterResult,
    DeliveryId,
    GenericAdapter,
    GitHubAdapter,
    GitLabAdapter,
    WebhookAdapter,
    WebhookRejected,
)
from pipeline.collector.config import read_json_or_toml
from pipeline.collector.ingest import judge
from pipeline.collector.producer import ProduceFailed
from pipeline.config.settings import SettingsError
from pipeline.contract.events import name_problem
from pipeline.kafka.topics import KafkaUnavailable

log = logging.getLogger(__name__)

SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "github": ("secret_env", "teams", "services", "deploy_workflows"),
    "gitlab": ("token_env", "teams", "services"),
    "generic": ("name", "token_env", "secret_env", "teams"),
}
"""Section -> the keys it may have. `[github]` and `[gitlab]` are tables, `[[generic]]` an
array of tables (one per tool)."""

REJECTED_CODES = {401: "unauthorized", 400: "bad_payload", 422: "unmapped_delivery"}
"""`WebhookRejected.status` -> the `error` code of the answer."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ADAPTER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_SECRET_KEYS = {"secret", "secrets", "token", "tokens", "password"}


class WebhooksFileError(SettingsError):
    """The webhooks file, or a variable it names, cannot be used; the message says what to fix."""


# ----------------------------------------------------------------------------- configuration


def load_webhooks(path: Path, environ: Mapping[str, str]) -> list[WebhookAdapter]:
    """The adapters configured in the webhooks file at `path` (`.toml` or `.json`; other names
    are tried as JSON, then TOML), with secrets read from `environ`.

    Raises `WebhooksFileError` naming the file, the section and the key (or the variable) for
    anything it cannot use: an unreadable file, an unknown section or key, a secret written
    into the file, a variable that is not set, two adapters with the same name.
    """
    data = read_json_or_toml(path, "the webhooks file", WebhooksFileError)
    return webhooks_from_mapping(data, environ, origin=str(path))


def webhooks_from_mapping(
    data: object, environ: Mapping[str, str], origin: str = "webhooks"
) -> list[WebhookAdapter]:
    """The adapters of already-decoded webhooks configuration (see `load_webhooks`)."""
    if not isinstance(data, dict):
        raise WebhooksFileError(
            f"{origin}: the webhooks file must be a table of sections: [github], [gitlab], "
            "[[generic]]"
        )
    adapters: list[WebhookAdapter] = []
    for section, body in data.items():
        if section not in SECTION_KEYS:
            kind = "section" if isinstance(body, dict | list) else "top-level key"
            raise WebhooksFileError(
                f"{origin}: unknown {kind} {section!r}; the sections are [github], [gitlab] "
                "and [[generic]]"
            )
        if section == "generic":
            if not isinstance(body, list) or not body:
                raise WebhooksFileError(
                    f"{origin}: generic must be an array of tables, one per tool: write "
                    "[[generic]] (JSON: a list of objects), each with its own name"
                )
            for number, entry in enumerate(body, 1):
                adapters.append(_generic(origin, number, entry, environ))
        elif not isinstance(body, dict):
            raise WebhooksFileError(f"{origin}: [{section}] must be a table (JSON: an object)")
        elif section == "github":
            adapters.append(_github(_Section(origin, "[github]", body), environ))
        else:
            adapters.append(_gitlab(_Section(origin, "[gitlab]", body), environ))
    if not adapters:
        raise WebhooksFileError(
            f"{origin}: no webhook adapter is configured; add [github], [gitlab] or [[generic]]"
        )
    seen: set[str] = set()
    for adapter in adapters:
        if adapter.name in seen:
            raise WebhooksFileError(
                f"{origin}: two webhook adapters are named {adapter.name!r}; every route "
                f"{ROUTE_PREFIX}<name> must differ: give each [[generic]] its own name"
            )
        seen.add(adapter.name)
    return adapters


class _Section:
    """One section of the file, with precise messages for its keys."""

    def __init__(self, origin: str, label: str, data: dict[str, Any]) -> None:
        self.origin = origin
        self.label = label
        self.data = data

    def error(self, message: str) -> WebhooksFileError:
        return WebhooksFileError(f"{self.origin}: {self.label} {message}")

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key in _SECRET_KEYS or key.endswith(("_secret", "_token")):
                raise self.error(
                    f"has a {key!r} key: secrets never go in the webhooks file. Put the secret "
                    "in an environment variable and name that variable with "
                    f"{' or '.join(k for k in allowed if k.endswith('_env'))}"
                )
            if key not in allowed:
                raise self.error(
                    f"has an unknown key {key!r}; its keys are {', '.join(sorted(allowed))}"
                )

    def secrets(self, key: str, environ: Mapping[str, str]) -> list[str] | None:
        """The secrets held by the variable(s) named at `key`; None when `key` is absent."""
        if key not in self.data:
            return None
        value = self.data[key]
        names = value if isinstance(value, list) else [value]
        if not names:
            raise self.error(f"{key} is an empty list; name at least one environment variable")
        found: list[str] = []
        for name in names:
            # Never echo a bad value: it may be the secret itself, pasted by mistake.
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                raise self.error(
                    f"{key} must name an environment variable (letters, digits and _, e.g. "
                    '"UPTAKE_GITHUB_WEBHOOK_SECRET") or a list of them; the secret itself '
                    "never goes in the webhooks file"
                )
            secret = environ.get(name)
            if secret is None:
                raise self.error(
                    f"{key} names the environment variable {name}, which is not set; set it "
                    "to the webhook's secret before starting the collector"
                )
            if not secret.strip():
                raise self.error(f"{key} names the environment variable {name}, which is empty")
            found.append(secret)
        return found

    def table(self, key: str) -> dict[str, str]:
        """A table of names -> names (teams, services, deploy workflows); {} when absent."""
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(
                f'{key} must be a table of strings, e.g. {key} = {{ "acme/checkout-api" = '
                '"checkout" }'
            )
        for name, target in value.items():
            if not isinstance(target, str) or not target.strip() or not name:
                raise self.error(
                    f"{key}: the value for {name!r} must be a non-empty string, not {_kind(target)}"
                )
            problem = name_problem(target) if key in ("teams", "services") else None
            if problem is not None:
                raise self.error(f"{key}: the value for {name!r} breaks the name rule: {problem}")
        return dict(value)


def _kind(value: object) -> str:
    if isinstance(value, str):
        return "an empty string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


_REQUIRED_SECRET = {
    "github": ("secret_env", "the webhook secret", "UPTAKE_GITHUB_WEBHOOK_SECRET"),
    "gitlab": ("token_env", "the webhook secret token", "UPTAKE_GITLAB_WEBHOOK_TOKEN"),
}
"""Adapter kind -> (key naming its secret variable, what the secret is, an example variable)."""


def _required_secrets(section: _Section, kind: str, environ: Mapping[str, str]) -> list[str]:
    """The section's keys checked and the secrets of `_REQUIRED_SECRET[kind]`, which it needs."""
    section.check_keys(SECTION_KEYS[kind])
    key, what, example = _REQUIRED_SECRET[kind]
    secrets = section.secrets(key, environ)
    if secrets is None:
        raise section.error(
            f'needs {key}, the environment variable holding {what} (e.g. {key} = "{example}")'
        )
    return secrets


def _github(section: _Section, environ: Mapping[str, str]) -> GitHubAdapter:
    return GitHubAdapter(
        _required_secrets(section, "github", environ),
        teams=section.table("teams"),
        services=section.table("services"),
        deploy_workflows=section.table("deploy_workflows"),
    )


def _gitlab(section: _Section, environ: Mapping[str, str]) -> GitLabAdapter:
    return GitLabAdapter(
        _required_secrets(section, "gitlab", environ),
        teams=section.table("teams"),
        services=section.table("services"),
    )


def _generic(origin: str, number: int, entry: object, environ: Mapping[str, str]) -> GenericAdapter:
    if not isinstance(entry, dict):
        raise WebhooksFileError(f"{origin}: [[generic]] number {number} must be a table")
    name = entry.get("name")
    label = f"[[generic]] {name!r}" if isinstance(name, str) else f"[[generic]] number {number}"
    section = _Section(origin, label, entry)
    section.check_keys(SECTION_KEYS["generic"])
    if not isinstance(name, str) or not _ADAPTER_NAME.fullmatch(name):
        raise section.error(
            "needs a name: 1-63 characters of a-z, 0-9, '.', '_', '-' starting with a letter or "
            f"digit; it is the route {ROUTE_PREFIX}<name> and the events' source"
        )
    tokens = section.secrets("token_env", environ)
    secrets = section.secrets("secret_env", environ)
    if tokens is None and secrets is None:
        raise section.error(
            "needs token_env (a bearer token), secret_env (an HMAC secret) or both: the "
            "environment variable holding it"
        )
    return GenericAdapter(token=tokens, secret=secrets, teams=section.table("teams"), name=name)


# ----------------------------------------------------------------------------- requests


def webhook_handler(adapter: WebhookAdapter) -> handling.Handler:
    """The aiohttp handler of `POST /v1/webhooks/<adapter.name>`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await post_webhook(request, adapter)

    handle.__doc__ = f"POST {ROUTE_PREFIX}{adapter.name}: one delivery to {adapter.name}."
    return handle


async def post_webhook(request: web.Request, adapter: WebhookAdapter) -> web.Response:
    """Read the delivery within limits, verify it, answer a replay, convert, judge, produce.

    202 `{"accepted": 0, "ignored": "..."}` for a valid delivery with nothing to record;
    202 `{"accepted": n, "rejected": m, "results": [...]}` once Kafka acknowledged the events;
    200 `{"accepted": 0, "replay_of": "<delivery id>", ...}` for a delivery id already handled
    (`pipeline.collector.replay`: nothing is produced again); 422 with the results when the
    decoder rejected every event; the adapter's 400, 401 or 422 for a delivery it refuses; 413
    for a body over `webhook_max_body_bytes`; 503 when Kafka did not acknowledge. Neither the
    secrets nor the signature headers are ever logged.
    """
    state = request.app[handling.STATE]
    limit = state.config.webhook_max_body_bytes
    body = await handling.read_body(
        request, limit, "a webhook delivery is a few tens of KB at most"
    )
    if isinstance(body, web.Response):
        return body
    try:
        adapter.verify(request.headers, body)  # before the replay cache: ids must be signed
        delivery = DeliveryId.of(adapter, request.headers)
        if delivery is not None:
            replay = _replay_answer(state.replays.handled_at(delivery.key), delivery, state)
            if replay is not None:
                return replay
        result = adapter.convert(request.headers, body)
    except WebhookRejected as exc:
        # The reason never contains a secret or an expected signature (pipeline.collector.adapters).
        log.info("collector: webhook %s answered %d: %s", adapter.name, exc.status, exc.reason)
        return handling.json_error(
            exc.status, REJECTED_CODES.get(exc.status, "rejected"), exc.reason
        )
    response = await _produce(state, adapter, result)
    if delivery is not None and response.status < 300:
        state.replays.remember(delivery.key)
    return response


def _replay_answer(
    handled_at: float | None, delivery: DeliveryId, state: handling.CollectorState
) -> web.Response | None:
    """200 for a delivery id handled before (its events are on Kafka already); else None."""
    if handled_at is None:
        return None
    m.WEBHOOK_REPLAYS.inc()
    ttl = state.config.replay_ttl_s
    message = (
        f"delivery {delivery.shown} ({delivery.header}) was handled already; nothing was "
        f"produced again (delivery ids are remembered for {ttl:g} s)"
    )
    payload = {"accepted": 0, "replay_of": delivery.shown, "message": message}
    return web.json_response(payload, status=200, dumps=handling.dumps)


async def _produce(
    state: handling.CollectorState, adapter: WebhookAdapter, result: AdapterResult
) -> web.Response:
    """Judge the events of an accepted delivery and hand them to Kafka; the answer."""
    if not result.events:
        ignored = result.ignored or "the delivery maps to no event"
        return web.json_response(
            {"accepted": 0, "ignored": ignored}, status=202, dumps=handling.dumps
        )

    items = [msgspec.json.encode(event) for event in result.events]
    try:
        judgement = judge(items, adapter.name, state.decoder, handling.MESSAGE_EVENTS)
    except RecursionError:
        return handling.json_error(400, "too_deep", "an event is nested too deeply")
    accepted, rejected = judgement.accepted, judgement.rejected
    m.EVENTS.labels("webhook", "rejected").inc(rejected)
    payload: dict[str, Any] = {
        "accepted": accepted,
        "rejected": rejected,
        "results": judgement.results,
    }
    if not accepted:
        first = judgement.results[0]
        message = (
            f"the delivery maps to {len(items)} event(s) the worker would reject: "
            f"{first['reason']} ({first['detail']})"
        )
        return web.json_response(
            {"error": "events_rejected", "message": message, **payload},
            status=422,
            dumps=handling.dumps,
        )
    try:
        await handling.hand_to_kafka(state, judgement.messages)
    except (KafkaUnavailable, ProduceFailed) as exc:
        m.EVENTS.labels("webhook", "undelivered").inc(accepted)
        return handling.kafka_unavailable(
            state.config,
            exc,
            "Redeliver the webhook soon (same event ids): recent re-sends are not counted twice.",
        )
    m.EVENTS.labels("webhook", "accepted").inc(accepted)
    return web.json_response(payload, status=202, dumps=handling.dumps)
