"""The simulator's developer ratings: valid feedback events, deterministic, and only extra."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline.contract.decode import BatchDecoder, Limits, SourceMessage
from pipeline.devtools.simulate.org import Organisation, Scenario, generate, with_feedback

END = datetime(2026, 11, 30, tzinfo=UTC)


def simulated(seed: int) -> list[dict[str, Any]]:
    org = Organisation.synthetic(seed, teams=6)
    return list(generate(org, 6000, seed, end=END, window=timedelta(days=20), scenario=Scenario()))


def test_ratings_are_valid_extra_events_and_the_same_per_seed() -> None:
    plain = simulated(5)
    mixed = list(with_feedback(iter(plain), 5))
    assert [e for e in mixed if e["event_type"] != "feedback"] == plain, "nothing else changes"
    ratings = [e for e in mixed if e["event_type"] == "feedback"]
    assert 15 <= len(ratings) <= 80, len(ratings)  # about one in 150 events with a user
    assert Counter(r["data"]["scale"] for r in ratings).keys() == {"csat", "nps"}
    assert any("comment" in r["data"] for r in ratings)
    assert all(r["user"] for r in ratings), "a rating always has its respondent"
    batch = BatchDecoder(Limits(max_lateness=timedelta(days=30)), now=lambda: END).decode(
        [SourceMessage("t", 0, i, msgspec.json.encode(r)) for i, r in enumerate(ratings)]
    )
    assert batch.rejections == [] and len(batch.events) == len(ratings)
    assert list(with_feedback(iter(plain), 5)) == mixed, "deterministic per seed"
