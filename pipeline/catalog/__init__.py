"""Catalogs: what the platform offers and who the organisation is, over time.

- `capabilities`: the platform capabilities, which events count as using each, target teams
  and north-star metrics (`config/capabilities.yaml`).
- `teams`: teams and parent groups, service owners and user members with validity intervals,
  so that a re-org does not rewrite history; loaded from Backstage catalog files (`backstage`,
  Locations followed), a Backstage backend's catalog API (`backstage_api`) and an ownership CSV
  (`ownership`), all at once as one catalog through `sources`. What cannot be used is left out
  as a `CatalogWarning`; only unreadable files raise `CatalogError`.
- `watcher`: reloading both without a restart.

Formats and semantics: docs/catalogs.md.
"""

from pipeline.catalog.capabilities import (
    Capability,
    CapabilityCatalog,
    NorthStar,
    UndeclaredCapabilities,
    counts_as_use,
    load_capabilities,
)
from pipeline.catalog.errors import CatalogError, CatalogWarning
from pipeline.catalog.sources import TeamSources, load_team_catalog, load_team_snapshot
from pipeline.catalog.teams import (
    OPEN_END,
    UNOWNED,
    Assignment,
    Fact,
    TeamCatalog,
    TeamSnapshot,
)
from pipeline.catalog.watcher import CatalogWatcher

__all__ = [
    "OPEN_END",
    "UNOWNED",
    "Assignment",
    "Capability",
    "CapabilityCatalog",
    "CatalogError",
    "CatalogWarning",
    "CatalogWatcher",
    "Fact",
    "NorthStar",
    "TeamCatalog",
    "TeamSnapshot",
    "TeamSources",
    "UndeclaredCapabilities",
    "counts_as_use",
    "load_capabilities",
    "load_team_catalog",
    "load_team_snapshot",
]
