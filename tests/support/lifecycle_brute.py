"""The lifecycle rules read literally, one day at a time: the truth the processor must match."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pipeline.lifecycle.rules import Milestone, Rules, as_date, day_of_iso, summarize

if TYPE_CHECKING:
    from tests.conftest import Pipeline

RULES = Rules()  # the defaults: 3 days within 14, churn after 28
LAG_DAYS = 2  # UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS of the worker tests


def brute_force(active: Iterable[int], watermark: int, rules: Rules) -> list[Milestone]:
    """Walk every day from the first use to max(last active day, watermark); a churn after the
    watermark is not declared, and the walk stops there."""
    days = set(active)
    if not days:
        return []
    found: list[Milestone] = []
    episode = 0
    churned = False
    start = last = 0
    used_in_episode = 0
    for day in range(min(days), max(max(days), watermark) + 1):
        if day in days:
            if episode == 0 or churned:
                episode += 1
                kind = "first_use" if episode == 1 else "reactivated"
                found.append(Milestone(kind, day, episode))
                churned = False
                start, used_in_episode = day, 0
            used_in_episode += 1
            if (
                used_in_episode == rules.activation_days
                and day - start < rules.activation_window_days
            ):
                found.append(Milestone("activated", day, episode))
            last = day
        elif not churned and day - last == rules.churn_days:
            if day > watermark:
                break
            found.append(Milestone("churned", day, episode))
            churned = True
    return found


def expected_lifecycle(
    events: list[dict[str, Any]],
) -> tuple[set[tuple[Any, ...]], dict[Any, Any]]:
    """The milestones and per (team, capability) lifecycle rows the worker must write for
    `events` (dicts as sent), with the default rules and LAG_DAYS of allowed lateness."""
    days: dict[tuple[str, str], set[int]] = defaultdict(set)
    for event in events:
        days[event["team"], event["capability"]].add(day_of_iso(event["occurred_at"]))
    watermark = max(max(d) for d in days.values()) - LAG_DAYS - 1
    milestones: set[tuple[Any, ...]] = set()
    states = {}
    for (team, capability), active in days.items():
        found = brute_force(active, watermark, RULES)
        milestones |= {(team, capability, m.kind, str(as_date(m.day)), m.episode) for m in found}
        s = summarize(sorted(active), found)
        states[team, capability] = (
            s.state,
            str(as_date(s.first_use)),
            str(as_date(s.activated_at or 0)),
            str(as_date(s.last_active)),
            s.episode,
            s.active_days,
        )
    return milestones, states


def stored_lifecycle(pipeline_env: Pipeline) -> tuple[list[tuple[Any, ...]], dict[Any, Any]]:
    """The current milestones (a list: one written twice shows) and the lifecycle per key."""
    rows = pipeline_env.rows(
        "SELECT team, capability, milestone, toString(occurred_at) AS day, episode "
        "FROM adoption_milestones_current"
    )
    milestones = [
        (r["team"], r["capability"], r["milestone"], r["day"], int(r["episode"])) for r in rows
    ]
    lifecycle = pipeline_env.rows(
        "SELECT team, capability, state, toString(first_use) AS f, toString(activated_at) AS a, "
        "toString(last_active) AS l, episode, active_days FROM adoption_lifecycle FINAL"
    )
    states = {
        (r["team"], r["capability"]): (
            r["state"],
            r["f"],
            r["a"],
            r["l"],
            int(r["episode"]),
            int(r["active_days"]),
        )
        for r in lifecycle
    }
    return milestones, states
