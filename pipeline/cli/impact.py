"""`uptake impact`: staggered difference-in-differences of the DORA keys per capability."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pipeline.config.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "impact",
        help="estimate what adopting each capability changed in the DORA keys",
        description=(
            "For each declared capability and DORA key: a staggered-adoption difference-in-"
            "differences (Callaway & Sant'Anna, not-yet-adopted teams as controls) with a 95%% "
            "confidence interval clustered by team, the numbers of adopting and control teams "
            "and a pre-trend check, and the naive before/after beside it, labelled. Writes the "
            "table impact_estimates and prints it. docs/analysts.md, 'Impact estimates'."
        ),
    )
    cmd.add_argument(
        "--capability",
        action="append",
        default=None,
        help="only this capability (repeatable; default: every declared capability)",
    )
    cmd.add_argument("--dry-run", action="store_true", help="print, do not write the table")
    cmd.set_defaults(func=_impact)


def _impact(args: argparse.Namespace) -> int:
    from pipeline.cli.data import format_table
    from pipeline.impact.estimate import estimate_all
    from pipeline.impact.store import declared_capabilities, read_panel, write
    from pipeline.warehouse.connection import opened
    from pipeline.warehouse.migrations import require_current

    settings = Settings.from_env()
    with opened(settings.warehouse.url) as warehouse:
        require_current(warehouse)
        panel = read_panel(warehouse)
        capabilities = args.capability or declared_capabilities(warehouse)
        estimates = estimate_all(panel, capabilities)
        computed_at = datetime.now(UTC)
        if not args.dry_run:
            write(warehouse, estimates, computed_at)
    header = ["capability", "metric", "method", "estimate", "95% CI", "N treated", "N control"]
    rows = [
        [
            e.capability,
            e.metric,
            e.method,
            "insufficient data" if e.status != "ok" else f"{e.estimate:.3g} ({e.scale})",
            "" if e.ci_low is None or e.ci_high is None else f"{e.ci_low:.3g} .. {e.ci_high:.3g}",
            str(e.treated_teams),
            str(e.control_teams),
        ]
        for e in estimates
    ]
    print(format_table(header, rows))
    return 0
