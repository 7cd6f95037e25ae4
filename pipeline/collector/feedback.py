"""`POST /v1/feedback`: one developer's rating of a capability, from a survey tool or a portal.

The body is one flat JSON object (fields: docs/collector.md, "Developer feedback"). The collector
builds a `feedback` event with the token's source, judges it with the worker's decoder and
produces it like `POST /v1/events`: 202 `{"event_id": ...}` once Kafka acknowledged it, 422
`feedback_rejected` with the body's field path, 400 for a body that is not one JSON object or
has an unknown field. The comment is never logged and never in a metric.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import msgspec
from aiohttp import web

from pipeline.collector import metrics as m
from pipeline.collector.handling import (
    MESSAGE_EVENTS,
    STATE,
    bearer_source,
    hand_to_kafka,
    json_error,
    kafka_unavailable,
    read_body,
)
from pipeline.collector.ingest import judge
from pipeline.collector.producer import ProduceFailed
from pipeline.kafka.topics import KafkaUnavailable
from pipeline.sdk import rfc3339

FEEDBACK_PATH = "/v1/feedback"
ENVELOPE_FIELDS = ("capability", "team", "service", "user", "occurred_at", "event_id")
DATA_FIELDS = ("scale", "score", "comment")


def feedback_event(body: dict[str, Any], source: str) -> dict[str, Any]:
    """The `feedback` event for a request body (not validated: the decoder judges it)."""
    event: dict[str, Any] = {
        "event_id": body.get("event_id") or str(uuid.uuid4()),
        "event_type": "feedback",
        "schema_version": 1,
        "occurred_at": body.get("occurred_at") or rfc3339(),
        "source": source,
    }
    event.update({k: body[k] for k in ENVELOPE_FIELDS[:4] if k in body})
    event["data"] = {k: body[k] for k in DATA_FIELDS if k in body}
    return event


def _body_path(detail: str) -> str:
    """A decoder detail with its path written for the flat body (`$.data.score` -> `$.score`)."""
    return detail.replace("- at `$.data.", "- at `$.").replace("- at `$.data`", "- at `$`")


async def post_feedback(request: web.Request) -> web.Response:
    """`POST /v1/feedback`: authenticate, read, build the event, judge, produce, answer."""
    state = request.app[STATE]
    source = bearer_source(request)
    if isinstance(source, web.Response):
        return source
    raw = await read_body(request, state.config.max_body_bytes, "one feedback is a few KB at most")
    if isinstance(raw, web.Response):
        return raw
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return json_error(400, "bad_body", f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return json_error(400, "bad_body", "the body is one JSON object (see docs/collector.md)")
    unknown = sorted(set(body) - {*ENVELOPE_FIELDS, *DATA_FIELDS})
    if unknown:
        known = ", ".join((*DATA_FIELDS, *ENVELOPE_FIELDS))
        return json_error(
            400, "unknown_field", f"unknown field(s) {', '.join(unknown)}; the fields are {known}"
        )
    wait_s = state.limiter.take(source, 1)
    if wait_s > 0:
        retry_after = max(1, math.ceil(wait_s)) if math.isfinite(wait_s) else 60
        return json_error(
            429,
            "rate_limited",
            f"source {source!r} sends too fast; retry after {retry_after} s",
            {"Retry-After": str(retry_after)},
        )

    judgement = judge([msgspec.json.encode(feedback_event(body, source))], source, state.decoder,
                      MESSAGE_EVENTS)  # fmt: skip
    result = judgement.results[0]
    if not judgement.accepted:
        m.EVENTS.labels("feedback", "rejected").inc()
        detail = _body_path(str(result["detail"]))
        answer = {
            "error": "feedback_rejected",
            "message": f"{result['reason']}: {detail}",
            "reason": result["reason"],
            "detail": detail,
        }
        return web.json_response(answer, status=422)
    try:
        await hand_to_kafka(state, judgement.messages)
    except (KafkaUnavailable, ProduceFailed) as exc:
        m.EVENTS.labels("feedback", "undelivered").inc()
        return kafka_unavailable(
            state.config, exc, "Retry later with the same event_id: the warehouse deduplicates."
        )
    m.EVENTS.labels("feedback", "accepted").inc()
    return web.json_response({"event_id": result["event_id"]}, status=202)
