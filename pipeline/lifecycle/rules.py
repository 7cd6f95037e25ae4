"""The adoption lifecycle rules: milestones of one team x capability from its active days.

Pure functions. A day is an int, days since 1970-01-01 in UTC (event time, never the wall
clock). `milestones(days, watermark)` (first use, activated, churned, reactivated) depends on the
set of days and the watermark only, never on their order or duplicates: the incremental engine
relies on that. The rules: docs/lifecycle.md#the-rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, NamedTuple

FIRST_USE: Final = "first_use"
ACTIVATED: Final = "activated"
CHURNED: Final = "churned"
REACTIVATED: Final = "reactivated"
KINDS = (FIRST_USE, ACTIVATED, CHURNED, REACTIVATED)

EPOCH = date(1970, 1, 1)
NO_DAY = -(10**6)  # "no watermark yet": before any day a Date column can hold


def day_of(moment: datetime) -> int:
    """The UTC day of an aware datetime, as days since 1970-01-01."""
    return int(moment.timestamp() // 86400)


def as_date(day: int) -> date:
    return EPOCH + timedelta(days=day)


def day_of_date(value: date) -> int:
    return (value - EPOCH).days


def day_of_iso(text: str) -> int:
    """The UTC day of an RFC 3339 timestamp (what emitters send as `occurred_at`)."""
    return day_of(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC))


@dataclass(frozen=True)
class Rules:
    """The thresholds of the lifecycle, from settings (UPTAKE_ACTIVATION_DAYS, …)."""

    activation_days: int = 3
    activation_window_days: int = 14
    churn_days: int = 28

    def __post_init__(self) -> None:
        if self.activation_days < 1:
            raise ValueError("activation needs at least 1 active day")
        if self.activation_window_days < self.activation_days:
            raise ValueError("the activation window is shorter than the days it must hold")
        if self.churn_days < 1:
            raise ValueError("churn needs at least 1 idle day")


class Milestone(NamedTuple):
    """One milestone: what, on which day, in which episode (1 = the first adoption)."""

    kind: str
    day: int
    episode: int

    @property
    def identity(self) -> tuple[str, int]:
        """What the warehouse and the topic key a milestone by (with team and capability)."""
        return (self.kind, self.day)


def milestones(days: Sequence[int], watermark: int, rules: Rules) -> list[Milestone]:
    """The milestones of one team x capability, in time order.

    `days` are the distinct active days in ascending order; `watermark` is the newest day
    whose activity is complete (churns are declared only up to it).
    """
    return walk(days, watermark, rules)[0]


def walk(days: Sequence[int], watermark: int, rules: Rules) -> tuple[list[Milestone], int | None]:
    """The milestones, and the day of the churn that waits for the watermark (None: none).

    The milestones change with the watermark only when it reaches that day.
    """
    found: list[Milestone] = []
    n = len(days)
    start = 0
    episode = 0
    while start < n:
        end = start + 1  # the episode is days[start:end]
        while end < n and days[end] - days[end - 1] <= rules.churn_days:
            end += 1
        episode += 1
        first = days[start]
        found.append(Milestone(FIRST_USE if episode == 1 else REACTIVATED, first, episode))
        nth = start + rules.activation_days - 1
        if nth < end and days[nth] - first < rules.activation_window_days:
            found.append(Milestone(ACTIVATED, days[nth], episode))
        churn = days[end - 1] + rules.churn_days
        if churn > watermark:
            return found, churn
        found.append(Milestone(CHURNED, churn, episode))
        start = end
    return found, None


class Summary(NamedTuple):
    """The current lifecycle of one team x capability (a row of `adoption_lifecycle`)."""

    state: str  # the kind of the latest milestone
    state_since: int
    first_use: int
    activated_at: int | None  # the first activation, if any
    churned_at: int | None  # the latest churn, if any
    last_active: int
    episode: int
    active_days: int


def summarize(days: Sequence[int], found: Sequence[Milestone]) -> Summary:
    """The current lifecycle from the active days and their milestones (both non-empty)."""
    latest = found[-1]
    activations = [m.day for m in found if m.kind == ACTIVATED]
    churns = [m.day for m in found if m.kind == CHURNED]
    return Summary(
        state=latest.kind,
        state_since=latest.day,
        first_use=days[0],
        activated_at=activations[0] if activations else None,
        churned_at=churns[-1] if churns else None,
        last_active=days[-1],
        episode=latest.episode,
        active_days=len(days),
    )
