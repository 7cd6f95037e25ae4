"""`uptake migrate`, `uptake query` and `uptake settings`: the warehouse and the configuration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.cli.argtypes import non_negative_int
from pipeline.config.settings import Settings, redact_url
from pipeline.contract.reasons import Reason
from pipeline.warehouse.connection import WarehouseError, opened
from pipeline.warehouse.migrations import MigrationError, applied, available, migrate


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "migrate",
        help="create or upgrade the warehouse tables",
        description=(
            "Apply the versioned SQL migrations in schemas/clickhouse/ that the warehouse does "
            "not have yet, in order, and record them in schema_migrations. Safe to run again. "
            "The warehouse is UPTAKE_CLICKHOUSE_URL (default: the embedded engine in "
            "$UPTAKE_HOME/warehouse)."
        ),
    )
    cmd.add_argument("--status", action="store_true", help="only show applied and pending")
    cmd.set_defaults(func=_migrate)

    cmd = subparsers.add_parser(
        "query",
        help="run SQL against the warehouse and print a table",
        description=(
            "Run one SQL statement against the warehouse's database and print the result. "
            "The embedded warehouse can be opened by one process at a time: stop the worker "
            "first, or use a ClickHouse server."
        ),
        epilog='example: uptake query "SELECT team, count() FROM events GROUP BY team"',
    )
    cmd.add_argument("sql", help="the SQL statement (quote it)")
    cmd.add_argument(
        "--format",
        choices=("table", "tsv", "json"),
        default="table",
        help="output format (default: table)",
    )
    cmd.add_argument(
        "--max-rows",
        type=non_negative_int,
        default=1000,
        help="print at most this many rows (default 1000)",
    )
    cmd.set_defaults(func=_query)

    cmd = subparsers.add_parser(
        "settings",
        help="show every setting, its environment variable and value",
        description="Show the settings in effect (secrets redacted) and what each one does.",
    )
    cmd.set_defaults(func=_settings)


def _migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url = settings.warehouse.url
    with opened(url, create_database=not args.status) as warehouse:
        if args.status:
            done = applied(warehouse)
            for migration in available():
                state = "applied" if migration.version in done else "pending"
                print(f"{migration.path.name:40} {state}")
            return 0
        ran = migrate(
            warehouse,
            progress=lambda line: print(line, file=sys.stderr),
            cluster=settings.warehouse.cluster,
        )
        if ran:
            print(f"migrated {redact_url(url)} to version {ran[-1].version}")
        else:
            print(f"{redact_url(url)} is up to date")
    return 0


def _query(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with opened(settings.warehouse.url) as warehouse:
        try:
            names, rows = warehouse.query(args.sql)
        except DatabaseError as exc:
            raise WarehouseError(f"the query failed: {str(exc).strip().splitlines()[0]}") from exc
    shown = rows[: args.max_rows]
    if args.format == "json":
        import msgspec

        print(msgspec.json.encode([dict(zip(names, r, strict=True)) for r in shown]).decode())
    elif args.format == "tsv":
        print("\t".join(_tsv(n) for n in names))
        for row in shown:
            print("\t".join(_tsv(_cell(v)) for v in row))
    else:
        print(format_table(names, shown))
    if len(rows) > len(shown):
        hidden = len(rows) - len(shown)
        print(
            f"({hidden} more row{'s' if hidden != 1 else ''} not shown; use --max-rows)",
            file=sys.stderr,
        )
    return 0


def _settings(args: argparse.Namespace) -> int:
    rows = Settings.from_env().describe()
    width = max(len(name) for name, _, _ in rows)
    for name, value, help_ in rows:
        print(f"{name:{width}}  {value}\n{'':{width}}  {help_}")
    return 0


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _tsv(text: str) -> str:
    """Escape a TSV field as ClickHouse's own TabSeparated output does."""
    return text.translate(_TSV_ESCAPES)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned numbers, as psql or clickhouse-client show it."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(n) for n in names]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(names))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    out = [line(list(names)), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


__all__ = ["MigrationError", "format_table", "register"]


def register_dlq(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = subparsers.add_parser(
        "dlq",
        help="inspect and replay the dead-letter topic",
        description="The dead-letter topic holds every rejected event with its reason.",
    )
    commands = dlq.add_subparsers(dest="dlq_command", metavar="{replay}", required=True)
    cmd = commands.add_parser(
        "replay",
        help="re-submit dead-lettered events that are valid now",
        description=(
            "Read the dead-letter topic from where the last replay stopped up to its current "
            "end; re-submit events that the current contract accepts to the topic they came "
            "from (the events topic, or the backfill topic for a backfilled event, judged by "
            "the backfill rules); send those still invalid back to the dead-letter topic once "
            "(marked replayed, never replayed again). Use after a fix: a new schema version, a "
            "corrected mapping, a larger UPTAKE_BACKFILL_MAX_AGE_S."
        ),
        epilog="example: uptake dlq replay --reason unsupported_version --dry-run",
    )
    cmd.add_argument(
        "--reason",
        action="append",
        choices=sorted(str(r) for r in Reason),
        help="only events rejected for this reason (repeatable; default: all)",
    )
    cmd.add_argument("--dry-run", action="store_true", help="judge and count, change nothing")
    cmd.add_argument(
        "--limit", type=non_negative_int, default=None, help="stop after this many matching events"
    )
    cmd.set_defaults(func=_dlq_replay)


def _dlq_replay(args: argparse.Namespace) -> int:
    from pipeline.ops.dlq import replay

    report = replay(
        Settings.from_env(),
        reasons=set(args.reason) if args.reason else None,
        dry_run=args.dry_run,
        limit=args.limit,
        progress=lambda line: print(line, file=sys.stderr),
    )
    if args.dry_run:
        print("dry run: nothing was produced or committed")
    for line in report.lines(args.dry_run):
        print(line)
    return 0
