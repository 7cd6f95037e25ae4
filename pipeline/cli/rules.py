"""`uptake rules render|check`: the Prometheus rule files with runbook links to your docs."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import written
from pipeline.config.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "rules",
        help="point the alerts' runbook_url at your copy of docs/operations.md",
        description=(
            "Every alert of deploy/prometheus/rules links its runbook, a section of "
            "docs/operations.md, with an absolute runbook_url: UPTAKE_RUNBOOK_BASE_URL followed "
            "by #<alert name in lower case>. `render` writes the rule files with your base, "
            "`check` fails when a file links another base or a wrong anchor."
        ),
        epilog=(
            "example: UPTAKE_RUNBOOK_BASE_URL=https://git.example.com/platform/uptake/blob/main/"
            "docs/operations.md uptake rules render --output /etc/prometheus/rules"
        ),
    )
    render, check = written.write_and_check(
        cmd,
        "render",
        "write the rule files with your runbook base",
        "fail when a runbook_url is not under your base",
        "the rule files (default: deploy/prometheus/rules of this checkout)",
    )
    render.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder to write them to (default: rewrite the files in --dir)",
    )
    render.set_defaults(func=_render)
    check.set_defaults(func=_check)


def _render(args: argparse.Namespace) -> int:
    from pipeline.ops import runbooks

    base = Settings.from_env().runbook_base_url
    source = args.dir or runbooks.shipped_rules()
    target = args.output or source
    changed = runbooks.write(source, target, base)
    for path in changed:
        print(f"wrote {path}")
    print(f"runbook links under {base} in {target}, {len(changed)} files changed")
    return 0


def _check(args: argparse.Namespace) -> int:
    from pipeline.ops import runbooks

    base = Settings.from_env().runbook_base_url
    problems = runbooks.problems(args.dir or runbooks.shipped_rules(), base)
    if written.failed(
        problems, "run `uptake rules render` (UPTAKE_RUNBOOK_BASE_URL sets the base)"
    ):
        return 1
    print(f"every alert links its runbook under {base}")
    return 0
