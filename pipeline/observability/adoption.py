"""Adoption and DORA headline gauges (`uptake_adoption_*`, `uptake_dora_*`), read from ClickHouse
in the background.

Contract: a scrape (`collect()`) never touches ClickHouse; it serves the figures of the last
successful read. A background thread with its own connection re-reads them at most every
`adoption_refresh_s`; a failed read is counted (`uptake_adoption_refresh_errors_total`), logged,
and keeps the previous figures. What each gauge counts: docs/operations.md and docs/design.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pipeline.observability import metrics
from pipeline.observability.config import ObservabilitySettings
from pipeline.warehouse.connection import Warehouse, connect

log = logging.getLogger(__name__)

DAY_S = 86_400
WINDOWS: tuple[tuple[str, int], ...] = (("7d", 7), ("28d", 28))
DORA_WINDOW_DAYS = 28
MAX_CAPABILITIES = 200  # a guard against an emitter inventing capabilities: top 200 by teams
# A first use this many days old without an activation is stalled: longer than the activation
# window (UPTAKE_ACTIVATION_WINDOW_DAYS, 14 by default; the episode can no longer activate) and
# as long as the 28-day window of the other gauges. docs/operations.md#uptakeadoptionstalled.
STALLED_AFTER_DAYS = 28
STAGES: dict[str, tuple[str, ...]] = {  # stage -> lifecycle states (docs/lifecycle.md)
    "trying": ("first_use", "reactivated"),  # used it, not (re)activated in this episode
    "activated": ("activated",),
    "churned": ("churned",),
}

ACTIVE_TEAMS = "uptake_adoption_active_teams"
RATE = "uptake_adoption_rate"
KNOWN_TEAMS = "uptake_adoption_known_teams"
DEPLOY_FREQUENCY = "uptake_dora_deployment_frequency_per_week"
CHANGE_FAILURE = "uptake_dora_change_failure_ratio"
LEAD_TIME = "uptake_dora_lead_time_seconds"
RECOVERY_TIME = "uptake_dora_recovery_time_seconds"
TIME_TO_RESTORE = "uptake_dora_time_to_restore_seconds"
TEAM_ACTIVE = "uptake_adoption_team_active"
TEAM_DEPLOY_FREQUENCY = "uptake_dora_team_deployment_frequency_per_week"
TEAM_CHANGE_FAILURE = "uptake_dora_team_change_failure_ratio"
TEAM_LEAD_TIME = "uptake_dora_team_lead_time_seconds"
TEAM_SERIES_OMITTED = "uptake_adoption_team_series_omitted"
TEAMS_BY_STAGE = "uptake_adoption_teams"
STALLED_TEAMS = "uptake_adoption_stalled_teams"

HELP: dict[str, str] = {
    KNOWN_TEAMS: "Teams with at least one event in the last 28 days.",
    ACTIVE_TEAMS: "Teams that used the capability in the window.",
    RATE: "Target teams that used the capability in the window / its target teams (0-1).",
    DEPLOY_FREQUENCY: "Production deployments that went live per week, over the last 28 days.",
    CHANGE_FAILURE: "Deployments rolled back or causing an incident / deployments, 28 days (0-1).",
    LEAD_TIME: "Median time from commit to production deployment, last 28 days.",
    RECOVERY_TIME: "Median failed deployment recovery time, change failures of the last 28 days.",
    TIME_TO_RESTORE: "Median incident opened-to-resolved time, incidents of the last 28 days.",
    TEAM_ACTIVE: "1 when the team used the capability in the window, else 0 (opt-in, capped).",
    TEAM_DEPLOY_FREQUENCY: "Production deployments per week of the team, last 28 days (opt-in).",
    TEAM_CHANGE_FAILURE: "Change failure ratio of the team, last 28 days (opt-in, capped).",
    TEAM_LEAD_TIME: "Median commit-to-production time of the team, last 28 days (opt-in).",
    TEAM_SERIES_OMITTED: "Per-team series left out by UPTAKE_ADOPTION_PER_TEAM_MAX_SERIES.",
    TEAMS_BY_STAGE: "Teams per lifecycle stage of the capability now: trying, activated, churned.",
    STALLED_TEAMS: "Teams whose first use was over 28 days ago and that never activated it.",
}
LABELS: dict[str, tuple[str, ...]] = {
    KNOWN_TEAMS: (),
    ACTIVE_TEAMS: ("capability", "window"),
    RATE: ("capability", "window"),
    DEPLOY_FREQUENCY: (),
    CHANGE_FAILURE: (),
    LEAD_TIME: (),
    RECOVERY_TIME: (),
    TIME_TO_RESTORE: (),
    TEAM_ACTIVE: ("team", "capability", "window"),
    TEAM_DEPLOY_FREQUENCY: ("team",),
    TEAM_CHANGE_FAILURE: ("team",),
    TEAM_LEAD_TIME: ("team",),
    TEAM_SERIES_OMITTED: (),
    TEAMS_BY_STAGE: ("capability", "stage"),
    STALLED_TEAMS: ("capability",),
}
PER_TEAM = (TEAM_ACTIVE, TEAM_DEPLOY_FREQUENCY, TEAM_CHANGE_FAILURE, TEAM_LEAD_TIME)


@dataclass(frozen=True)
class Dora:
    """DORA keys of the window: deployments, change failures, medians of lead time and recovery.

    Recovery and time to restore are read for the whole organisation only.
    """

    deployments: int = 0
    failures: int = 0
    lead_time_median_s: float | None = None
    recovery_time_median_s: float | None = None
    time_to_restore_median_s: float | None = None

    @property
    def deployment_frequency_per_week(self) -> float:
        return self.deployments / (DORA_WINDOW_DAYS / 7)

    @property
    def change_failure_ratio(self) -> float | None:
        return self.failures / self.deployments if self.deployments else None


@dataclass(frozen=True)
class TeamAdoption:
    """One team's use of capabilities (active in 28 days, and whether also in 7) and its DORA."""

    team: str
    events_28d: int
    active_7d: dict[str, bool]  # capability -> used in the last 7 days (all: in the last 28)
    dora: Dora | None = None

    def series(self) -> int:
        """How many per-team series this team adds."""
        count = len(self.active_7d) * len(WINDOWS)
        if self.dora is not None:
            count += 1 + (self.dora.deployments > 0) + (self.dora.lead_time_median_s is not None)
        return count


@dataclass(frozen=True)
class AdoptionFigures:
    """Everything one read of the warehouse gives."""

    known_teams: int = 0
    active_teams: dict[str, dict[str, int]] = field(default_factory=dict)  # cap -> window -> n
    dora: Dora = field(default_factory=Dora)
    teams: list[TeamAdoption] = field(default_factory=list)  # most active first; opt-in
    # cap -> window -> active target teams / target teams (capabilities with targets only)
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    stages: dict[str, dict[str, int]] = field(default_factory=dict)  # cap -> stage -> teams
    stalled: dict[str, int] = field(default_factory=dict)  # cap -> stalled teams


def _since(now_s: float, days: int) -> int:
    return int((now_s - days * DAY_S) * 1000)


_SINCE = "fromUnixTimestamp64Milli({%s:Int64}, 'UTC')"

# Use as the capability catalog defines it (migration 0008, docs/analysts.md): the event type
# is one of the capability's event_types and, for api_call, the API one of its apis.
_USE = """
(empty(c.event_types) OR has(c.event_types, e.event_type))
AND (e.event_type != 'api_call' OR empty(c.apis)
     OR has(c.apis, JSONExtractString(e.data, 'api')))
"""

ADOPTION_SQL = f"""
SELECT e.capability AS capability,
       uniqExactIf(e.team, e.occurred_at >= {_SINCE % "since_7d"}) AS teams_7d,
       uniqExact(e.team) AS teams_28d,
       uniqExactIf(e.team, e.occurred_at >= {_SINCE % "since_7d"} AND has(t.target_teams, e.team))
           AS targets_7d,
       uniqExactIf(e.team, has(t.target_teams, e.team)) AS targets_28d,
       any(t.targets) AS targets
FROM events AS e
LEFT JOIN (SELECT name, event_types, apis FROM capability_catalog FINAL) AS c
    ON c.name = e.capability
LEFT JOIN capability_targets AS t ON t.capability = e.capability
WHERE e.occurred_at >= {_SINCE % "since_28d"} AND e.team NOT IN ('', 'unowned') AND {_USE}
GROUP BY capability
ORDER BY teams_28d DESC, capability
LIMIT {MAX_CAPABILITIES}
"""

KNOWN_TEAMS_SQL = f"""
SELECT uniqExact(team) FROM events
WHERE occurred_at >= {_SINCE % "since_28d"} AND team NOT IN ('', 'unowned')
"""

# DORA by the standard definitions, from the dora_deployments view (0006, docs/analysts.md):
# deployments went live (succeeded or rolled back); change failures were rolled back or named
# by an incident; lead time per commit of a deployment; recovery from the failing deployment.
DEPLOYS_SQL = f"""
SELECT team, countIf(deployed) AS deployments, countIf(change_failure) AS failures
FROM dora_deployments
WHERE deployed_at >= {_SINCE % "since_dora"}
GROUP BY team
"""

_COMMIT_LEAD_TIMES = f"""
SELECT team, lead_s
FROM dora_deployments
ARRAY JOIN lead_times_s AS lead_s
WHERE deployed_at >= {_SINCE % "since_dora"}
"""

LEAD_TIME_SQL = f"SELECT count(), quantileExactInclusive(0.5)(lead_s) FROM ({_COMMIT_LEAD_TIMES})"
TEAM_LEAD_TIME_SQL = f"""
SELECT team, quantileExactInclusive(0.5)(lead_s) FROM ({_COMMIT_LEAD_TIMES})
WHERE team != '' GROUP BY team
"""

RECOVERY_SQL = f"""
SELECT
    (SELECT count() FROM dora_deployments
     WHERE deployed_at >= {_SINCE % "since_dora"} AND recovery_time_s IS NOT NULL),
    (SELECT quantileExactInclusive(0.5)(assumeNotNull(recovery_time_s)) FROM dora_deployments
     WHERE deployed_at >= {_SINCE % "since_dora"} AND recovery_time_s IS NOT NULL),
    (SELECT count() FROM incident_restores
     WHERE opened_at >= {_SINCE % "since_dora"} AND time_to_restore_s IS NOT NULL),
    (SELECT quantileExactInclusive(0.5)(assumeNotNull(time_to_restore_s)) FROM incident_restores
     WHERE opened_at >= {_SINCE % "since_dora"} AND time_to_restore_s IS NOT NULL)
"""

_STAGE_COUNTS = ", ".join(
    f"countIf(has({list(states)!r}, state)) AS {stage}" for stage, states in STAGES.items()
)
# The lifecycle as the worker keeps it (adoption_lifecycle, docs/lifecycle.md): one row per
# (team, capability), its state the latest milestone.
LIFECYCLE_SQL = f"""
SELECT capability,
       {_STAGE_COUNTS},
       countIf(state = 'first_use' AND first_use < toDate({_SINCE % "since_stalled"}, 'UTC'))
           AS stalled
FROM adoption_lifecycle FINAL
WHERE team NOT IN ('', 'unowned')
GROUP BY capability
ORDER BY count() DESC, capability
LIMIT {MAX_CAPABILITIES}
"""

TEAM_ADOPTION_SQL = f"""
SELECT e.team AS team, e.capability AS capability, count() AS events,
       countIf(e.occurred_at >= {_SINCE % "since_7d"}) > 0 AS active_7d
FROM events AS e
LEFT JOIN (SELECT name, event_types, apis FROM capability_catalog FINAL) AS c
    ON c.name = e.capability
WHERE e.occurred_at >= {_SINCE % "since_28d"} AND e.team NOT IN ('', 'unowned') AND {_USE}
GROUP BY team, capability
"""


def read_figures(warehouse: Warehouse, now_s: float, *, per_team: bool) -> AdoptionFigures:
    """Read the adoption and DORA figures as of `now_s` (unix seconds) from the warehouse."""
    params = {
        "since_7d": _since(now_s, 7),
        "since_28d": _since(now_s, 28),
        "since_dora": _since(now_s, DORA_WINDOW_DAYS),
        "since_stalled": _since(now_s, STALLED_AFTER_DAYS),
    }
    active: dict[str, dict[str, int]] = {}
    rates: dict[str, dict[str, float]] = {}
    for capability, teams_7d, teams_28d, targets_7d, targets_28d, targets in warehouse.rows(
        ADOPTION_SQL, params
    ):
        active[str(capability)] = {"7d": int(teams_7d), "28d": int(teams_28d)}
        if int(targets or 0) > 0:
            rates[str(capability)] = {
                "7d": int(targets_7d) / int(targets),
                "28d": int(targets_28d) / int(targets),
            }
    known = int(warehouse.rows(KNOWN_TEAMS_SQL, params)[0][0])
    deploys = {
        str(team): (int(n), int(failed)) for team, n, failed in warehouse.rows(DEPLOYS_SQL, params)
    }
    commits, median = warehouse.rows(LEAD_TIME_SQL, params)[0]
    recoveries, recovery, restores, restore = warehouse.rows(RECOVERY_SQL, params)[0]
    dora = Dora(
        deployments=sum(n for n, _ in deploys.values()),
        failures=sum(failed for _, failed in deploys.values()),
        lead_time_median_s=float(median) if int(commits) else None,
        recovery_time_median_s=float(recovery) if int(recoveries) else None,
        time_to_restore_median_s=float(restore) if int(restores) else None,
    )
    teams = _read_teams(warehouse, params, deploys) if per_team else []
    stages, stalled = {}, {}
    for capability, *by_stage, stalled_teams in warehouse.rows(LIFECYCLE_SQL, params):
        stages[str(capability)] = dict(zip(STAGES, map(int, by_stage), strict=True))
        stalled[str(capability)] = int(stalled_teams)
    return AdoptionFigures(known, active, dora, teams, rates, stages, stalled)


def _read_teams(
    warehouse: Warehouse, params: dict[str, int], deploys: dict[str, tuple[int, int]]
) -> list[TeamAdoption]:
    lead = {str(team): float(s) for team, s in warehouse.rows(TEAM_LEAD_TIME_SQL, params)}
    events: dict[str, int] = {}
    active_7d: dict[str, dict[str, bool]] = {}
    for team, capability, count, recent in warehouse.rows(TEAM_ADOPTION_SQL, params):
        events[team] = events.get(team, 0) + int(count)
        active_7d.setdefault(team, {})[str(capability)] = bool(recent)
    teams = []
    for team in sorted(events, key=lambda t: (-events[t], t)):
        dora = None
        if team in deploys:
            n, failed = deploys[team]
            dora = Dora(n, failed, lead.get(team))
        teams.append(TeamAdoption(team, events[team], dict(sorted(active_7d[team].items())), dora))
    return teams


def _family(name: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], labels=LABELS[name])


def families(figures: AdoptionFigures, per_team_max_series: int = 0) -> list[Metric]:
    """The metric families of a read; per-team ones only when `per_team_max_series` > 0."""
    known = _family(KNOWN_TEAMS)
    known.add_metric([], figures.known_teams)
    active, rate = _family(ACTIVE_TEAMS), _family(RATE)
    for capability, by_window in figures.active_teams.items():
        for window, _ in WINDOWS:
            active.add_metric([capability, window], by_window[window])
            if capability in figures.rates:
                rate.add_metric([capability, window], figures.rates[capability][window])
    frequency, failure, lead = (
        _family(DEPLOY_FREQUENCY),
        _family(CHANGE_FAILURE),
        _family(LEAD_TIME),
    )
    _add_dora(figures.dora, [], frequency, failure, lead)
    recovery, restore = _family(RECOVERY_TIME), _family(TIME_TO_RESTORE)
    if figures.dora.recovery_time_median_s is not None:
        recovery.add_metric([], figures.dora.recovery_time_median_s)
    if figures.dora.time_to_restore_median_s is not None:
        restore.add_metric([], figures.dora.time_to_restore_median_s)
    by_stage, stalled = _family(TEAMS_BY_STAGE), _family(STALLED_TEAMS)
    for capability, counts in figures.stages.items():
        for stage, teams in counts.items():
            by_stage.add_metric([capability, stage], teams)
        stalled.add_metric([capability], figures.stalled[capability])
    out: list[Metric] = [
        *(known, active, rate, frequency, failure, lead, recovery, restore),
        *(by_stage, stalled),
    ]
    if per_team_max_series > 0:
        out += _team_families(figures.teams, per_team_max_series)
    return out


def _add_dora(
    dora: Dora,
    labels: list[str],
    frequency: GaugeMetricFamily,
    failure: GaugeMetricFamily,
    lead: GaugeMetricFamily,
) -> None:
    frequency.add_metric(labels, dora.deployment_frequency_per_week)
    if dora.change_failure_ratio is not None:
        failure.add_metric(labels, dora.change_failure_ratio)
    if dora.lead_time_median_s is not None:
        lead.add_metric(labels, dora.lead_time_median_s)


def _team_families(teams: Sequence[TeamAdoption], max_series: int) -> list[Metric]:
    active = _family(TEAM_ACTIVE)
    frequency, failure, lead = (
        _family(TEAM_DEPLOY_FREQUENCY),
        _family(TEAM_CHANGE_FAILURE),
        _family(TEAM_LEAD_TIME),
    )
    used = omitted = 0
    for team in teams:  # most active first
        size = team.series()
        if used + size > max_series:
            omitted += size
            continue
        used += size
        for capability, recent in team.active_7d.items():
            active.add_metric([team.team, capability, "7d"], 1.0 if recent else 0.0)
            active.add_metric([team.team, capability, "28d"], 1.0)
        if team.dora is not None:
            _add_dora(team.dora, [team.team], frequency, failure, lead)
    left_out = _family(TEAM_SERIES_OMITTED)
    left_out.add_metric([], omitted)
    return [active, frequency, failure, lead, left_out]


class AdoptionCollector(Collector):
    """Serves the adoption gauges from a cache that a background thread refreshes.

    `connect` opens the collector's own warehouse connection (on first use, and again after a
    failed read); `clock` gives unix seconds. Register it with `REGISTRY.register(collector)`:
    registration uses `describe()`, so it does not query the warehouse either.
    """

    def __init__(
        self,
        connect: Callable[[], Warehouse],
        settings: ObservabilitySettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._connect = connect
        self._clock = clock
        self._warehouse: Warehouse | None = None
        self._families: tuple[Metric, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self) -> Iterable[Metric]:
        names = (
            list(HELP)
            if self.settings.adoption_per_team_max_series > 0
            else [name for name in HELP if name not in (*PER_TEAM, TEAM_SERIES_OMITTED)]
        )
        return [_family(name) for name in names]

    def collect(self) -> Iterable[Metric]:
        return self._families

    def refresh(self) -> bool:
        """Read the figures once and swap them in; False (and the old figures) on failure."""
        started = time.perf_counter()
        try:
            if self._warehouse is None:
                self._warehouse = self._connect()
            figures = read_figures(
                self._warehouse,
                self._clock(),
                per_team=self.settings.adoption_per_team_max_series > 0,
            )
        except Exception as exc:
            metrics.ADOPTION_REFRESH_ERRORS.inc()
            log.warning("adoption gauges not refreshed (the previous values stay): %s", exc)
            self._close_warehouse()
            return False
        self._families = tuple(families(figures, self.settings.adoption_per_team_max_series))
        metrics.ADOPTION_REFRESH_DURATION.set(time.perf_counter() - started)
        metrics.ADOPTION_REFRESHED.set(self._clock())
        return True

    def start(self) -> None:
        """Refresh now and then every `adoption_refresh_s` seconds, in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="uptake-adoption-gauges", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the refresh thread (a read in progress finishes first) and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # a read still runs and uses the connection; the daemon thread dies with us
            self._thread = None
        self._close_warehouse()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.settings.adoption_refresh_s)

    def _close_warehouse(self) -> None:
        if self._warehouse is not None:
            try:
                self._warehouse.close()
            except Exception:  # closing a broken connection: nothing left to do
                log.debug("closing the adoption gauges' warehouse connection failed")
            self._warehouse = None


def start_adoption_gauges(
    warehouse_url: str,
    settings: ObservabilitySettings,
    registry: CollectorRegistry = metrics.REGISTRY,
) -> AdoptionCollector | None:
    """Register the adoption gauges in `registry` and start refreshing them; None when off."""
    if not settings.adoption_enabled:
        return None
    collector = AdoptionCollector(lambda: connect(warehouse_url), settings)
    registry.register(collector)
    collector.start()
    return collector
