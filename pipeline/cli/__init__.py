"""`uptake` — the command line. Each subcommand lives in its own module and registers itself."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import pipeline
from pipeline.cli import backfill, broker, catalog, collector, dashboards, data, impact, rules, run
from pipeline.config.settings import SettingsError
from pipeline.observability import logs

EXIT_ERROR = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Uptake turns platform usage events (API calls, deploys, model trainings, incidents) into
per-team adoption facts in ClickHouse.

Typical first run:
  uptake broker start        start a local Kafka broker (KRaft) from Maven Central jars
  uptake migrate             create the warehouse tables (embedded ClickHouse by default)
  uptake simulate --events 100000
  uptake worker --exit-when-idle 5
  uptake query "SELECT team, count() FROM events GROUP BY team"

Or all of it at once: uptake demo

Configuration comes from environment variables; `uptake settings` lists them.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uptake",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"uptake {pipeline.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    broker.register(subparsers)
    data.register(subparsers)
    data.register_dlq(subparsers)
    run.register(subparsers)
    collector.register(subparsers)
    backfill.register(subparsers)
    dashboards.register(subparsers)
    catalog.register(subparsers)
    impact.register(subparsers)
    rules.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # the one place logging is set up (the worker and the writer refine the levels)
        logs.configure(
            args.command,
            fmt=logs.log_format(),
            level=logging.DEBUG if args.verbose else logging.WARNING,
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.verbose:
        # kafka-python logs every failed connection attempt; our own error says it once.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    from pipeline.kafka import undecodable

    undecodable.install_kafka_python()  # a batch no consumer can read is named, never a trace
    try:
        code = args.func(args)
    except undecodable.UndecodableBatchError as exc:
        _error(exc.batch.explain())
        return undecodable.EXIT_UNDECODABLE
    except SettingsError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _is_expected(exc):
            _error(str(exc))
            return EXIT_ERROR
        raise
    return int(code or 0)


def _error(message: str) -> None:
    logs.announce(logging.getLogger("uptake.cli"), f"error: {message}", logging.ERROR)


def _is_expected(exc: Exception) -> bool:
    """Errors that carry a message for a person; anything else is a bug and shows its trace."""
    from pipeline.devtools.broker import BrokerError
    from pipeline.kafka.topics import KafkaUnavailable
    from pipeline.warehouse.connection import WarehouseError

    return isinstance(exc, WarehouseError | KafkaUnavailable | BrokerError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
