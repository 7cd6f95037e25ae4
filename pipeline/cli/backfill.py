"""`uptake backfill FILE [FILE...]`: load old events through the same validation as the stream."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from pipeline.cli.argtypes import at_most
from pipeline.config.settings import Settings

DESCRIPTION = """\
Load events older than the live lateness limit (UPTAKE_MAX_LATENESS_S, default 7 days) - or any
history - from JSONL files: one event object per line, `-` for stdin, gzip accepted (detected by
its content). Every line is first validated with the worker's own rules, except the live
lateness limit (UPTAKE_BACKFILL_MAX_AGE_S applies instead, default 730 days); invalid lines are
listed as FILE:LINE: reason: detail. Then the valid events are sent to the backfill topic
(UPTAKE_BACKFILL_TOPIC, default <events topic>.backfill), which the worker reads with the same
enrichment and sink as the live topic: events land in the hour and day of their occurred_at.
Events keep their event_id: re-running a file folds in `events`, and the rollups count a
re-sent event once while the worker's id window (UPTAKE_DEDUP_WINDOW) remembers it
(docs/backfill.md states exactly when). `uptake backfill` only sends: a worker loads them.
"""

EPILOG = """\
exit status:
  0  every line was valid and Kafka acknowledged every event (--dry-run: every line valid)
  1  an input could not be read (missing file, bad gzip), no Kafka broker answered, or Kafka did
     not acknowledge every message; run the same command again when it is fixed
  2  bad command line or setting
  3  some lines are invalid: nothing was sent; with --skip-invalid the valid lines were sent

examples:
  uptake backfill --dry-run history.jsonl.gz          validate only
  uptake backfill history-*.jsonl.gz --rejects bad.jsonl
  zcat old.jsonl.gz | uptake backfill - --skip-invalid
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "backfill",
        help="load old events from JSONL files (past the 7-day lateness limit)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "files", nargs="+", metavar="FILE", help="JSONL file, .gz or plain; - reads stdin"
    )
    cmd.add_argument(
        "--dry-run", action="store_true", help="only validate and report; send nothing"
    )
    cmd.add_argument(
        "--skip-invalid",
        action="store_true",
        help="send the valid lines even when some are invalid (default: send nothing then)",
    )
    cmd.add_argument(
        "--rejects",
        type=Path,
        default=None,
        metavar="FILE",
        help="write every invalid line to FILE as JSONL: file, line, reason, detail, text",
    )
    cmd.add_argument(
        "--per-message",
        type=at_most(1000, "events per message"),
        default=100,
        metavar="N",
        help="events per Kafka message at most (default 100)",
    )
    cmd.set_defaults(func=_backfill)


def _backfill(args: argparse.Namespace) -> int:
    from pipeline.ops.backfill import EXIT_FAILED, BackfillError, run_backfill

    settings = Settings.from_env()
    try:
        with contextlib.ExitStack() as stack:
            rejects = None
            if args.rejects is not None:
                try:
                    rejects = stack.enter_context(args.rejects.open("wb"))
                except OSError as exc:
                    raise BackfillError(f"--rejects {args.rejects}: {exc.strerror}") from None
            report = run_backfill(
                settings,
                list(args.files),
                dry_run=args.dry_run,
                skip_invalid=args.skip_invalid,
                rejects=rejects,
                per_message=args.per_message,
            )
    except BackfillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in report.summary():
        print(line)
    return report.exit_code
