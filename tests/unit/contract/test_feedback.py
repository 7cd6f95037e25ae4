"""The feedback event: a score on its scale, a bounded comment, rejected with a precise reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.contract.events import COMMENT_MAX_CHARS, SCORE_RANGES, FeedbackEvent
from pipeline.contract.reasons import Reason

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def feedback(**data: Any) -> bytes:
    return json.dumps(
        {
            "event_id": "7c9e2f41-3b5d-4e8a-9f1c-2d6b8a0e4f37",
            "event_type": "feedback",
            "schema_version": 1,
            "occurred_at": "2025-06-01T09:30:00Z",
            "source": "devportal-survey",
            "capability": "feature-store",
            "team": "search",
            "user": "search.eng2",
            "data": data,
        }
    ).encode()


def judge(raw: bytes) -> tuple[list[Any], list[tuple[Reason, str]]]:
    batch = BatchDecoder(now=lambda: NOW).decode([SourceMessage("t", 0, 0, raw)])
    assert batch.consumed == 1
    return batch.events, [(r.reason, r.detail) for r in batch.rejections]


@pytest.mark.parametrize(
    ("scale", "score"),
    [(scale, score) for scale, (low, high) in SCORE_RANGES.items() for score in (low, high)],
)
def test_every_score_at_the_edges_of_its_scale_is_accepted(scale: str, score: int) -> None:
    events, rejected = judge(feedback(scale=scale, score=score))
    assert rejected == []
    assert isinstance(events[0], FeedbackEvent)
    assert (events[0].data.scale, events[0].data.score, events[0].data.comment) == (
        scale,
        score,
        None,
    )


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (
            {"scale": "csat", "score": 0},
            "score 0 is outside the csat scale (1-5) - at `$.data.score`",
        ),
        (
            {"scale": "csat", "score": 6},
            "score 6 is outside the csat scale (1-5) - at `$.data.score`",
        ),
        ({"scale": "nps", "score": 11}, "Expected `int` <= 10 - at `$.data.score`"),
        ({"scale": "nps", "score": -1}, "Expected `int` >= 0 - at `$.data.score`"),
        ({"scale": "nps", "score": 7.5}, "Expected `int`, got `float` - at `$.data.score`"),
        ({"scale": "ces", "score": 4}, "Invalid enum value 'ces' - at `$.data.scale`"),
        ({"score": 4}, "Object missing required field `scale` - at `$.data`"),
        ({"scale": "nps"}, "Object missing required field `score` - at `$.data`"),
        (
            {"scale": "csat", "score": 4, "comment": "x" * (COMMENT_MAX_CHARS + 1)},
            "Expected `str` of length <= 1000 - at `$.data.comment`",
        ),
    ],
)
def test_a_bad_score_scale_or_comment_is_rejected_with_its_reason(
    data: dict[str, Any], detail: str
) -> None:
    events, rejected = judge(feedback(**data))
    assert events == []
    assert len(rejected) == 1
    reason, got = rejected[0]
    assert reason is Reason.SCHEMA_VIOLATION
    assert got == detail


def test_the_comment_bound_counts_characters_not_bytes() -> None:
    events, rejected = judge(feedback(scale="nps", score=9, comment="é" * COMMENT_MAX_CHARS))
    assert rejected == [] and len(events[0].data.comment) == COMMENT_MAX_CHARS
