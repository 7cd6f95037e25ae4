"""The synthetic organisation and its event generator: deterministic, truthful, valid, growing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.devtools.simulate.org import (
    CAPABILITIES,
    TEAM_NAMES,
    GroundTruth,
    Organisation,
    generate,
)

END = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=6)
EVENTS = 4000


def _events(seed: int = 7, events: int = EVENTS, teams: int = 12, **kw: Any) -> list[dict]:
    org = Organisation.synthetic(seed, teams=teams)
    return list(generate(org, events, seed, end=END, window=WINDOW, **kw))


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


# --- the organisation -----------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed() -> None:
    assert Organisation.synthetic(1) == Organisation.synthetic(1)
    assert Organisation.synthetic(123, teams=20) == Organisation.synthetic(123, teams=20)


def test_synthetic_differs_between_seeds() -> None:
    one, two = Organisation.synthetic(1), Organisation.synthetic(2)
    assert [t.name for t in one.teams] == [t.name for t in two.teams]  # same names ...
    assert one != two  # ... different people, services, activity and adoption
    assert [t.adopts_at for t in one.teams] != [t.adopts_at for t in two.teams]


@pytest.mark.parametrize("teams", [1, 5, 12, 20])
def test_synthetic_team_count_and_shape(teams: int) -> None:
    org = Organisation.synthetic(3, teams=teams)
    assert [t.name for t in org.teams] == list(TEAM_NAMES[:teams])
    known = {c.name for c in CAPABILITIES}
    for team in org.teams:
        assert 1 <= len(team.services) <= 3
        assert all(s.startswith(f"{team.name}-") for s in team.services)
        assert 3 <= len(team.users) <= 9
        assert 0.5 <= team.activity <= 2.0
        assert set(team.adopts_at) <= known
        assert all(0.0 <= at <= 0.75 for at in team.adopts_at.values())


@pytest.mark.parametrize("teams", [0, -1, 21, 100])
def test_teams_outside_1_to_20_raise(teams: int) -> None:
    with pytest.raises(ValueError, match="teams must be between 1 and 20"):
        Organisation.synthetic(1, teams=teams)


# --- the generator --------------------------------------------------------------------------


def test_generate_yields_exactly_the_requested_number() -> None:
    assert len(_events(events=1234)) == 1234
    assert _events(events=0) == []


def test_generate_is_deterministic_for_seed_and_end() -> None:
    assert _events(seed=11) == _events(seed=11)


def test_generate_differs_between_seeds() -> None:
    a, b = _events(seed=11, events=200), _events(seed=12, events=200)
    assert [e["event_id"] for e in a] != [e["event_id"] for e in b]


def test_event_ids_are_unique() -> None:
    events = _events()
    assert len({e["event_id"] for e in events}) == len(events)


def test_events_are_in_time_order_within_the_window() -> None:
    times = [_at(e) for e in _events()]
    assert times == sorted(times)
    assert times[0] >= END - WINDOW
    assert times[-1] <= END
    # Spread over the whole window, not bunched at one end.
    assert times[0] - (END - WINDOW) < WINDOW / 100
    assert END - times[-1] < WINDOW / 100


def test_ground_truth_equals_a_recount_of_the_events() -> None:
    truth = GroundTruth()
    events = _events(truth=truth)
    assert truth.total == len(events)
    assert truth.by_team_type == Counter((e["team"], e["event_type"]) for e in events)
    assert truth.by_team_capability == Counter((e["team"], e["capability"]) for e in events)
    for key in truth.by_team_type:
        mine = [_at(e) for e in events if (e["team"], e["event_type"]) == key]
        # The truth keeps full precision; events carry milliseconds.
        assert abs(truth.first_seen[key] - mine[0]) < timedelta(milliseconds=1)
        assert abs(truth.last_seen[key] - mine[-1]) < timedelta(milliseconds=1)


def test_every_event_type_and_capability_is_generated() -> None:
    events = _events(events=20_000, teams=20)
    assert {e["event_type"] for e in events} == {c.event_type for c in CAPABILITIES}
    assert {e["capability"] for e in events} == {c.name for c in CAPABILITIES}


def test_events_match_their_team_and_capability() -> None:
    org = Organisation.synthetic(7)
    teams = {t.name: t for t in org.teams}
    capabilities = {c.name: c for c in CAPABILITIES}
    for event in generate(org, 2000, 7, end=END, window=WINDOW):
        team = teams[event["team"]]
        capability = capabilities[event["capability"]]
        assert event["event_type"] == capability.event_type
        assert event["service"] in team.services
        assert event["user"] in team.users
        if capability.apis:
            assert event["data"]["api"] in capability.apis


def _decode(events: list[dict[str, Any]], per_message: int = 250) -> Any:
    messages = [
        SourceMessage("uptake.events", 0, offset, msgspec.json.encode(events[i : i + per_message]))
        for offset, i in enumerate(range(0, len(events), per_message))
    ]
    assert len(messages) > 1
    decoder = BatchDecoder(now=lambda: END + timedelta(seconds=1))
    return decoder.decode(messages)


def test_every_generated_event_passes_the_contract() -> None:
    events = _events(events=20_000, teams=20)
    batch = _decode(events)
    assert [(r.reason, r.detail) for r in batch.rejections][:5] == []
    assert len(batch.events) == len(events)
    assert [str(e.event_id) for e in batch.events] == [e["event_id"] for e in events]


def test_the_decoder_would_reject_events_after_its_now() -> None:
    """The check above has teeth: a `now` before the window makes the same events too new."""
    events = _events(events=500)
    decoder = BatchDecoder(now=lambda: END - WINDOW - timedelta(hours=1))
    batch = decoder.decode([SourceMessage("t", 0, 0, msgspec.json.encode(events))])
    assert len(batch.rejections) == len(events)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 42])
def test_adoption_grows_over_the_window(seed: int) -> None:
    events = _events(seed=seed, events=6000)
    third = len(events) // 3
    first = {(e["team"], e["capability"]) for e in events[:third]}
    last = {(e["team"], e["capability"]) for e in events[-third:]}
    assert len(last) > len(first)


def test_adoption_happens_at_each_teams_own_moment() -> None:
    """Once adoption started, a pair is used only after the team adopted the capability."""
    seed = 5
    org = Organisation.synthetic(seed)
    first_adoption = min(at for team in org.teams for at in team.adopts_at.values())
    adopts = {(t.name, c): at for t in org.teams for c, at in t.adopts_at.items()}
    start = END - WINDOW
    checked = 0
    for event in generate(org, 6000, seed, end=END, window=WINDOW):
        fraction = (_at(event) - start) / WINDOW
        if fraction < first_adoption:
            continue
        adopted = adopts.get((event["team"], event["capability"]))
        assert adopted is not None, event["team"] + " never adopts " + event["capability"]
        assert adopted <= fraction + 1e-6
        checked += 1
    assert checked > 5000


def test_no_event_uses_a_capability_its_team_never_adopts() -> None:
    seed = 0  # teams[0] ('payments') never adopts api-gateway with this seed
    org = Organisation.synthetic(seed)
    assert "api-gateway" not in org.teams[0].adopts_at
    adopts = {(t.name, c) for t in org.teams for c in t.adopts_at}
    used = {(e["team"], e["capability"]) for e in generate(org, 6000, seed, end=END)}
    assert used <= adopts
