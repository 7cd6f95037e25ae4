"""The collector's Prometheus metrics, in the one registry `observability.metrics.REGISTRY`.

Labels are bounded: the route (`events` for `POST /v1/events`, `webhook` for every
`/v1/webhooks/<name>`), an HTTP status code and a fixed set of outcomes; never a source,
adapter name, team or event id. Only requests to the ingestion routes are counted (not health
checks or scrapes).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pipeline.observability.metrics import REGISTRY

ROUTES = ("events", "webhook")
"""events: POST /v1/events; webhook: POST /v1/webhooks/<name> (any adapter)."""

OUTCOMES = ("accepted", "rejected", "undelivered")
"""accepted: acknowledged by Kafka; rejected: failed validation (with a reason);
undelivered: valid, but Kafka did not acknowledge it in time (the request got 503)."""

# Counter, requests, by route (ROUTES) and HTTP status code of the answer.
REQUESTS = Counter(
    "uptake_collector_requests",
    "Requests to POST /v1/events and /v1/webhooks/<name>, by route and HTTP status code.",
    ["route", "status"],
    registry=REGISTRY,
)
# Counter, events, by route (ROUTES) and outcome (OUTCOMES).
EVENTS = Counter(
    "uptake_collector_events",
    "Events received by the collector, by route and outcome: accepted, rejected or undelivered.",
    ["route", "outcome"],
    registry=REGISTRY,
)
# Histogram, seconds: from the request's arrival to the answer, Kafka acknowledgement included.
REQUEST_DURATION = Histogram(
    "uptake_collector_request_duration_seconds",
    "Duration of an ingestion request, by route, including waiting for Kafka's acknowledgement.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
for _route in ROUTES:  # export zeros, so rates work from the first scrape
    REQUEST_DURATION.labels(_route)
    for _outcome in OUTCOMES:
        EVENTS.labels(_route, _outcome)
# Counter, deliveries: webhook deliveries answered as replays (their delivery id was already
# handled), so nothing was produced again.
WEBHOOK_REPLAYS = Counter(
    "uptake_collector_webhook_replays",
    "Webhook deliveries whose delivery id was already handled: answered 200, nothing produced.",
    registry=REGISTRY,
)
# Gauge, requests: ingestion requests being handled now (the cap is UPTAKE_COLLECTOR_MAX_IN_FLIGHT).
IN_FLIGHT = Gauge(
    "uptake_collector_requests_in_flight",
    "Requests to POST /v1/events and /v1/webhooks/<name> being handled now.",
    registry=REGISTRY,
)
