"""`uptake collector` (the HTTP collector) and `uptake collector hash-token`."""

from __future__ import annotations

import argparse
import errno
import getpass
import os
import secrets
import sys

from pipeline.cli.argtypes import listen_port, non_negative_float, positive_int
from pipeline.collector.config import ENV
from pipeline.config.settings import Settings, SettingsError

DESCRIPTION = """\
Run the HTTP collector: services POST usage events to /v1/events with a bearer token; each
event is validated like the worker does, the accepted ones are produced to the events topic,
and the answer comes only after Kafka acknowledged them (200 all accepted, 207 some rejected,
422 all rejected, 503 Kafka unavailable). GET /healthz, /readyz and /metrics for operations.

The tokens file maps each source to the sha256 hex of its token (never the token itself):
  {"api-gateway": "<sha256 hex>", "deploy-pipeline": "<sha256 hex>"}
Make a token and its line with:  uptake collector hash-token --generate

With --webhooks FILE it also takes GitHub, GitLab and CD-tool webhooks at
POST /v1/webhooks/<name> (202 once Kafka acknowledged the deploy events, or with "ignored";
401 bad signature or token, 400 malformed, 422 not mapped, 503 Kafka unavailable). The file
(TOML or JSON) names the environment variable holding each secret, never the secret:
  [github]
  secret_env = "UPTAKE_GITHUB_WEBHOOK_SECRET"
  teams = { "acme/checkout-api" = "checkout" }
  [gitlab]
  token_env = "UPTAKE_GITLAB_WEBHOOK_TOKEN"
  [[generic]]
  name = "argo-cd"
  token_env = "UPTAKE_ARGOCD_WEBHOOK_TOKEN"
See docs/webhooks.md.

Example:
  uptake collector --tokens tokens.json --port 8080
  curl -sS -X POST http://127.0.0.1:8080/v1/events \\
    -H "Authorization: Bearer $UPTAKE_TOKEN" -H 'Content-Type: application/json' \\
    -d '{"event_type": "api_call", "schema_version": 1, "capability": "api-gateway",
         "event_id": "'"$(uuidgen)"'", "occurred_at": "'"$(date -u +%FT%TZ)"'",
         "team": "checkout", "data": {"api": "orders", "operation": "POST /v1/orders",
         "status_code": 201, "latency_ms": 23.7}}'

Each option's default can be set with the variable named in its help; Kafka comes from
KAFKA_BOOTSTRAP_SERVERS and UPTAKE_EVENTS_TOPIC. Details: docs/collector.md.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "collector",
        help="run the HTTP collector: POST /v1/events with a bearer token -> Kafka",
        description=DESCRIPTION,
        usage=(
            "uptake collector [-h] [--host HOST] [--port PORT] [--tokens FILE] "
            "[--webhooks FILE] [...]\n"
            "       uptake collector hash-token [-h] [--generate] [--source SOURCE] [TOKEN]"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--host", default=None, help=f"interface (default 127.0.0.1; {ENV['host']})")
    cmd.add_argument(
        "--port", type=listen_port, default=None, help=f"port (default 8080; {ENV['port']})"
    )
    cmd.add_argument(
        "--tokens",
        metavar="FILE",
        default=None,
        help=(
            "JSON or TOML: source -> sha256 hex of its token, for /v1/events "
            f"({ENV['tokens_file']}; this, --webhooks or both are required)"
        ),
    )
    cmd.add_argument(
        "--webhooks",
        metavar="FILE",
        default=None,
        help=(
            "TOML or JSON: the webhook adapters to mount at /v1/webhooks/<name>, naming the "
            f"environment variables of their secrets ({ENV['webhooks_file']}; docs/webhooks.md)"
        ),
    )
    cmd.add_argument(
        "--max-body-bytes",
        metavar="BYTES",
        type=positive_int,
        default=None,
        help=f"largest request body, else 413 (default 1048576; {ENV['max_body_bytes']})",
    )
    cmd.add_argument(
        "--max-events",
        metavar="N",
        type=positive_int,
        default=None,
        help=f"most events per request, else 413 (default 1000; {ENV['max_events']})",
    )
    cmd.add_argument(
        "--rate",
        metavar="EVENTS_PER_S",
        type=non_negative_float,
        default=None,
        help=f"events/s per source on average, else 429; 0 disables (default 1000; {ENV['rate']})",
    )
    cmd.add_argument(
        "--burst",
        metavar="EVENTS",
        type=non_negative_float,
        default=None,
        help=(
            "events a source may send at once; 0: the default, max(rate, max-events) "
            f"({ENV['burst']})"
        ),
    )
    cmd.add_argument(
        "--kafka-timeout",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help=f"wait this long for Kafka's ack, else 503 (default 10; {ENV['kafka_timeout_s']})",
    )
    cmd.set_defaults(func=_collector)
    sub = cmd.add_subparsers(dest="collector_command", metavar="SUBCOMMAND")
    hash_cmd = sub.add_parser(
        "hash-token",
        help="print the sha256 hex of a token, for the tokens file",
        description=(
            "Print the sha256 hex digest of a bearer token: the value to put in the collector's "
            "tokens file for its source. Without TOKEN, the token is read from standard input "
            "(so it stays out of the shell history). --generate makes a new random token and "
            "prints it with its digest."
        ),
    )
    hash_cmd.add_argument("token", nargs="?", metavar="TOKEN", help="the token (default: stdin)")
    hash_cmd.add_argument(
        "--generate", action="store_true", help="generate a new random token and print both"
    )
    hash_cmd.add_argument(
        "--source", default=None, help="with --generate: also print the tokens-file line"
    )
    hash_cmd.set_defaults(func=_hash_token)


def _hash_token(args: argparse.Namespace) -> int:
    from pipeline.collector.auth import hash_token

    if args.generate:
        token = secrets.token_urlsafe(32)
        digest = hash_token(token)
        print(f"token:  {token}")
        print(f"sha256: {digest}")
        if args.source:
            print(f'tokens file (JSON): "{args.source}": "{digest}"')
        print("Give the token to the source's owners; store only the sha256 in the tokens file.")
        return 0
    token = args.token
    if token is None:
        token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = token.strip()
    if not token:
        print("error: the token is empty", file=sys.stderr)
        return 2
    if len(token) < 16:
        print("warning: a token shorter than 16 characters is easy to guess", file=sys.stderr)
    print(hash_token(token))
    return 0


def _collector(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.collector.adapters import WebhookAdapter
    from pipeline.collector.app import serve
    from pipeline.collector.auth import TokenTable
    from pipeline.collector.config import CollectorConfig
    from pipeline.collector.webhooks import load_webhooks
    from pipeline.kafka.topics import KafkaUnavailable, ensure_topics

    settings = Settings.from_env()
    config = CollectorConfig.from_env(
        settings=settings,
        host=args.host,
        port=args.port,
        tokens_file=Path(args.tokens) if args.tokens else None,
        webhooks_file=Path(args.webhooks) if args.webhooks else None,
        max_body_bytes=args.max_body_bytes,
        max_events=args.max_events,
        rate=args.rate,
        burst=args.burst,
        kafka_timeout_s=args.kafka_timeout,
    )
    if config.tokens_file is None and config.webhooks_file is None:
        raise SettingsError(
            f"the collector needs a tokens file (--tokens FILE or {ENV['tokens_file']}), a "
            f"webhooks file (--webhooks FILE or {ENV['webhooks_file']}) or both "
            "(see `uptake collector --help`)"
        )
    # Without a tokens file no bearer token is valid: /v1/events answers 401.
    tokens = TokenTable.load(config.tokens_file) if config.tokens_file else TokenTable(())
    webhooks: list[WebhookAdapter] = []
    if config.webhooks_file is not None:
        # The file names the variables holding the secrets; they are read from here only.
        webhooks = load_webhooks(config.webhooks_file, os.environ)
    try:
        topics = {config.events_topic: settings.kafka.topic_partitions}
        ensure_topics(config.kafka_bootstrap, topics, timeout_s=5.0)
    except KafkaUnavailable as exc:
        print(
            f"warning: {exc} The collector starts anyway: /readyz reports Kafka, and events "
            "get 503 until a broker answers.",
            file=sys.stderr,
        )
    try:
        return serve(config, tokens, webhooks=webhooks)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise SettingsError(
            f"cannot listen on {config.host}:{config.port}: the address is in use; choose "
            "another with --port or UPTAKE_COLLECTOR_PORT"
        ) from exc
