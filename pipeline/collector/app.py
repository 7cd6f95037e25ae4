"""The HTTP collector: an aiohttp application in front of the events topic.

Endpoints (docs/collector.md has the formats, examples and the full status table):

- `POST /v1/events` — one event (JSON object), a JSON array of events, or NDJSON
  (`Content-Type: application/x-ndjson`), authenticated with `Authorization: Bearer <token>`.
  Each event is judged with the worker's decoder; the accepted ones are produced to Kafka as
  JSON-array messages keyed by team (else service), and the answer is sent only after Kafka
  acknowledged them (acks=all). 200: every event accepted; 207: some rejected; 422: all
  rejected; 503: Kafka did not acknowledge (nothing is ever 200 that Kafka did not take).
- `GET /healthz` (the process answers), `GET /readyz` (a Kafka broker answers),
  `GET /metrics` (Prometheus text of `pipeline.metrics.REGISTRY`).

Every error is JSON: `{"error": "<code>", "message": "<for a person>"}`.
Blocking Kafka calls run in a thread pool; the event loop only parses, validates and answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.collector import metrics as m
from pipeline.collector.auth import TokenTable
from pipeline.collector.config import CollectorConfig
from pipeline.collector.ingest import NDJSON_TYPES, BodyError, judge, split_body
from pipeline.collector.producer import KafkaGateway, ProduceFailed
from pipeline.collector.ratelimit import RateLimiter
from pipeline.contract.decode import BatchDecoder
from pipeline.metrics import REGISTRY
from pipeline.topics import KafkaUnavailable

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
MESSAGE_EVENTS = 500
"""Most events in one Kafka message the collector produces."""
RETRY_AFTER_UNAVAILABLE_S = 5

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "kafka_unavailable",
}


@dataclass
class CollectorState:
    """What the handlers share: configuration, tokens, limiter, decoder, Kafka and threads."""

    config: CollectorConfig
    tokens: TokenTable
    limiter: RateLimiter
    decoder: BatchDecoder
    gateway: KafkaGateway
    executor: ThreadPoolExecutor


STATE = web.AppKey("uptake_collector", CollectorState)


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode("utf-8")


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The collector's error answer: `{"error": code, "message": message}`."""
    return web.json_response(
        {"error": code, "message": message}, status=status, headers=headers, dumps=_dumps
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTTP errors (404, 405, 413, ...) and crashes into JSON errors, and count
    requests to the ingestion endpoint."""
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _from_http_exception(request, exc)
    except Exception:
        log.exception("collector: unexpected error on %s %s", request.method, request.path)
        response = json_error(500, "internal_error", "unexpected error; see the collector's log")
    if request.path == EVENTS_PATH:
        m.REQUESTS.labels(str(response.status)).inc()
        m.REQUEST_DURATION.observe(time.perf_counter() - started)
    return response


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    if status == 404:
        message = f"no endpoint {request.path}; POST events to {EVENTS_PATH}"
    elif status == 405:
        allowed = headers.get("Allow", "")
        message = f"{request.method} is not allowed on {request.path}; use {allowed}"
    elif status == 413:
        limit = request.app[STATE].config.max_body_bytes
        message = f"the body is larger than {limit} bytes; send smaller batches"
    else:
        message = exc.reason
    return json_error(status, _ERROR_CODES.get(status, f"http_{status}"), message, headers)


def _unauthorized(code: str, message: str) -> web.Response:
    challenge = 'Bearer realm="uptake"'
    if code == "invalid_token":
        challenge += ', error="invalid_token"'
    return json_error(401, code, message, {"WWW-Authenticate": challenge})


async def hand_to_kafka(state: CollectorState, messages: list[tuple[str, bytes]]) -> None:
    """Produce (key, JSON array) messages and return once Kafka acknowledged all of them.

    Runs the blocking producer in the collector's thread pool. Raises `KafkaUnavailable` or
    `ProduceFailed`; the caller must then answer 503, never 2xx. Other routes (e.g. webhook
    adapters) use this too, with messages built by `pipeline.sdk.pack_messages`.
    """
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(state.executor, state.gateway.produce, messages)


async def post_events(request: web.Request) -> web.Response:
    """`POST /v1/events`: authenticate, read within limits, judge, produce, answer."""
    state = request.app[STATE]
    config = state.config
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return _unauthorized("missing_token", "send Authorization: Bearer <token>")
    source = state.tokens.source_for(token.strip()) if scheme.lower() == "bearer" else None
    if source is None:
        return _unauthorized("invalid_token", "the bearer token is not valid for any source")

    too_large = json_error(
        413,
        "body_too_large",
        f"the body is larger than {config.max_body_bytes} bytes; send smaller batches",
    )
    if request.content_length is not None and request.content_length > config.max_body_bytes:
        return too_large
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return too_large
    try:
        items = split_body(body, ndjson=request.content_type in NDJSON_TYPES)
    except BodyError as exc:
        return json_error(400, exc.code, str(exc))
    if len(items) > config.max_events:
        return json_error(
            413,
            "too_many_events",
            f"{len(items)} events in one request; the limit is {config.max_events}",
        )
    wait_s = state.limiter.take(source, len(items))
    if math.isinf(wait_s):
        return json_error(
            413,
            "too_many_events",
            f"{len(items)} events in one request; a source may send {config.bucket_size:g} at once",
        )
    if wait_s > 0:
        retry_after = max(1, math.ceil(wait_s))
        return json_error(
            429,
            "rate_limited",
            f"source {source!r} may send {config.rate:g} events/s; retry after {retry_after} s",
            {"Retry-After": str(retry_after)},
        )

    judgement = judge(items, source, state.decoder, MESSAGE_EVENTS)
    accepted, rejected = judgement.accepted, judgement.rejected
    m.EVENTS.labels("rejected").inc(rejected)
    if judgement.messages:
        try:
            await hand_to_kafka(state, judgement.messages)
        except (KafkaUnavailable, ProduceFailed) as exc:
            m.EVENTS.labels("undelivered").inc(accepted)
            log.warning("collector: answering 503: %s", exc)  # details stay in the log
            return json_error(
                503,
                "kafka_unavailable",
                f"Kafka did not acknowledge the events within {config.kafka_timeout_s:g} s, so "
                "none is confirmed. Retry the same request later (same event_ids: the warehouse "
                "deduplicates).",
                {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
            )
    m.EVENTS.labels("accepted").inc(accepted)
    status = 200 if rejected == 0 else 207 if accepted else 422
    payload = {"accepted": accepted, "rejected": rejected, "results": judgement.results}
    return web.json_response(payload, status=status, dumps=_dumps)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.json_response({"status": "ok"}, dumps=_dumps)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: a Kafka broker answers a metadata request (cached for 2 s)."""
    state = request.app[STATE]
    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(state.executor, state.gateway.ready):
        return web.json_response({"status": "ready", "kafka": "reachable"}, dumps=_dumps)
    return json_error(
        503, "not_ready", f"no Kafka broker answers at {state.config.kafka_bootstrap}"
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the Uptake registry (collector metrics included)."""
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _close(app: web.Application) -> None:
    state = app[STATE]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(state.executor, state.gateway.close)
    state.executor.shutdown(wait=False, cancel_futures=True)


def create_app(
    config: CollectorConfig,
    tokens: TokenTable,
    *,
    clock: Callable[[], float] = time.monotonic,
    kafka_threads: int = 16,
) -> web.Application:
    """The collector as an aiohttp application; serve it with `serve()` or an `AppRunner`.

    Kafka is contacted on the first request (or readiness probe), not here; the producer is
    closed (in-flight messages delivered) when the application shuts down.
    """
    app = web.Application(middlewares=[_errors_and_metrics], client_max_size=config.max_body_bytes)
    app[STATE] = CollectorState(
        config=config,
        tokens=tokens,
        limiter=RateLimiter(config.rate, config.bucket_size, clock),
        decoder=BatchDecoder(config.limits),
        gateway=KafkaGateway(config.kafka_bootstrap, config.events_topic, config.kafka_timeout_s),
        executor=ThreadPoolExecutor(kafka_threads, thread_name_prefix="uptake-collector-kafka"),
    )
    app.router.add_post(EVENTS_PATH, post_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_cleanup.append(_close)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving `app` on host:port (0: a free port); returns the runner and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}"


def serve(
    config: CollectorConfig, tokens: TokenTable, announce: Callable[[str], None] = print
) -> int:
    """Run the collector until SIGINT/SIGTERM; in-flight requests finish, then Kafka closes."""

    async def run() -> None:
        runner, url = await start(create_app(config, tokens), config.host, config.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        announce(
            f"uptake collector on {url} (POST {EVENTS_PATH}; sources: "
            f"{', '.join(tokens.sources)}) -> Kafka {config.kafka_bootstrap} topic "
            f"{config.events_topic}. Ctrl-C stops it."
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(run())
    return 0
