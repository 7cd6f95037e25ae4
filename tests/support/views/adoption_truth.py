"""The adoption views of 0008-0010 recomputed in plain Python from the simulator's events.

Inputs: the generated events (team, capability, event type, data.api, user, time: what
`GroundTruth` records, plus the API and the user), the capability catalog file
(config/capabilities.yaml: event_types, apis, target_teams, platform) and the team catalog as
the worker stored it (`team_catalog`: undated rows of config/teams are dated when loaded, and
user names are pseudonyms, so the stored rows are the catalog's only exact form). The rules are
those of docs/analysts.md ("Use and denominators", "Adoption by platform, group and developer").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline.catalog.capabilities import CapabilityCatalog

WINDOW_DAYS = 28


def _dt(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass
class Truth:
    """Use, denominators and memberships, from the events and the catalogs."""

    events: dict[tuple[str, str, date], int] = field(default_factory=dict)
    first_seen: dict[tuple[str, str, date], datetime] = field(default_factory=dict)
    user_uses: set[tuple[str, str, date]] = field(default_factory=set)
    first_day: date = date.max
    last_day: date = date.min
    user_days: set[date] = field(default_factory=set)  # days of events with a user
    targets: dict[tuple[str, date], frozenset[str]] = field(default_factory=dict)
    declared: dict[str, str] = field(default_factory=dict)  # capability -> platform
    leaves: dict[date, frozenset[str]] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    users: list[tuple[str, str, datetime, datetime]] = field(default_factory=list)

    # --- derived ---------------------------------------------------------------------------

    def used_days(self) -> dict[tuple[str, str], set[date]]:
        out: dict[tuple[str, str], set[date]] = defaultdict(set)
        for team, capability, day in self.events:
            out[team, capability].add(day)
        return out

    def firsts(self) -> dict[str, dict[str, date]]:
        out: dict[str, dict[str, date]] = defaultdict(dict)
        for (team, capability), days in self.used_days().items():
            out[capability][team] = min(days)
        return out

    def all_targets(self, capability: str, day: date) -> frozenset[str]:
        """capability_targets_daily_all: every leaf team of the day for an undeclared one."""
        if capability in self.declared:
            return self.targets.get((capability, day), frozenset())
        return self.leaves.get(day, frozenset())


def build(
    events: list[dict[str, Any]],
    user_keys: dict[str, str],
    capabilities: CapabilityCatalog,
    team_rows: list[dict[str, Any]],
    now: datetime,
) -> Truth:
    """`user_keys`: each raw user's pseudonym; `team_rows`: team_catalog FINAL rows."""
    t = Truth()
    for event in events:
        at = _dt(event["occurred_at"]).astimezone(UTC)
        day = at.date()
        t.first_day, t.last_day = min(t.first_day, day), max(t.last_day, day)
        capability, kind = event["capability"], event["event_type"]
        api = (event.get("data") or {}).get("api") if kind == "api_call" else None
        if event.get("user"):
            t.user_days.add(day)
        if capability in capabilities and not capabilities.resolve(capability).counts_as_use(
            kind, api
        ):
            continue
        key = (event["team"], capability, day)
        t.events[key] = t.events.get(key, 0) + 1
        if key not in t.first_seen or at < t.first_seen[key]:
            t.first_seen[key] = at
        if event.get("user"):
            t.user_uses.add((user_keys[event["user"]], capability, day))

    rows = [r for r in team_rows if not r["retracted"]]
    team_rows_ = [r for r in rows if r["kind"] == "team"]
    parents = {r["parent"] for r in team_rows_ if r["parent"]}
    leaves: dict[date, set[str]] = defaultdict(set)
    for r in team_rows_:
        if r["name"] in parents:
            continue
        start = max(_dt(r["valid_from"]).date(), t.first_day)
        end = min((_dt(r["valid_to"]) - timedelta(milliseconds=1)).date(), t.last_day)
        for day in _days(start, end) if start <= end else []:
            leaves[day].add(r["name"])
    t.leaves = {day: frozenset(teams) for day, teams in leaves.items()}

    current = {
        r["name"]: r["parent"]
        for r in team_rows_
        if _dt(r["valid_from"]) <= now < _dt(r["valid_to"])
    }
    for team in current:
        chain: list[str] = []
        parent = current[team]
        while parent and len(chain) < 6:
            chain.append(parent)
            parent = current.get(parent, "")
        t.groups[team] = tuple(chain)

    children: dict[str, set[str]] = defaultdict(set)
    for name, parent in current.items():
        if parent:
            children[parent].add(name)

    def under(name: str) -> set[str]:
        if name not in current:
            return {name}
        if not children.get(name):
            return {name}
        return set().union(*(under(c) for c in children[name]))

    for capability in capabilities:
        if not capability.declared:
            continue
        t.declared[capability.name] = str(capability.platform)
        listed = (
            None
            if capability.target_teams is None
            else set().union(*(under(n) for n in capability.target_teams))
        )
        for day, teams in t.leaves.items():
            t.targets[capability.name, day] = (
                teams if listed is None else frozenset(x for x in listed if x in teams)
            )

    t.users = [
        (r["team"], r["name"], _dt(r["valid_from"]), _dt(r["valid_to"]))
        for r in rows
        if r["kind"] == "user"
    ]
    return t


# --- the views ------------------------------------------------------------------------------


def capability_use_days(t: Truth) -> dict[tuple[str, str, date], dict[str, Any]]:
    return {key: {"events": n, "first_seen": t.first_seen[key]} for key, n in t.events.items()}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def adoption_rates_daily(t: Truth) -> dict[tuple[str, date], dict[str, Any]]:
    used, firsts = t.used_days(), t.firsts()
    out = {}
    for (capability, day), targets in t.targets.items():
        adopted = sum(1 for x in targets if firsts[capability].get(x, date.max) <= day)
        window = {day - timedelta(days=i) for i in range(WINDOW_DAYS)}
        active = sum(1 for x in targets if used.get((x, capability), set()) & window)
        out[capability, day] = {
            "target_teams": len(targets),
            "adopted_target_teams": adopted,
            "active_target_teams_28d": active,
            "adoption_rate": _rate(adopted, len(targets)),
            "active_rate_28d": _rate(active, len(targets)),
        }
    return out


def _by_capability_day(t: Truth) -> dict[tuple[str, date], set[str]]:
    out: dict[tuple[str, date], set[str]] = defaultdict(set)
    for team, capability, day in t.events:
        out[capability, day].add(team)
    return out


def adoption_daily(t: Truth) -> dict[tuple[str, date], dict[str, Any]]:
    used = _by_capability_day(t)
    out = {}
    for capability, first in t.firsts().items():
        for day in _days(min(first.values()), t.last_day):
            teams = used.get((capability, day), set())
            targets = t.all_targets(capability, day)
            adopted_target = sum(1 for x in targets if first.get(x, date.max) <= day)
            active_target = len(teams & targets)
            out[capability, day] = {
                "active_teams": len(teams),
                "active_target_teams": active_target,
                "new_adopters": sum(1 for d in first.values() if d == day),
                "adopted_teams": sum(1 for d in first.values() if d <= day),
                "adopted_target_teams": adopted_target,
                "target_teams": len(targets),
                "active_rate": _rate(active_target, len(targets)),
                "adoption_rate": _rate(adopted_target, len(targets)),
            }
    return out


def adoption_weekly(t: Truth) -> dict[tuple[str, date], dict[str, Any]]:
    used = _by_capability_day(t)
    out = {}
    for capability, first in t.firsts().items():
        week = _monday(min(first.values()))
        while week <= _monday(t.last_day):
            end = min(week + timedelta(days=6), t.last_day)
            teams = set().union(
                *(used.get((capability, week + timedelta(days=i)), set()) for i in range(7))
            )
            targets = t.all_targets(capability, end)
            adopted_target = sum(1 for x in targets if first.get(x, date.max) <= end)
            active_target = len(teams & targets)
            out[capability, week] = {
                "active_teams": len(teams),
                "active_target_teams": active_target,
                "new_adopters": sum(1 for d in first.values() if _monday(d) == week),
                "adopted_teams": sum(1 for d in first.values() if d <= end),
                "adopted_target_teams": adopted_target,
                "target_teams": len(targets),
                "active_rate": _rate(active_target, len(targets)),
                "adoption_rate": _rate(adopted_target, len(targets)),
            }
            week += timedelta(days=7)
    return out


def _target_days(t: Truth) -> list[tuple[str, date, str, bool, bool]]:
    """adoption_target_days: (capability, day, team, adopted, active_28d)."""
    used, firsts = t.used_days(), t.firsts()
    out = []
    for (capability, day), targets in t.targets.items():
        window = {day - timedelta(days=i) for i in range(WINDOW_DAYS)}
        for team in targets:
            adopted = firsts.get(capability, {}).get(team, date.max) <= day
            active = bool(used.get((team, capability), set()) & window)
            out.append((capability, day, team, adopted, active))
    return out


def _pairs(acc: dict[Any, list[int]], key: Any, adopted: bool, active: bool) -> None:
    row = acc.setdefault(key, [0, 0, 0])
    row[0] += 1
    row[1] += adopted
    row[2] += active


def adoption_by_platform(t: Truth) -> dict[tuple[str, date], dict[str, Any]]:
    acc: dict[tuple[str, date], list[int]] = {}
    caps: dict[tuple[str, date], set[str]] = defaultdict(set)
    for capability, day, _team, adopted, active in _target_days(t):
        key = (t.declared[capability], day)
        _pairs(acc, key, adopted, active)
        caps[key].add(capability)
    return {
        key: {
            "capabilities": len(caps[key]),
            "target_pairs": n,
            "adopted_pairs": a,
            "active_pairs_28d": b,
            "adoption_rate": _rate(a, n),
            "active_rate_28d": _rate(b, n),
        }
        for key, (n, a, b) in acc.items()
    }


def adoption_by_group(t: Truth) -> dict[tuple[str, str, date], dict[str, Any]]:
    acc: dict[tuple[str, str, date], list[int]] = {}
    for capability, day, team, adopted, active in _target_days(t):
        for group in t.groups.get(team, ()):
            _pairs(acc, (group, capability, day), adopted, active)
    return {
        key: {
            "target_teams": n,
            "adopted_target_teams": a,
            "active_target_teams_28d": b,
            "adoption_rate": _rate(a, n),
            "active_rate_28d": _rate(b, n),
        }
        for key, (n, a, b) in acc.items()
    }


def developer_adoption_weekly(t: Truth) -> dict[tuple[str, str, date], dict[str, Any]]:
    last = max(t.user_days)
    weeks = sorted({_monday(day) for day in t.user_days})
    out = {}
    for week in weeks:
        end = min(week + timedelta(days=6), last)
        end_of_day = datetime.combine(end, datetime.min.time(), UTC) + timedelta(days=1)
        members: dict[str, set[str]] = defaultdict(set)
        for team, user, start, stop in t.users:
            if start.date() <= end and stop > end_of_day - timedelta(milliseconds=1):
                members[team].add(user)
        active: dict[str, set[str]] = defaultdict(set)
        for user, capability, day in t.user_uses:
            if end - timedelta(days=WINDOW_DAYS) < day <= end:
                active[capability].add(user)
        for team, users in members.items():
            for capability, who in active.items():
                n = len(users & who)
                out[team, capability, week] = {
                    "members": len(users),
                    "active_members_28d": n,
                    "active_member_share": _rate(n, len(users)),
                }
    return out
