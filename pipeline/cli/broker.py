"""`uptake broker start|stop|status`: the local single-node Kafka broker (devtools.broker).

`register(subparsers)` adds the `broker` command. Every subcommand sets `func` on the parsed
arguments, and `args.func(args)` returns the process exit code:

    0  done (status: the broker is running)
    1  error; the message went to stderr as "error: ..."
    3  status only: the broker is not running
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.argtypes import port, seconds
from pipeline.config.settings import Settings
from pipeline.devtools.broker import BrokerError, BrokerStatus, LocalBroker

DEFAULT_PORT = 9092
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3

_HOME_HELP = "broker home folder (default: $UPTAKE_HOME/kafka; UPTAKE_HOME defaults to .uptake)"
_PORT_HELP = (
    "client port on 127.0.0.1 (default: the port of KAFKA_BOOTSTRAP_SERVERS when it names "
    f"127.0.0.1 or localhost, else {DEFAULT_PORT})"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `broker` command, with `start`, `stop` and `status`, to `subparsers`."""
    broker = subparsers.add_parser(
        "broker",
        help="run a local single-node Kafka broker (KRaft, no Docker)",
        description=(
            "Run a real Apache Kafka 3.9.1 broker (KRaft mode, one node) on this machine, "
            "listening on 127.0.0.1 only. On first use, Maven fetches the jars from Maven Central "
            "into deploy/local/.cache. Needs java (17+) and mvn on PATH."
        ),
    )
    commands = broker.add_subparsers(
        dest="broker_command", metavar="{start,stop,status}", required=True
    )

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=Path, default=None, help=_HOME_HELP)
    common.add_argument("--port", type=port, default=None, help=_PORT_HELP)

    start = commands.add_parser(
        "start",
        parents=[common],
        help="start the broker and wait until it answers",
        description=(
            "Start the broker in the background unless it already runs, and wait until it "
            "answers a Kafka metadata request. The first start also fetches the jars and "
            "formats the storage. The broker keeps running after this command exits; its "
            "output goes to <home>/logs/broker.log."
        ),
    )
    start.add_argument(
        "--controller-port",
        type=port,
        default=None,
        help="KRaft controller port on 127.0.0.1 (default: client port + 1)",
    )
    start.add_argument(
        "--heap", default="512m", help="maximum JVM heap, e.g. 512m or 1g (default: 512m)"
    )
    start.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        help="seconds to wait for the broker to answer (default: 60)",
    )
    start.set_defaults(func=_start)

    stop = commands.add_parser(
        "stop",
        parents=[common],
        help="stop the broker",
        description=(
            "Stop the broker with SIGTERM, and with SIGKILL if it has not exited after "
            "--timeout seconds. Stopping a broker that does not run is not an error. "
            "The data stays in <home>/data."
        ),
    )
    stop.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        help="seconds to wait for a clean shutdown before SIGKILL (default: 30)",
    )
    stop.set_defaults(func=_stop)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="show whether the broker runs and answers (exit 0 if running, 3 if not)",
        description=(
            "Show whether the broker of <home> runs and whether it answers a Kafka metadata "
            "request. Exit code 0 if it runs, 3 if not, 1 on error."
        ),
    )
    status.add_argument(
        "--timeout",
        type=seconds,
        default=3.0,
        help="seconds to wait for the metadata answer (default: 3)",
    )
    status.set_defaults(func=_status)


# --------------------------------------------------------------------------------------------
# handlers


def _start(args: argparse.Namespace) -> int:
    try:
        broker = LocalBroker(
            _home(args), _resolve_port(args), controller_port=args.controller_port, heap=args.heap
        )
        status = broker.start(timeout=args.timeout, progress=print)
    except (BrokerError, ValueError) as exc:
        return _fail(exc)
    print(describe(status))
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    try:
        broker = LocalBroker(_home(args), _resolve_port(args))
        stopped = broker.stop(timeout=args.timeout)
    except (BrokerError, ValueError) as exc:
        return _fail(exc)
    if stopped:
        print(f"Stopped the Kafka broker of {broker.home}.")
    else:
        print(f"No Kafka broker of {broker.home} was running.")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    try:
        broker = LocalBroker(_home(args), _resolve_port(args))
        status = broker.status(timeout=args.timeout)
    except (BrokerError, ValueError) as exc:
        return _fail(exc)
    print(describe(status))
    return EXIT_OK if status.running else EXIT_NOT_RUNNING


def describe(status: BrokerStatus) -> str:
    """A short, human-readable block for a BrokerStatus."""
    if status.running:
        state = f"running (pid {status.pid}), " + (
            "answering" if status.answering else "NOT answering yet"
        )
    else:
        state = "not running"
        if status.answering:
            state += f" (but another Kafka broker answers at {status.bootstrap})"
    return "\n".join(
        [
            f"broker:     {state}",
            f"bootstrap:  {status.bootstrap}",
            f"home:       {status.home}",
            f"log:        {status.log_file}",
        ]
    )


# --------------------------------------------------------------------------------------------
# helpers


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _home(args: argparse.Namespace) -> Path:
    if args.home is not None:
        home: Path = args.home
        return home
    return Settings.from_env().broker_home


def _resolve_port(args: argparse.Namespace) -> int:
    """--port, else the port of KAFKA_BOOTSTRAP_SERVERS when it is local, else 9092."""
    if args.port is not None:
        chosen: int = args.port
        return chosen
    first = Settings.from_env().kafka.bootstrap.split(",")[0].strip()
    host, _, raw = first.rpartition(":")
    if host in ("127.0.0.1", "localhost") and raw.isdigit():
        return port(raw)
    return DEFAULT_PORT
