"""`uptake dashboards generate|check` and `uptake report`: what Uptake shows to people."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pipeline.cli import written
from pipeline.config.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "dashboards",
        help="generate the Grafana dashboards (dashboards/*.json) from their Python code",
        description=(
            "The Grafana dashboards are Python code (pipeline/dashboards/); the JSON under "
            "dashboards/ is generated from it and committed. `generate` rewrites the JSON, "
            "`check` fails when the committed JSON differs from what the code generates."
        ),
    )
    generate, check = written.write_and_check(
        cmd,
        "generate",
        "write dashboards/*.json from the code",
        "fail when dashboards/*.json is not up to date",
        "the dashboards folder (default: dashboards/ of this checkout; for an installed "
        "Uptake, generate writes ./dashboards and check reads the packaged copy)",
    )
    generate.set_defaults(func=_generate)
    check.set_defaults(func=_check)

    report = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of adoption, impact and the ML platform",
        description=(
            "For people without Grafana: one HTML file with the charts of the adoption, impact "
            "and ML platform dashboards for a period, computed from the warehouse "
            "(UPTAKE_CLICKHOUSE_URL). No network access is needed to open it."
        ),
        epilog=(
            "Headline figures show the previous period of the same length and the change. "
            "Panels without a per-team or per-capability breakdown say so when a filter "
            "cannot narrow them. Filter values reach SQL as bound parameters.\n"
            "example: uptake report --from 2025-01-01 --to 2025-03-31 --capability "
            "feature-store --csv-dir report-csv --output report.html"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "--from",
        dest="start",
        type=_day_or_time,
        default=None,
        help="first day (YYYY-MM-DD, or an ISO time in UTC; default: 90 days before --to)",
    )
    report.add_argument(
        "--to",
        dest="end",
        type=_day_or_time_end,
        default=None,
        help="last day, included (YYYY-MM-DD, or an ISO time in UTC; default: now)",
    )
    report.add_argument(
        "--output", type=Path, default=Path("report.html"), help="file to write (report.html)"
    )
    report.add_argument("--title", default="Platform adoption report", help="the report's title")
    report.add_argument(
        "--capability",
        default=None,
        help="only this declared capability (an unknown name is an error naming the nearest)",
    )
    report.add_argument("--team", default=None, help="only this team")
    report.add_argument(
        "--org-unit",
        default=None,
        help="only the teams under this group of the team hierarchy, at any depth",
    )
    report.add_argument(
        "--csv-dir",
        type=Path,
        default=None,
        help="also write each table's and chart's data as a CSV file (header: the page's "
        "column names) into this folder; the page links to them",
    )
    report.set_defaults(func=_report)


def _day_or_time_end(text: str) -> datetime:
    """Like `_day_or_time`, but a day means its end: `--to 2025-03-31` includes March 31."""
    parsed = _day_or_time(text)
    return parsed + timedelta(days=1, milliseconds=-1) if len(text) == 10 else parsed


def _day_or_time(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD) or an ISO time (2025-01-31T12:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _generate(args: argparse.Namespace) -> int:
    from pipeline.dashboards import generate

    directory = args.dir or generate.DEFAULT_DIRECTORY
    changed = generate.write(directory)
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(generate.DASHBOARDS)} dashboards in {directory}, {len(changed)} changed")
    return 0


def _check(args: argparse.Namespace) -> int:
    from pipeline.dashboards import generate

    problems = generate.differences(args.dir or generate.SHIPPED_DIRECTORY)
    if written.failed(problems, "run `uptake dashboards generate` and commit dashboards/"):
        return 1
    print(f"{len(generate.DASHBOARDS)} dashboards up to date")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.report import FilterError, Filters, settings_values, write_report

    end = args.end or datetime.now(UTC)
    start = args.start or end - timedelta(days=90)
    if start >= end:
        print("error: --from must be before --to", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    filters = Filters(args.capability, args.team, args.org_unit)
    try:
        paths = write_report(
            settings.warehouse.url,
            start,
            end,
            args.output,
            args.csv_dir,
            title=args.title,
            filters=filters,
            settings=settings_values(settings),
        )
    except FilterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {paths[0]}")
    if args.csv_dir is not None:
        print(f"wrote {len(paths) - 1} CSV files in {args.csv_dir}")
    return 0
