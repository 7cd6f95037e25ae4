"""The lifecycle rules read literally, one day at a time: the truth the processor must match."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.lifecycle.rules import Milestone, Rules


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
