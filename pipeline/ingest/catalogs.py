"""The catalogs in force in a worker: loaded at start, reloaded without a restart, stored.

`load()` reads and stores the catalogs on the caller's thread before the stream starts; a broken
file raises SettingsError naming the variable and the line. `enrich(batch)` runs on the event
loop, never blocks, does no I/O: it sets `batch.teams` and notes undeclared capabilities.
`start(submit)` polls the files every UPTAKE_CATALOG_RELOAD_S seconds (never when 0); a broken
file on reload keeps the last good catalog; writes run as jobs given to `submit` (the sink's
thread). `stop()` stops the watchers. docs/catalogs.md, "How the worker uses the catalogs".
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.catalog.backstage_api import BackstageCatalogApi
from pipeline.catalog.capabilities import CapabilityCatalog, UndeclaredCapabilities
from pipeline.catalog.errors import WARNING_KINDS, CatalogError
from pipeline.catalog.sources import TeamSources
from pipeline.catalog.store import CatalogStore, TeamCatalogBuilder
from pipeline.catalog.teams import TeamCatalog
from pipeline.catalog.watcher import CatalogWatcher
from pipeline.config.settings import Settings, SettingsError
from pipeline.contract.decode import DecodedBatch
from pipeline.enrich.teams import TeamResolver
from pipeline.observability.metrics import CATALOG_WARNINGS

log = logging.getLogger("uptake.catalog")

Submit = Callable[[Callable[[], None]], "Future[Any]"]


def first_load_lookback(settings: Settings) -> timedelta:
    """How far back a first load without stored history takes the team files as true: as far
    back as an event may be (the live lateness, or the backfill's age limit)."""
    return timedelta(
        seconds=max(settings.ingest.max_lateness_s, settings.ingest.backfill_max_age_s)
    )


def team_sources(settings: Settings) -> TeamSources:
    """The team catalog's sources: UPTAKE_TEAM_CATALOG's paths and UPTAKE_BACKSTAGE_URL."""
    api = None
    if settings.catalog.backstage_url:
        api = BackstageCatalogApi(
            settings.catalog.backstage_url, settings.catalog.backstage_token.reveal()
        )
    return TeamSources(settings.catalog.team_catalog_paths, api)


def report_warnings(teams: TeamCatalog) -> None:
    """Log every warning of the catalog just put in force and count it by kind."""
    for warning in teams.warnings:
        CATALOG_WARNINGS.labels(kind=warning.kind).inc()
        log.warning("team catalog: %s", warning)


for _kind in WARNING_KINDS:  # every kind is exported from the start, at 0
    CATALOG_WARNINGS.labels(kind=_kind)


def _counts(teams: TeamCatalog) -> str:
    now = datetime.now(UTC)
    return (
        f"{len(teams.teams_at(now))} teams, "
        f"{sum(1 for s in teams.names('service') if teams.assignment_at('service', s, now))} "
        f"services, "
        f"{sum(1 for u in teams.names('user') if teams.assignment_at('user', u, now))} users"
    )


class WorkerCatalogs:
    """The worker's team and capability catalogs; see the module docstring for the contract."""

    def __init__(
        self,
        store: CatalogStore,
        teams: CatalogWatcher[TeamCatalog],
        capabilities: CatalogWatcher[CapabilityCatalog],
        reload_s: float,
    ) -> None:
        self.store = store
        self.resolver = TeamResolver()
        self._team_watcher = teams
        self._capability_watcher = capabilities
        self._reload_s = reload_s
        self._teams = TeamCatalog.empty()
        self._capabilities = CapabilityCatalog(())
        self._loaded: set[str] = set()  # which catalogs had their first load
        self._reported: set[str] = set()  # undeclared names already logged
        self._lock = threading.Lock()
        self._submit: Submit | None = None
        self._dirty = False  # the warehouse is behind the catalogs in force
        self._queued = False  # a write job waits on the sink's thread

    @classmethod
    def load(
        cls, settings: Settings, store: CatalogStore, user_key: Callable[[str], str]
    ) -> WorkerCatalogs:
        """Read both catalogs (raising SettingsError for broken files) and store them."""
        builder = TeamCatalogBuilder(
            history=store.read_team_history(),
            user_key=user_key,
            lookback=first_load_lookback(settings),
        )
        interval = settings.catalog.reload_s or 1.0  # unused when reloading is off
        catalogs: WorkerCatalogs

        def on_teams(catalog: TeamCatalog) -> None:
            catalogs._use_teams(catalog)

        def on_capabilities(catalog: CapabilityCatalog) -> None:
            catalogs._use_capabilities(catalog)

        sources = team_sources(settings)
        team_watcher = CatalogWatcher(
            sources.paths,
            builder,
            on_teams,
            interval_s=interval,
            on_error=_reload_failed("team"),
            name="uptake-team-catalog-watcher",
            read=sources.read,
            live=sources.live,
        )
        capability_watcher = CatalogWatcher.for_capabilities(
            settings.catalog.capabilities_path,
            on_capabilities,
            undeclared=UndeclaredCapabilities(),
            interval_s=interval,
            on_error=_reload_failed("capability"),
        )
        catalogs = cls(store, team_watcher, capability_watcher, settings.catalog.reload_s)
        team_variable = "UPTAKE_TEAM_CATALOG" + (" / UPTAKE_BACKSTAGE_URL" if sources.live else "")
        for watcher, variable in (
            (team_watcher, team_variable),
            (capability_watcher, "UPTAKE_CAPABILITIES"),
        ):
            try:
                watcher.poll()
            except CatalogError as exc:
                raise SettingsError(f"{variable}: the catalog cannot be used: {exc}") from exc
        summary = store.write(catalogs.teams, catalogs.capabilities)
        catalogs._dirty = False
        log.info(
            "catalogs loaded: teams from %s, capabilities from %s; stored %s; %s",
            sources.describe(),
            settings.catalog.capabilities_path,
            summary.line(),
            f"checking for changes every {settings.catalog.reload_s:g}s"
            if settings.catalog.reload_s
            else "reloading is off",
        )
        for problem in catalogs.capabilities.check_against(catalogs.teams, datetime.now(UTC)):
            log.warning("capability catalog: %s", problem)
        return catalogs

    @property
    def teams(self) -> TeamCatalog:
        return self._teams

    @property
    def capabilities(self) -> CapabilityCatalog:
        return self._capabilities

    def enrich(self, batch: DecodedBatch) -> None:
        """Set `batch.teams` and note undeclared capabilities (call after pseudonymising)."""
        batch.teams = self.resolver.resolve(batch)
        capabilities = self._capabilities
        unknown = {e.capability for e in batch.events} - capabilities.names()
        if unknown:
            counts = Counter(e.capability for e in batch.events if e.capability in unknown)
            for name, count in counts.items():
                capabilities.undeclared.record(name, count)
            new = sorted(unknown - self._reported)
            for name in new:
                self._reported.add(name)
                log.warning(
                    "capability %r is not declared in %s: its events are counted under that "
                    "name; declare it to give it an owner and target teams",
                    name,
                    capabilities.source or "the capability catalog",
                )
            if new:
                self._request_write()
        if self._dirty and not self._queued:
            self._request_write()  # an earlier write failed: try again

    def start(self, submit: Submit) -> None:
        """Write future changes through `submit` (the sink's thread) and start reloading."""
        self._submit = submit
        if self._reload_s:
            self._team_watcher.start()
            self._capability_watcher.start()
        if self._dirty:
            self._request_write()

    def reload_now(self) -> bool:
        """Check both catalogs' files once, as the watchers do (for tests and for callers with
        their own schedule); True when one changed. Raises CatalogError for a broken file."""
        teams = self._team_watcher.poll()
        capabilities = self._capability_watcher.poll()
        return teams or capabilities

    def stop(self) -> None:
        self._team_watcher.stop(timeout=1.0)
        self._capability_watcher.stop(timeout=1.0)

    # -- watcher threads ----------------------------------------------------------------------

    def _use_teams(self, catalog: TeamCatalog) -> None:
        self._teams = catalog
        self.resolver.use(catalog)
        report_warnings(catalog)
        if "teams" in self._loaded:
            log.info("team catalog reloaded: %s", _counts(catalog))
        self._loaded.add("teams")
        self._request_write()

    def _use_capabilities(self, catalog: CapabilityCatalog) -> None:
        self._capabilities = catalog
        if "capabilities" in self._loaded:
            log.info(
                "capability catalog reloaded: %d capabilities (%s)",
                len(catalog),
                ", ".join(sorted(catalog.names())),
            )
        self._loaded.add("capabilities")
        self._request_write()

    # -- writes on the sink's thread ----------------------------------------------------------

    def _request_write(self) -> None:
        with self._lock:
            self._dirty = True
            if self._queued or self._submit is None:
                return
            self._queued = True
            submit = self._submit
        try:
            submit(self._write)
        except RuntimeError:  # the executor is shut down: the process is stopping
            with self._lock:
                self._queued = False

    def _write(self) -> None:
        with self._lock:
            self._queued = False
            self._dirty = False
        teams, capabilities = self._teams, self._capabilities
        try:
            summary = self.store.write(teams, capabilities)
        except Exception as exc:
            with self._lock:
                self._dirty = True
            log.warning("could not store the catalogs (%s); trying again with the next batch", exc)
            return
        log.debug("catalogs stored: %s", summary.line())


def _reload_failed(which: str) -> Callable[[BaseException], None]:
    def report(exc: BaseException) -> None:
        log.error("%s catalog reload failed, keeping the last good catalog: %s", which, exc)

    return report
