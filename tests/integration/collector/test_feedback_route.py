"""`POST /v1/feedback` served in-process, producing to the session's real Kafka broker: a valid
rating lands as a `feedback` event with the token's source, a bad one is refused with the body's
field path, and the comment never reaches /metrics."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tests.integration.collector.test_collector import AUTH, collector  # noqa: F401 - the fixture
from tests.support.collector import Collector, Reply, metric

pytestmark = pytest.mark.integration

COMMENT = "the secret-sauce comment 7f3a: joins are fast"


def post(server: Collector, body: Any, headers: dict[str, str] | None = None) -> Reply:
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return server.request(
        "POST", "/v1/feedback", data, {"Content-Type": "application/json", **(headers or AUTH)}
    )


def test_a_rating_lands_on_kafka_as_a_feedback_event(
    collector: Callable[..., Collector],  # noqa: F811
) -> None:
    server = collector()
    before = metric(server, "uptake_collector_events_total", route="feedback", outcome="accepted")
    event_id = str(uuid.uuid4())
    reply = post(server, {"capability": "feature-store", "scale": "csat", "score": 5,
                          "user": "ana", "team": "search", "comment": COMMENT,
                          "event_id": event_id})  # fmt: skip
    assert (reply.status, reply.json) == (202, {"event_id": event_id})
    [landed] = server.landed_events()
    assert landed["event_type"] == "feedback" and landed["event_id"] == event_id
    assert landed["source"] == "api-gateway", "the token's source"
    assert landed["data"] == {"scale": "csat", "score": 5, "comment": COMMENT}
    assert (landed["user"], landed["team"], landed["capability"]) == ("ana", "search",
                                                                       "feature-store")  # fmt: skip
    after = metric(server, "uptake_collector_events_total", route="feedback", outcome="accepted")
    assert after == before + 1
    assert metric(server, "uptake_collector_requests_total", route="feedback", status="202") >= 1
    assert COMMENT not in server.request("GET", "/metrics").raw.decode()


@pytest.mark.parametrize(
    ("body", "status", "error", "detail"),
    [
        ({"capability": "ci", "team": "t", "scale": "nps", "score": 11}, 422,
         "feedback_rejected", "Expected `int` <= 10 - at `$.score`"),
        ({"capability": "ci", "team": "t", "scale": "csat", "score": 0}, 422,
         "feedback_rejected", "score 0 is outside the csat scale (1-5) - at `$.score`"),
        ({"capability": "ci", "team": "t", "scale": "csat", "score": 3, "comment": "z" * 1001},
         422, "feedback_rejected", "Expected `str` of length <= 1000 - at `$.comment`"),
        ({"capability": "ci", "team": "t", "score": 3}, 422,
         "feedback_rejected", "Object missing required field `scale` - at `$`"),
        ({"capability": "ci", "scale": "csat", "score": 3}, 422,
         "feedback_rejected", "give at least one of team or service"),
        ({"capability": "ci", "team": "t", "scale": "csat", "rating": 3}, 400,
         "unknown_field", None),
        ([{"capability": "ci"}], 400, "bad_body", None),
    ],
)  # fmt: skip
def test_a_bad_rating_is_refused_and_nothing_lands(
    collector: Callable[..., Collector],  # noqa: F811
    body: Any,
    status: int,
    error: str,
    detail: str | None,
) -> None:
    server = collector()
    reply = post(server, body)
    assert (reply.status, reply.json["error"]) == (status, error), reply.json
    if detail is not None:
        reason = "missing_attribution" if "team or service" in detail else "schema_violation"
        assert (reply.json["reason"], reply.json["detail"]) == (reason, detail)
    assert server.landed_events() == []


def test_a_rating_needs_a_valid_token(collector: Callable[..., Collector]) -> None:  # noqa: F811
    server = collector()
    body = {"capability": "ci", "team": "t", "scale": "csat", "score": 3}
    assert post(server, body, {"Authorization": "Bearer nope"}).status == 401
    assert server.landed_events() == []
