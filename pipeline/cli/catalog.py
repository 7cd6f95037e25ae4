"""`uptake catalog sync` and `uptake catalog show`: the team and capability catalogs."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pipeline.config.settings import Settings, SettingsError


def instant(text: str) -> datetime:
    """An ISO date (UTC midnight) or date-time with offset, as the catalog files write them."""
    from pipeline.catalog.teams import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "catalog",
        help="load the team and capability catalogs into the warehouse, or show them",
        description=(
            "The team catalog (UPTAKE_TEAM_CATALOG: Backstage catalog-info files and ownership "
            "CSVs) and the capability catalog (UPTAKE_CAPABILITIES). The worker loads both at "
            "start and reloads them when the files change; these commands do the same without "
            "a worker. Format and semantics: docs/catalogs.md."
        ),
    )
    actions = cmd.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    sync = actions.add_parser(
        "sync",
        help="read the catalog files and write team_catalog and capability_catalog",
        description=(
            "Read the catalog files, merge the team files into the history stored in "
            "team_catalog (a change holds from now on; only dates written in a file change the "
            "past), write both tables and print what they hold. Safe to run again: writing an "
            "unchanged catalog changes nothing. The embedded warehouse can be opened by one "
            "process at a time: stop the worker first (a running worker syncs by itself)."
        ),
    )
    sync.set_defaults(func=_sync)

    show = actions.add_parser(
        "show",
        help="show teams, their parent groups, services and users at a time",
        description=(
            "Show the team catalog stored in the warehouse as it was at a moment: every team "
            "with its parent groups, the services it owned and how many users it had."
        ),
    )
    show.add_argument(
        "--at",
        type=instant,
        default=None,
        help="the moment: ISO date (UTC) or date-time with offset (default: now)",
    )
    show.add_argument("--team", default=None, help="only this team, or the teams under this group")
    show.set_defaults(func=_show)


def _sync(args: argparse.Namespace) -> int:
    from pipeline.catalog.capabilities import load_capabilities
    from pipeline.catalog.errors import CatalogError
    from pipeline.catalog.store import CatalogStore, TeamCatalogBuilder
    from pipeline.enrich.pseudonym import Pseudonymizer
    from pipeline.ingest.catalogs import first_load_lookback, team_sources
    from pipeline.warehouse.connection import opened

    settings = Settings.from_env()
    pseudonyms = Pseudonymizer.from_secret_or_file(
        settings.catalog.pseudonym_key.reveal(), settings.catalog.pseudonym_key_file
    )
    now = datetime.now(UTC)
    sources = team_sources(settings)
    with opened(settings.warehouse.url) as warehouse:
        _require_tables(warehouse)
        store = CatalogStore(warehouse)
        build = TeamCatalogBuilder(
            store.read_team_history(),
            pseudonyms.key_of,
            first_load_lookback(settings),
        )
        try:
            teams = build(sources.read(), now, None)
        except CatalogError as exc:
            variable = "UPTAKE_TEAM_CATALOG" + (" / UPTAKE_BACKSTAGE_URL" if sources.live else "")
            raise SettingsError(f"{variable}: the catalog cannot be used: {exc}") from exc
        try:
            capabilities = load_capabilities(settings.catalog.capabilities_path)
        except CatalogError as exc:
            raise SettingsError(f"UPTAKE_CAPABILITIES: the catalog cannot be used: {exc}") from exc
        summary = store.write(teams, capabilities)
    print(f"teams from {sources.describe()}")
    print(f"capabilities from {settings.catalog.capabilities_path}")
    print(summary.line())
    for warning in teams.warnings:
        print(f"warning: {warning}")
    for problem in capabilities.check_against(teams, now):
        print(f"warning: {problem}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from pipeline.catalog.store import CatalogStore
    from pipeline.cli.data import format_table
    from pipeline.warehouse.connection import opened

    settings = Settings.from_env()
    at = args.at or datetime.now(UTC)
    with opened(settings.warehouse.url) as warehouse:
        _require_tables(warehouse)
        teams = CatalogStore(warehouse).read_team_history()
    if not teams.assignments:
        print("team_catalog is empty: run `uptake catalog sync` (or start the worker)")
        return 0
    shown = teams.teams_under(args.team, at) if args.team else teams.teams_at(at)
    if args.team and not shown:
        raise SettingsError(f"--team: {args.team!r} is not a team or group at {at.isoformat()}")
    services: dict[str, list[str]] = {}
    for name in sorted(teams.names("service")):
        owner = teams.owner_at(name, at)
        services.setdefault(owner, []).append(name)
    users: dict[str, int] = {}
    for key in teams.names("user"):
        team = teams.team_of_user_at(key, at)
        if team is not None:
            users[team] = users.get(team, 0) + 1
    rows = [
        (
            team,
            " > ".join(reversed(teams.ancestors(team, at))),
            ", ".join(services.get(team, [])),
            users.get(team, 0),
        )
        for team in sorted(shown)
    ]
    print(f"teams at {at.isoformat()}:")
    print(format_table(["team", "groups", "services", "users"], rows))
    return 0


def _require_tables(warehouse: object) -> None:
    from pipeline.catalog.store import CAPABILITY_TABLE, TEAM_TABLE
    from pipeline.warehouse.connection import Warehouse, WarehouseError

    assert isinstance(warehouse, Warehouse)
    for table in (TEAM_TABLE, CAPABILITY_TABLE):
        if not warehouse.table_exists(table):
            raise WarehouseError(f"the warehouse has no {table} table yet: run `uptake migrate`")
