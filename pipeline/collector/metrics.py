"""The collector's Prometheus metrics, in the one registry `pipeline.metrics.REGISTRY`.

Labels are bounded: an HTTP status code and a fixed set of outcomes, never a source, team or
event id. Only requests to the ingestion endpoint `/v1/events` are counted (not health checks
or scrapes).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from pipeline.metrics import REGISTRY

OUTCOMES = ("accepted", "rejected", "undelivered")
"""accepted: acknowledged by Kafka; rejected: failed validation (with a reason);
undelivered: valid, but Kafka did not acknowledge it in time (the request got 503)."""

# Counter, requests, by HTTP status code of the answer.
REQUESTS = Counter(
    "uptake_collector_requests",
    "Requests to POST /v1/events, by HTTP status code.",
    ["status"],
    registry=REGISTRY,
)
# Counter, events, by outcome (OUTCOMES).
EVENTS = Counter(
    "uptake_collector_events",
    "Events received by the collector, by outcome: accepted, rejected or undelivered.",
    ["outcome"],
    registry=REGISTRY,
)
# Histogram, seconds: from the request's arrival to the answer, Kafka acknowledgement included.
REQUEST_DURATION = Histogram(
    "uptake_collector_request_duration_seconds",
    "Duration of a POST /v1/events request, including waiting for Kafka's acknowledgement.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
for _outcome in OUTCOMES:  # export zeros, so rates work from the first scrape
    EVENTS.labels(_outcome)
