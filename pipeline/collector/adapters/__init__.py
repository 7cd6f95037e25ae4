"""Webhook adapters: third-party webhook deliveries in, contract events out.

Pure and framework-free; the HTTP collector mounts each adapter at
`POST /v1/webhooks/<adapter.name>` and calls `process(adapter, headers, body)` per request.
See docs/webhooks.md for configuration and the field mappings.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.collector.adapters.base import (
    AdapterResult,
    DeliveryId,
    WebhookAdapter,
    WebhookRejected,
    process,
)
from pipeline.collector.adapters.generic import GenericAdapter
from pipeline.collector.adapters.github import GitHubAdapter
from pipeline.collector.adapters.gitlab import GitLabAdapter

ROUTE_PREFIX = "/v1/webhooks/"


def routes(adapters: Iterable[WebhookAdapter]) -> dict[str, WebhookAdapter]:
    """Route path -> adapter (`/v1/webhooks/github` -> the GitHub adapter); names must differ."""
    table: dict[str, WebhookAdapter] = {}
    for adapter in adapters:
        path = ROUTE_PREFIX + adapter.name
        if not adapter.name or "/" in adapter.name:
            raise ValueError(f"adapter name {adapter.name!r} cannot be a route segment")
        if path in table:
            raise ValueError(f"two adapters are named {adapter.name!r}")
        table[path] = adapter
    return table


__all__ = [
    "ROUTE_PREFIX",
    "AdapterResult",
    "DeliveryId",
    "GenericAdapter",
    "GitHubAdapter",
    "GitLabAdapter",
    "WebhookAdapter",
    "WebhookRejected",
    "process",
    "routes",
]
