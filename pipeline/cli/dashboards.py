"""`uptake dashboards generate|check`: the Grafana dashboards as code."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path


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
    actions = cmd.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    generate = actions.add_parser("generate", help="write dashboards/*.json from the code")
    check = actions.add_parser("check", help="fail when dashboards/*.json is not up to date")
    for action in (generate, check):
        action.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="the dashboards folder (default: dashboards/ of this checkout)",
        )
    generate.set_defaults(func=_generate)
    check.set_defaults(func=_check)


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

    problems = generate.differences(args.dir or generate.DEFAULT_DIRECTORY)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("run `uptake dashboards generate` and commit dashboards/", file=sys.stderr)
        return 1
    print(f"{len(generate.DASHBOARDS)} dashboards up to date")
    return 0
