"""Team attribution: the team each event counts for, at the time it happened.

First match wins: the owner of its `service` at `occurred_at`, its own `team`, its `user`'s team
at `occurred_at`, else `UNOWNED`. Pure and synchronous: `resolve(batch)` returns one team per
event and needs `batch.user_keys` (the pseudonymiser runs first). `use(catalog)` swaps the
catalog from any thread; a batch is resolved against one catalog. Docs and cost:
docs/catalogs.md#the-team-an-event-counts-for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.catalog.teams import UNOWNED, Kind, TeamCatalog
from pipeline.contract.decode import DecodedBatch
from pipeline.contract.events import Envelope

_BEGINNING = datetime.min.replace(tzinfo=UTC)
_FOREVER = datetime.max.replace(tzinfo=UTC)
_CACHE_LIMIT = 100_000  # names per kind; cleared when full (a user population can be large)

Span = tuple[datetime, datetime, str | None]
"""[start, end) and the team over it; None where the catalog names nobody."""


@dataclass
class _State:
    """A catalog and the spans looked up in it; replaced whole when the catalog changes."""

    catalog: TeamCatalog
    services: dict[str, Span] = field(default_factory=dict)
    users: dict[str, Span] = field(default_factory=dict)

    def span(self, kind: Kind, name: str, at: datetime) -> Span:
        """The span of `name`'s history that contains `at`: an interval or a gap between two."""
        cache = self.services if kind == "service" else self.users
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        start = _BEGINNING
        found: Span | None = None
        for assignment in self.catalog.history(kind, name):
            if at < assignment.valid_from:
                found = (start, assignment.valid_from, None)
                break
            end = _FOREVER if assignment.valid_to is None else assignment.valid_to
            if at < end:
                found = (assignment.valid_from, end, assignment.team)
                break
            start = end
        if found is None:
            found = (start, _FOREVER, None)
        cache[name] = found
        return found


class TeamResolver:
    """Resolves the team of every event of a batch; see the module docstring for the contract."""

    def __init__(self, catalog: TeamCatalog | None = None) -> None:
        self._state = _State(catalog or TeamCatalog.empty())

    @property
    def catalog(self) -> TeamCatalog:
        """The team catalog in force."""
        return self._state.catalog

    def use(self, catalog: TeamCatalog) -> None:
        """Resolve the next batches against `catalog` (safe from any thread)."""
        self._state = _State(catalog)

    def resolve(self, batch: DecodedBatch) -> list[str]:
        """One team per event of `batch`, in order. Raises ValueError when events name users but
        `batch.user_keys` was not set (the pseudonymiser must run first)."""
        events = batch.events
        user_keys: Sequence[str] = batch.user_keys
        if len(user_keys) != len(events):
            if any(e.user for e in events):
                raise ValueError("pseudonymise the batch first: user keys are missing")
            user_keys = [""] * len(events)
        return self.resolve_events(events, user_keys)

    def resolve_events(self, events: Sequence[Envelope], user_keys: Sequence[str]) -> list[str]:
        """`resolve` for parallel sequences of events and their users' keys ("" for none)."""
        state = self._state  # read once: a swap mid-batch does not split the batch
        services, users, span = state.services, state.users, state.span
        teams: list[str] = []
        append = teams.append
        for event, user_key in zip(events, user_keys, strict=True):
            at = event.occurred_at
            service = event.service
            if service:
                hit = services.get(service)
                if hit is None or not hit[0] <= at < hit[1]:
                    hit = span("service", service, at)
                if hit[2] is not None:
                    append(hit[2])
                    continue
            if event.team:
                append(event.team)
                continue
            if user_key:
                hit = users.get(user_key)
                if hit is None or not hit[0] <= at < hit[1]:
                    hit = span("user", user_key, at)
                if hit[2] is not None:
                    append(hit[2])
                    continue
            append(UNOWNED)
        return teams
