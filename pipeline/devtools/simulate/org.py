"""A synthetic organisation and the platform usage it generates, deterministic per seed.

Teams own services, have engineers and adopt each capability at their own moment (or never).
`generate` yields contract events in time order with the ground truth the tests compare the
warehouse against. Without a `Scenario`, a team uses a capability only once it adopted it (the
fast stream of the pipeline tests); with one (`uptake simulate`), teams also deploy and have
incidents all window long and adopting changes their DORA figures by the scenario's factors
(`Scenario.effects()`; docs/analysts.md, "Impact estimates" and "Trying it"). Pure CPU.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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


@dataclass(frozen=True)
class Scenario:
    """The effects the simulated organisation is built with: what the analyst views recover.

    Factors multiply a team's figure from the moment it adopts (first uses) the capability:
    `lead_time_factor` every commit's lead time and `change_failure_factor` the probability
    that a deploy fails or is rolled back (deploy-pipeline); `restore_factor` the time to restore
    (incident-response). A team registers no model until `registration_delay_days` after its
    first training run; after that a successful run registers one with `registration_rate`.
    """

    lead_time_factor: float = 0.5
    change_failure_factor: float = 0.6
    restore_factor: float = 0.7
    change_failure_rate: float = 0.15  # before adopting deploy-pipeline
    lead_time_hours: float = 24.0  # median commit-to-deploy before adopting, times a team factor
    restore_minutes: float = 90.0  # median time to restore before adopting incident-response
    registration_delay_days: float = 3.0
    registration_rate: float = 0.3
    production_share: float = 0.7
    deploy_share: float = 0.1  # of all events, spread over the teams by activity
    incident_share: float = 0.01  # of all events (an incident sends two)
    legacy_deploy_capability: str = "self-managed-ci"
    legacy_incident_capability: str = "legacy-paging"
    # What every team does whatever it adopted: calls to an in-house API (an undeclared
    # capability) fill the moments before any team adopted anything, so deploys and incidents
    # keep the same share of the events all window long.
    legacy_api_capability: str = "in-house-api"
    # The organisation-wide trend: every team's lead time and time to restore shrink, and its
    # deploy rate grows, by this fraction per week (exp(-/+ trend x weeks since the start)).
    trend_per_week: float = 0.0
    # Weekly seasonality: the deploy rate on Saturdays and Sundays, relative to weekdays.
    weekend_deploy_factor: float = 1.0
    # Adopting deploy-pipeline multiplies a team's deploy rate by this.
    deploy_frequency_factor: float = 1.0
    # A capability teams adopt that changes nothing in delivery (its true factors are all 1).
    no_effect_capability: str = "feature-store"
    # The share of succeeded production deploys that cause an incident naming them in
    # caused_by_deployment (a change failure recovered when the incident is resolved).
    incident_caused_share: float = 0.0
    # Calls through api-gateway to an API its catalog entry does not list (`uncounted_api`):
    # this share of the in-house API calls, from every team, adopter or not. They are no use of
    # api-gateway (the catalog's `apis`), so no view, lifecycle or gauge may count them.
    uncounted_api: str = "orders-legacy"
    uncounted_api_share: float = 0.0
    # Churn: the first team to adopt `churn_capability` stops using it at `churn_at` (a fraction
    # of the window); its moments on it become in-house API calls. Empty: nobody churns.
    churn_capability: str = ""
    churn_at: float = 0.5
    # A re-org: `moved_team` leaves its department for the group `moved_to` at `moved_at` (a
    # fraction of the window). The simulator only records it (GroundTruth.moves); the team
    # catalog that states it is written by `simulate.catalog.write_team_catalog`.
    moved_team: str = ""
    moved_to: str = ""
    moved_at: float = 0.5
    # Adopting incident-response multiplies a team's failed deployment recovery time (both the
    # rollback's duration and the time to resolve the incident a deploy caused) by this.
    recovery_factor: float = 1.0

    def effects(self) -> dict[str, dict[str, float]]:
        """The true factor of each capability on each DORA key (1: no effect).

        `change_failure` multiplies the probability that a production deploy fails or is rolled
        back; `time_to_restore` every incident's opened-to-resolved time; `recovery_time` every
        failed deployment's recovery time (`recovery_factor`, on incident-response adopters).
        """
        keys = (
            "deployment_frequency",
            "lead_time",
            "change_failure",
            "time_to_restore",
            "recovery_time",
        )
        out = {c.name: dict.fromkeys(keys, 1.0) for c in CAPABILITIES}
        out[DEPLOY_PIPELINE].update(
            deployment_frequency=self.deploy_frequency_factor,
            lead_time=self.lead_time_factor,
            change_failure=self.change_failure_factor,
        )
        out[INCIDENT_RESPONSE].update(
            time_to_restore=self.restore_factor, recovery_time=self.recovery_factor
        )
        return out

    def trend(self, weeks: float) -> float:
        """The organisation-wide improvement factor after `weeks` (multiplies durations)."""
        return math.exp(-self.trend_per_week * weeks)

    def __post_init__(self) -> None:
        for name in (
            "lead_time_factor",
            "change_failure_factor",
            "restore_factor",
            "recovery_factor",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0")
        if not 0 <= self.change_failure_rate * max(1.0, self.change_failure_factor) <= 1:
            raise ValueError("change_failure_rate (times change_failure_factor) must be in 0..1")
        if not 0 < self.deploy_share + self.incident_share < 1:
            raise ValueError("deploy_share + incident_share must be between 0 and 1")
        if self.registration_delay_days < 0:
            raise ValueError("registration_delay_days must be 0 or more")
        if not 0 <= self.incident_caused_share <= 1:
            raise ValueError("incident_caused_share must be in 0..1")
        if not (self.weekend_deploy_factor > 0 and self.deploy_frequency_factor > 0):
            raise ValueError("weekend_deploy_factor and deploy_frequency_factor must be > 0")
        if self.no_effect_capability in (DEPLOY_PIPELINE, INCIDENT_RESPONSE):
            raise ValueError("no_effect_capability must be a capability without DORA effects")
        for name in ("uncounted_api_share", "churn_at", "moved_at"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in 0..1")
        if self.uncounted_api in capability_named(API_GATEWAY).apis:
            raise ValueError(f"uncounted_api must not be one of {API_GATEWAY}'s apis")
        if self.churn_capability in (DEPLOY_PIPELINE, INCIDENT_RESPONSE):
            raise ValueError("churn_capability: deploys and incidents go on all window long")
        if bool(self.moved_team) != bool(self.moved_to):
            raise ValueError("moved_team and moved_to go together")


DEPLOY_PIPELINE = "deploy-pipeline"
INCIDENT_RESPONSE = "incident-response"
API_GATEWAY = "api-gateway"


def capability_named(name: str) -> Capability:
    """The simulated capability of that name."""
    return next(c for c in CAPABILITIES if c.name == name)


def counts_as_use(capability: str, event_type: str, api: str | None) -> bool:
    """The catalog's rule (config/capabilities.yaml mirrors CAPABILITIES): an api_call of a
    capability with `apis` is use only when it calls one of them; undeclared: any event."""
    known = next((c for c in CAPABILITIES if c.name == capability), None)
    if known is None:
        return True
    if event_type != known.event_type:
        return False
    return event_type != "api_call" or not known.apis or api in known.apis


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Bucket:
    """What one rollup row (team, capability, event type, bucket) must hold."""

    events: int = 0
    users: set[str] = field(default_factory=set)
    errors: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    production_deploys: int = 0
    production_failures: int = 0
    models_registered: int = 0
    gpu_hours: float = 0.0
    durations: int = 0
    duration_s_sum: float = 0.0
    outcome_count: Counter[str] = field(default_factory=Counter)
    outcome_value: dict[str, float] = field(default_factory=dict)

    def merge(self, other: Bucket) -> None:
        self.events += other.events
        self.users |= other.users
        self.errors += other.errors
        for at in (other.first_seen, other.last_seen):
            if at is not None:
                self._seen(at)
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.production_deploys += other.production_deploys
        self.production_failures += other.production_failures
        self.models_registered += other.models_registered
        self.gpu_hours += other.gpu_hours
        self.durations += other.durations
        self.duration_s_sum += other.duration_s_sum
        self.outcome_count.update(other.outcome_count)
        for key, value in other.outcome_value.items():
            self.outcome_value[key] = self.outcome_value.get(key, 0.0) + value

    def _seen(self, at: datetime) -> None:
        if self.first_seen is None or at < self.first_seen:
            self.first_seen = at
        if self.last_seen is None or at > self.last_seen:
            self.last_seen = at

    def add(self, event: dict[str, Any], at: datetime) -> None:
        """Count one event the way the rollup's materialized view does (0003)."""
        kind, data = event["event_type"], event["data"]
        self.events += 1
        if event.get("user"):
            self.users.add(event["user"])
        self._seen(at)
        status = data.get("status", "")
        if kind == "api_call":
            self.errors += data["status_code"] >= 500
            self.latencies.append(float(data["latency_ms"]))
            outcome = data.get("outcome")
            if outcome:
                key = f"{outcome['name']}/{outcome.get('decision') or ''}"
                self.outcome_count[key] += 1
                self.outcome_value[key] = self.outcome_value.get(key, 0.0) + outcome["value"]
            return
        self.statuses[status] += 1
        if kind == "deploy":
            failed = status in ("failed", "rolled_back")
            self.errors += failed
            if data["environment"] == "production":
                self.production_deploys += 1
                self.production_failures += failed
            if data.get("started_at"):
                self._duration((at - _parse(data["started_at"])).total_seconds())
        elif kind == "model_training":
            self.errors += status == "failed"
            self.models_registered += bool(data.get("registered_model"))
            self.gpu_hours += data.get("gpu_hours", 0.0)
            self._duration(data["duration_s"])
        elif kind == "incident" and data.get("resolved_at"):
            opened, resolved = _parse(data["opened_at"]), _parse(data["resolved_at"])
            self._duration((resolved - opened).total_seconds())

    def _duration(self, seconds: float) -> None:
        self.durations += 1
        self.duration_s_sum += seconds


GRAINS = {
    "minute": lambda at: at.replace(second=0, microsecond=0),
    "hour": lambda at: at.replace(minute=0, second=0, microsecond=0),
    "day": lambda at: at.replace(hour=0, minute=0, second=0, microsecond=0),
}


@dataclass
class GroundTruth:
    """What was generated: counts per (team, event_type) and per (team, capability).

    With `detailed=True` it also records what the rollups, fact tables and views must hold:
    per-minute buckets (`rollup(grain)` sums them to hours and days), every deployment, training
    and incident, each team's first use of each capability (`first_use`: first event that
    counts as use by the catalog's rule, `counts_as_use`), the events that count as use per
    (team, capability, UTC day) (`uses`), the calls that do not (`uncounted`), the churned
    (team, capability) with the moment they stopped (`churned`), the re-org (`moves`: team ->
    (new parent, moment)) and the scenario.
    Times are as the events carry them (milliseconds).
    """

    by_team_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_team_capability: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    last_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    detailed: bool = False
    scenario: Scenario | None = None
    start: datetime | None = None
    end: datetime | None = None
    teams: tuple[str, ...] = ()
    planned_adoption: dict[tuple[str, str], datetime] = field(default_factory=dict)
    first_use: dict[tuple[str, str], datetime] = field(default_factory=dict)
    uses: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    uncounted: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    churned: dict[tuple[str, str], datetime] = field(default_factory=dict)
    moves: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    minutes: dict[tuple[str, str, str, datetime], Bucket] = field(default_factory=dict)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    trainings: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_team_type.values())

    def add(self, team: str, event_type: str, capability: str, at: datetime) -> None:
        self.by_team_type[team, event_type] += 1
        self.by_team_capability[team, capability] += 1
        key = (team, event_type)
        self.first_seen.setdefault(key, at)
        self.last_seen[key] = at

    def use(self, event: dict[str, Any]) -> None:
        """Record whether an event counts as use (`uses`, `first_use`) or not (`uncounted`)."""
        at = _parse(event["occurred_at"])
        team, capability, kind = event["team"], event["capability"], event["event_type"]
        api = event["data"].get("api") if kind == "api_call" else None
        if not counts_as_use(capability, kind, api):
            self.uncounted[team, capability, at.date()] += 1
            return
        self.uses[team, capability, at.date()] += 1
        first = self.first_use.get((team, capability))
        if first is None or at < first:
            self.first_use[team, capability] = at

    def record(self, event: dict[str, Any]) -> None:
        """Record an event in the detailed truth (its fields decide, as in the warehouse)."""
        at = _parse(event["occurred_at"])
        team, capability, kind = event["team"], event["capability"], event["event_type"]
        key = (team, capability, kind, GRAINS["minute"](at))
        bucket = self.minutes.get(key)
        if bucket is None:
            bucket = self.minutes[key] = Bucket()
        bucket.add(event, at)
        data = event["data"]
        fact = {"event_id": event["event_id"], "team": team, "capability": capability, **data}
        fact["at"] = at
        if kind == "deploy":
            self.deployments.append(fact)
        elif kind == "model_training":
            self.trainings.append(fact)
        elif kind == "incident":
            self.incidents.append(fact)

    def rollup(self, grain: str) -> dict[tuple[str, str, str, datetime], Bucket]:
        """The expected rows of usage_<grain>, keyed (team, capability, event_type, bucket)."""
        if grain == "minute":
            return self.minutes
        truncate = GRAINS[grain]
        rows: dict[tuple[str, str, str, datetime], Bucket] = {}
        for (team, capability, kind, minute), bucket in self.minutes.items():
            key = (team, capability, kind, truncate(minute))
            if key not in rows:
                rows[key] = Bucket()
            rows[key].merge(bucket)
        return rows


@dataclass(frozen=True)
class _Stream:
    """What a pool entry emits: `capability`, or `before` until the team adopted it."""

    team: Team
    capability: Capability
    before: Capability | None = None
    adopted: float = 0.0  # fraction of the window


@dataclass
class _World:
    """Per-team state of a scenario run."""

    scenario: Scenario
    lead_scale: dict[str, float]
    start: datetime
    window: timedelta = timedelta(weeks=1)
    first_training: dict[str, datetime] = field(default_factory=dict)

    def weeks(self, at: datetime) -> float:
        return (at - self.start) / timedelta(weeks=1)

    def recovery_scale(self, team: Team, at: datetime) -> float:
        """The factor on a failed deployment's recovery time: `recovery_factor` once the team
        has adopted incident-response."""
        adopted = team.adopts_at.get(INCIDENT_RESPONSE, math.inf)
        return self.scenario.recovery_factor if (at - self.start) / self.window >= adopted else 1.0

    def deploy_rate(self, at: datetime, adopted: bool) -> float:
        """A team's deploy rate at `at`, relative to a weekday at the start before adopting."""
        scenario = self.scenario
        rate = 1.0 / scenario.trend(self.weeks(at))
        if at.weekday() >= 5:
            rate *= scenario.weekend_deploy_factor
        return rate * (scenario.deploy_frequency_factor if adopted else 1.0)


def generate(
    org: Organisation,
    events: int,
    seed: int,
    end: datetime | None = None,
    window: timedelta = timedelta(days=6),
    truth: GroundTruth | None = None,
    scenario: Scenario | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield `events` contract events over `window` ending at `end` (now), in time order.

    With a `scenario` (module docstring) an incident is sent twice, when opened and when
    resolved: the opened event carries the earlier time, so it arrives a little late.
    """
    rng = random.Random(seed ^ 0x5EED)
    end = end or datetime.now(UTC)
    start = end - window
    span = window.total_seconds()
    by_name = {c.name: c for c in org.capabilities}
    world = None
    background = (DEPLOY_PIPELINE, INCIDENT_RESPONSE) if scenario is not None else ()
    pool: list[_Stream] = []  # streams of adopted capabilities
    cum_weights: list[float] = []
    steady: list[_Stream] = []  # scenario: every team's deploys and incidents, all window long
    steady_weights: list[float] = []
    steady_share = 0.0
    churner: Team | None = None  # scenario: the team that stops using churn_capability

    def join(stream: _Stream, streams: list[_Stream], weights: list[float]) -> None:
        streams.append(stream)
        weight = stream.capability.weight * (1.0 if streams is steady else stream.team.activity)
        weights.append((weights[-1] if weights else 0.0) + weight)

    if scenario is not None:
        world = _World(
            scenario, {team.name: rng.uniform(0.5, 2.0) for team in org.teams}, start, window
        )
        # Deploy moments are thinned to the deploy rate: the highest rate is always kept.
        weeks = window / timedelta(weeks=1)
        top_rate = (
            (1.0 / min(1.0, scenario.trend(weeks)))
            * max(1.0, scenario.weekend_deploy_factor)
            * max(1.0, scenario.deploy_frequency_factor)
        )
        in_house = Capability(scenario.legacy_api_capability, "api_call", "", ("internal",))
        activity_weights = list(_accumulate(team.activity for team in org.teams))
        legacy = {
            DEPLOY_PIPELINE: scenario.legacy_deploy_capability,
            INCIDENT_RESPONSE: scenario.legacy_incident_capability,
        }
        shares = {
            DEPLOY_PIPELINE: scenario.deploy_share,
            INCIDENT_RESPONSE: scenario.incident_share,
        }
        activity = sum(team.activity for team in org.teams)
        for team in org.teams:
            for name in background:
                now = by_name[name]
                weight = shares[name] * team.activity / activity
                now = Capability(now.name, now.event_type, now.platform, now.apis, weight)
                before = Capability(legacy[name], now.event_type, "", (), weight)
                stream = _Stream(team, now, before, team.adopts_at.get(name, math.inf))
                join(stream, steady, steady_weights)
        # A constant share of the events, so a team deploys at the same rate all window long
        # (the other streams' share grows with adoption).
        steady_share = scenario.deploy_share + scenario.incident_share
        uncounted = Capability(API_GATEWAY, "api_call", "", (scenario.uncounted_api,))
        churner = min(
            (t for t in org.teams if scenario.churn_capability in t.adopts_at),
            key=lambda t: t.adopts_at[scenario.churn_capability],
            default=None,
        )
    # Adoption moments in order; the pool of (team, capability) in use grows as time passes.
    adoptions = sorted(
        (adopted, team.name, team, by_name[cap])
        for team in org.teams
        for cap, adopted in team.adopts_at.items()
        if cap not in background
    )
    if truth is not None:
        truth.scenario, truth.start, truth.end = scenario, start, end
        truth.teams = tuple(team.name for team in org.teams)
        truth.planned_adoption = {
            (team.name, cap): start + window * adopted
            for team in org.teams
            for cap, adopted in team.adopts_at.items()
        }
        if scenario is not None and churner is not None:
            stopped = max(scenario.churn_at, churner.adopts_at[scenario.churn_capability])
            truth.churned = {(churner.name, scenario.churn_capability): start + window * stopped}
        if scenario is not None and scenario.moved_team:
            moved = start + window * scenario.moved_at
            moved = moved.replace(microsecond=moved.microsecond // 1000 * 1000)  # as stored
            truth.moves = {scenario.moved_team: (scenario.moved_to, moved)}
    next_adoption = 0
    produced = 0
    while produced < events:
        fraction = (produced + rng.random()) / events
        at = start + timedelta(seconds=span * fraction)
        while next_adoption < len(adoptions) and (
            adoptions[next_adoption][0] <= fraction or not (pool or steady)
        ):
            _, _, adopter, adopted_capability = adoptions[next_adoption]
            join(_Stream(adopter, adopted_capability), pool, cum_weights)
            next_adoption += 1
        if steady and rng.random() < steady_share:
            stream = rng.choices(steady, cum_weights=steady_weights)[0]
            kind = stream.capability.event_type
            if kind == "deploy" and world is not None:
                rate = world.deploy_rate(at, fraction >= stream.adopted)
                if rng.random() * top_rate > rate:  # thinned: the team calls its API instead
                    stream = _Stream(stream.team, in_house)
        elif pool:
            stream = rng.choices(pool, cum_weights=cum_weights)[0]
        elif world is not None:  # nothing adopted yet: the in-house API, not more deploys
            team = rng.choices(org.teams, cum_weights=activity_weights)[0]
            stream = _Stream(team, in_house)
        else:
            stream = _Stream(org.teams[0], org.capabilities[0])
        if world is not None:
            if (
                stream.team is churner
                and stream.capability.name == world.scenario.churn_capability
                and fraction >= world.scenario.churn_at
            ):
                stream = _Stream(stream.team, in_house)  # churned: back to the in-house API
            if world.scenario.uncounted_api_share and (
                rng.random() < world.scenario.uncounted_api_share
            ):
                team = rng.choices(org.teams, cum_weights=activity_weights)[0]
                stream = _Stream(team, uncounted)
        adopted = fraction >= stream.adopted
        capability = stream.capability if adopted or stream.before is None else stream.before
        made = _events(rng, stream.team, capability, at, world, adopted, events - produced)
        for event in made:
            if truth is not None:
                moment = at if len(made) == 1 else _parse(event["occurred_at"])
                truth.add(stream.team.name, event["event_type"], event["capability"], moment)
                truth.use(event)
                if truth.detailed:
                    truth.record(event)
            yield event
        produced += len(made)


def _accumulate(values: Iterable[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _events(
    rng: random.Random,
    team: Team,
    capability: Capability,
    at: datetime,
    world: _World | None,
    adopted: bool,
    budget: int,
) -> list[dict[str, Any]]:
    """The events of one moment: one, or an incident's opened and resolved events."""
    if world is None or capability.event_type == "api_call":
        return [_event(rng, team, capability, at)]
    event = _envelope(rng, team, capability, at)
    service = event["service"]
    scenario = world.scenario
    kind = capability.event_type
    if kind == "deploy":
        lead_hours = scenario.lead_time_hours * world.lead_scale[team.name]
        lead_hours *= math.exp(rng.gauss(0.0, 0.5)) * (scenario.lead_time_factor if adopted else 1)
        lead_hours *= scenario.trend(world.weeks(at))
        failure = scenario.change_failure_rate * (scenario.change_failure_factor if adopted else 1)
        deployment_id = f"dep-{_uuid(rng)[:13]}"
        environment = "production" if rng.random() < scenario.production_share else "staging"
        status = rng.choice(["failed", "rolled_back"]) if rng.random() < failure else "succeeded"
        # A rollback's recovery time is its duration (started_at to the deploy event).
        duration = rng.uniform(60, 1800)
        if status == "rolled_back":
            duration *= world.recovery_scale(team, at)
        event["data"] = {
            "deployment_id": deployment_id,
            "service": service,
            "environment": environment,
            "status": status,
            "started_at": _iso(at - timedelta(seconds=duration)),
            "commits": [
                {
                    "sha": f"{rng.getrandbits(160):040x}",
                    "committed_at": _iso(at - timedelta(hours=lead_hours * rng.uniform(0.3, 1))),
                }
                for _ in range(rng.randint(1, 3))
            ],
        }
        if (
            scenario.incident_caused_share > 0
            and budget >= 3
            and event["data"]["environment"] == "production"
            and event["data"]["status"] == "succeeded"
            and rng.random() < scenario.incident_caused_share
        ):
            return _caused_incident(rng, event, world, at, world.recovery_scale(team, at))
        return [event]
    if kind == "model_training":
        first = world.first_training.setdefault(team.name, at)
        duration = rng.uniform(120, 4 * 3600)
        roll = rng.random()
        status = "succeeded" if roll < 0.8 else "failed" if roll < 0.95 else "cancelled"
        data: dict[str, Any] = {
            "run_id": f"run-{_uuid(rng)[:13]}",
            "model": f"{team.name}-{rng.choice(['ranker', 'classifier', 'forecaster'])}",
            "status": status,
            "duration_s": round(duration, 1),
            "gpu_hours": round(duration / 3600 * rng.choice([0, 1, 2, 4]), 3),
        }
        registrable = at - first >= timedelta(days=scenario.registration_delay_days)
        if status == "succeeded" and registrable and rng.random() < scenario.registration_rate:
            data["registered_model"] = data["model"]
        event["data"] = data
        return [event]
    # An incident: opened, then resolved after the time to restore.
    minutes = scenario.restore_minutes * math.exp(rng.gauss(0.0, 0.7))
    minutes *= scenario.trend(world.weeks(at))
    opened = at - timedelta(minutes=minutes * (scenario.restore_factor if adopted else 1))
    event["user"] = None  # incident tooling reports on its own
    body = {
        "incident_id": f"inc-{_uuid(rng)[:13]}",
        "service": service,
        "severity": rng.choice(["sev1", "sev2", "sev3", "sev4"]),
        "status": "resolved",
        "opened_at": _iso(opened),
        "resolved_at": _iso(at),
    }
    event["data"] = body
    if budget < 2:
        return [event]
    opening = {
        **event,
        "event_id": _uuid(rng),
        "occurred_at": body["opened_at"],
        "data": {**body, "status": "opened", "resolved_at": None},
    }
    return [opening, event]


def _caused_incident(
    rng: random.Random, deploy: dict[str, Any], world: _World, at: datetime, scale: float
) -> list[dict[str, Any]]:
    """The deploy moved back in time, and the incident it caused: opened 5 minutes after the
    deployment, resolved at `at` (the failed deployment recovery time is their distance); both
    times `scale` (Scenario.recovery_factor)."""
    scenario = world.scenario
    minutes = scenario.restore_minutes * math.exp(rng.gauss(0.0, 0.7))
    minutes *= scenario.trend(world.weeks(at))
    recovery = (minutes + 5) * scale
    deployed = at - timedelta(minutes=recovery)
    shift = at - deployed
    data = deploy["data"]
    data["started_at"] = _iso(_parse(data["started_at"]) - shift)
    data["commits"] = [
        {**c, "committed_at": _iso(_parse(c["committed_at"]) - shift)} for c in data["commits"]
    ]
    deploy["occurred_at"] = _iso(deployed)
    body = {
        "incident_id": f"inc-{_uuid(rng)[:13]}",
        "service": deploy["service"],
        "severity": rng.choice(["sev1", "sev2", "sev3"]),
        "status": "resolved",
        "opened_at": _iso(deployed + timedelta(minutes=5 * scale)),
        "resolved_at": _iso(at),
        "caused_by_deployment": data["deployment_id"],
    }
    base = {**deploy, "event_type": "incident", "capability": deploy["capability"], "user": None}
    opening = {
        **base,
        "event_id": _uuid(rng),
        "occurred_at": body["opened_at"],
        "data": {**body, "status": "opened", "resolved_at": None},
    }
    resolved = {**base, "event_id": _uuid(rng), "occurred_at": _iso(at), "data": body}
    return [deploy, opening, resolved]


def _envelope(
    rng: random.Random, team: Team, capability: Capability, at: datetime
) -> dict[str, Any]:
    """The fields every simulated event has (its body, `data`, is the caller's)."""
    service = rng.choice(team.services)
    return {
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


def _event(rng: random.Random, team: Team, capability: Capability, at: datetime) -> dict[str, Any]:
    event = _envelope(rng, team, capability, at)
    service = event["service"]
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


_COMMENTS = (
    "Saved my team a week of setup.",
    "The docs for the edge cases are thin.",
    "Fast once it works; onboarding was painful.",
    "Error messages could say what to fix.",
    "Would not go back to the old way.",
)
_SCORES = {  # mostly favourable: CSAT about 0.6, NPS about +20
    "csat": (range(1, 6), (1, 2, 3, 8, 6)),
    "nps": (range(0, 11), (1, 1, 1, 1, 1, 2, 2, 5, 6, 6, 4)),
}


def with_feedback(
    events: Iterable[dict[str, Any]], seed: int, every: int = 150
) -> Iterator[dict[str, Any]]:
    """`events`, and after about one in `every` events with a user, that user's rating of the
    event's capability (a `feedback` event, docs/events.md): csat or nps, mostly favourable,
    a third with a comment. The ratings are extra events: the ground truth does not count them.
    """
    rng = random.Random(seed ^ 0xFEED)
    for event in events:
        yield event
        if not event.get("user") or rng.random() * every >= 1:
            continue
        scale = rng.choice(("csat", "nps"))
        scores, weights = _SCORES[scale]
        data: dict[str, Any] = {"scale": scale, "score": rng.choices(scores, weights)[0]}
        if rng.random() < 1 / 3:
            data["comment"] = rng.choice(_COMMENTS)
        yield {
            **{k: event.get(k) for k in ("occurred_at", "team", "service", "user", "capability")},
            "event_id": _uuid(rng),
            "event_type": "feedback",
            "schema_version": 1,
            "source": "uptake-simulator-survey",
            "data": data,
        }
