"""A synthetic organisation and the platform usage it generates, deterministic per seed.

Teams own services and have engineers; each team adopts each platform capability at its own
moment (or never), so adoption grows over the simulated window. The generator yields contract
events in time order together with the ground truth the tests compare the warehouse against.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

TEAM_NAMES = (
    "payments",
    "checkout",
    "search",
    "recommendations",
    "identity",
    "ledger",
    "fraud",
    "notifications",
    "mobile",
    "web",
    "data-eng",
    "ml-research",
    "pricing",
    "logistics",
    "support-tools",
    "growth",
    "billing",
    "catalog",
    "messaging",
    "risk",
)


@dataclass(frozen=True)
class Capability:
    """A platform capability and the event type that counts as using it."""

    name: str
    event_type: str
    platform: str
    apis: tuple[str, ...] = ()
    weight: float = 1.0


CAPABILITIES = (
    Capability("api-gateway", "api_call", "developer-infrastructure", ("orders", "profile"), 6.0),
    Capability("feature-store", "api_call", "data-ml", ("features",), 2.0),
    Capability("risk-scoring", "api_call", "business-capability", ("risk",), 2.0),
    Capability("deploy-pipeline", "deploy", "developer-infrastructure", (), 0.6),
    Capability("ml-training", "model_training", "data-ml", (), 0.25),
    Capability("incident-response", "incident", "developer-infrastructure", (), 0.05),
)


@dataclass(frozen=True)
class Team:
    name: str
    services: tuple[str, ...]
    users: tuple[str, ...]
    activity: float
    adopts_at: dict[str, float]  # capability -> fraction of the window when adopted


@dataclass
class GroundTruth:
    """What was generated: counts per (team, event_type) and per (team, capability)."""

    by_team_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_team_capability: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    last_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_team_type.values())

    def add(self, team: str, event_type: str, capability: str, at: datetime) -> None:
        self.by_team_type[team, event_type] += 1
        self.by_team_capability[team, capability] += 1
        key = (team, event_type)
        self.first_seen.setdefault(key, at)
        self.last_seen[key] = at


@dataclass(frozen=True)
class Organisation:
    teams: tuple[Team, ...]
    capabilities: tuple[Capability, ...] = CAPABILITIES

    @classmethod
    def synthetic(cls, seed: int, teams: int = 12) -> Organisation:
        if not 1 <= teams <= len(TEAM_NAMES):
            raise ValueError(f"teams must be between 1 and {len(TEAM_NAMES)}")
        rng = random.Random(seed)
        made = []
        for name in TEAM_NAMES[:teams]:
            services = tuple(
                f"{name}-{kind}"
                for kind in rng.sample(["api", "worker", "web", "db", "stream"], rng.randint(1, 3))
            )
            users = tuple(f"{name}.eng{k}" for k in range(rng.randint(3, 9)))
            adopts_at = {}
            for capability in CAPABILITIES:
                if rng.random() < 0.8:  # a fifth of teams never adopt a given capability
                    adopts_at[capability.name] = rng.uniform(0.0, 0.75)
            made.append(Team(name, services, users, rng.uniform(0.5, 2.0), adopts_at))
        return cls(tuple(made))


def generate(
    org: Organisation,
    events: int,
    seed: int,
    end: datetime | None = None,
    window: timedelta = timedelta(days=6),
    truth: GroundTruth | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield `events` contract events in time order over `window` ending at `end` (now)."""
    rng = random.Random(seed ^ 0x5EED)
    end = end or datetime.now(UTC)
    start = end - window
    span = window.total_seconds()
    by_name = {c.name: c for c in org.capabilities}
    # Adoption moments in order; the pool of (team, capability) in use grows as time passes.
    adoptions = sorted(
        (adopted, team.name, team, by_name[cap])
        for team in org.teams
        for cap, adopted in team.adopts_at.items()
    )
    pool: list[tuple[Team, Capability]] = []
    cum_weights: list[float] = []
    next_adoption = 0
    for i in range(events):
        fraction = (i + rng.random()) / events
        at = start + timedelta(seconds=span * fraction)
        while next_adoption < len(adoptions) and (
            adoptions[next_adoption][0] <= fraction or not pool
        ):
            _, _, adopter, adopted_capability = adoptions[next_adoption]
            pool.append((adopter, adopted_capability))
            weight = adopter.activity * adopted_capability.weight
            cum_weights.append((cum_weights[-1] if cum_weights else 0.0) + weight)
            next_adoption += 1
        if pool:
            team, capability = rng.choices(pool, cum_weights=cum_weights)[0]
        else:
            team, capability = org.teams[0], org.capabilities[0]
        event = _event(rng, team, capability, at)
        if truth is not None:
            truth.add(team.name, capability.event_type, capability.name, at)
        yield event


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _event(rng: random.Random, team: Team, capability: Capability, at: datetime) -> dict[str, Any]:
    service = rng.choice(team.services)
    event: dict[str, Any] = {
        "event_id": _uuid(rng),
        "event_type": capability.event_type,
        "schema_version": 1,
        "occurred_at": _iso(at),
        "source": "uptake-simulator",
        "team": team.name,
        "service": service,
        "user": rng.choice(team.users),
        "capability": capability.name,
    }
    kind = capability.event_type
    if kind == "api_call":
        api = rng.choice(capability.apis)
        roll = rng.random()
        status = 500 if roll < 0.02 else 404 if roll < 0.05 else 200
        data: dict[str, Any] = {
            "api": api,
            "operation": rng.choice(["GET /v1/items", "POST /v1/items", "GET /v1/items/{id}"]),
            "status_code": status,
            "latency_ms": round(math.exp(rng.gauss(3.0, 0.6)), 2),
        }
        if capability.platform == "business-capability":
            approved = rng.random() < 0.85
            data["outcome"] = {
                "name": "risk_decision",
                "decision": "approve" if approved else "decline",
                "value": round(rng.uniform(10, 5000), 2),
                "unit": "EUR",
            }
    elif kind == "deploy":
        lead_hours = rng.uniform(2, 72)
        data = {
            "deployment_id": f"dep-{_uuid(rng)[:8]}",
            "service": service,
            "environment": "production" if rng.random() < 0.7 else "staging",
            "status": "succeeded" if rng.random() < 0.88 else rng.choice(["failed", "rolled_back"]),
            "commits": [
                {
                    "sha": f"{rng.getrandbits(160):040x}",
                    "committed_at": _iso(at - timedelta(hours=lead_hours * rng.uniform(0.5, 1))),
                }
                for _ in range(rng.randint(1, 3))
            ],
        }
    elif kind == "model_training":
        duration = rng.uniform(120, 4 * 3600)
        succeeded = rng.random() < 0.8
        data = {
            "run_id": f"run-{_uuid(rng)[:8]}",
            "model": f"{team.name}-{rng.choice(['ranker', 'classifier', 'forecaster'])}",
            "status": "succeeded" if succeeded else "failed",
            "duration_s": round(duration, 1),
            "gpu_hours": round(duration / 3600 * rng.choice([0, 1, 2, 4]), 3),
        }
        if succeeded and rng.random() < 0.3:
            data["registered_model"] = data["model"]
    else:
        opened = at - timedelta(minutes=rng.uniform(5, 600))
        data = {
            "incident_id": f"inc-{_uuid(rng)[:8]}",
            "service": service,
            "severity": rng.choice(["sev1", "sev2", "sev3", "sev4"]),
            "status": "resolved",
            "opened_at": _iso(opened),
            "resolved_at": _iso(at),
        }
    event["data"] = data
    return event
