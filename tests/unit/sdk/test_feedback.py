"""`UptakeClient.feedback`: a developer's rating, validated by the worker's own contract."""

from __future__ import annotations

import msgspec
import pytest
from uptake_sdk import InvalidEvent, UptakeClient, UptakeError, feedback

from tests.unit.sdk.test_client import Scripted, client


def test_feedback_sends_one_valid_event_and_returns_its_id() -> None:
    errors: list[UptakeError] = []
    transport = Scripted()
    c = client(transport, errors)
    event_id = c.feedback(capability="feature-store", scale="csat", score=5, user="ana",
                          team="search", comment="fast joins")  # fmt: skip
    assert c.flush(2) and errors == []
    sent = [e for _, value in transport.sent for e in msgspec.json.decode(value)]
    assert len(sent) == 1
    assert sent[0]["event_id"] == event_id
    assert (sent[0]["event_type"], sent[0]["user"], sent[0]["source"]) == (
        "feedback",
        "ana",
        "unit",
    )
    assert sent[0]["data"] == {"scale": "csat", "score": 5, "comment": "fast joins"}
    c.close()


@pytest.mark.parametrize(
    ("scale", "score", "comment", "path"),
    [
        ("csat", 6, None, "$.data.score"),
        ("nps", 11, None, "$.data.score"),
        ("stars", 3, None, "$.data.scale"),
        ("nps", 9, "y" * 1001, "$.data.comment"),
    ],
)
def test_a_bad_rating_is_refused_before_it_is_queued(
    scale: str, score: int, comment: str | None, path: str
) -> None:
    transport = Scripted()
    with (
        UptakeClient(transport=transport, source="unit", strict=True) as c,
        pytest.raises(InvalidEvent) as caught,
    ):
        c.feedback(capability="ci", scale=scale, score=score, comment=comment, team="t")
    assert caught.value.path == path
    assert transport.sent == []


def test_the_builder_leaves_out_an_absent_comment() -> None:
    event = feedback(capability="ci", scale="nps", score=0, service="api")
    assert event["data"] == {"scale": "nps", "score": 0}
    assert "user" not in event and event["schema_version"] == 1
