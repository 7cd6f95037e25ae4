"""The HTTP collector: an aiohttp application in front of the events topic.

Routes: `POST /v1/events`, `POST /v1/webhooks/<name>` (`pipeline.collector.webhooks`),
`POST /v1/feedback` (`pipeline.collector.feedback`), `GET /healthz`, `GET /readyz`, and
`GET /metrics` on its own port only (`create_metrics_app`). Accepted events are answered only
after Kafka acknowledged them (acks=all), 503 otherwise. Every error is JSON:
`{"error": "<code>", "message": "<for a person>"}`. Blocking Kafka calls run in a thread pool;
the event loop only parses, validates and answers. Formats and statuses: docs/collector.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.collector import metrics as m
from pipeline.collector.adapters import ROUTE_PREFIX, WebhookAdapter, routes
from pipeline.collector.auth import TokenTable
from pipeline.collector.coalesce import Coalescer
from pipeline.collector.config import CollectorConfig
from pipeline.collector.feedback import FEEDBACK_PATH, post_feedback
from pipeline.collector.handling import (
    MESSAGE_EVENTS,
    STATE,
    CollectorState,
    Handler,
    bearer_source,
    dumps,
    hand_to_kafka,
    json_error,
    kafka_unavailable,
    read_body,
)
from pipeline.collector.ingest import NDJSON_TYPES, BodyError, judge, split_body
from pipeline.collector.producer import KafkaGateway, ProduceFailed
from pipeline.collector.ratelimit import RateLimiter
from pipeline.collector.replay import DeliveryCache
from pipeline.collector.webhooks import webhook_handler
from pipeline.config.settings import SettingsError
from pipeline.contract import cloudevents
from pipeline.contract.decode import BatchDecoder
from pipeline.kafka.topics import KafkaUnavailable
from pipeline.observability.metrics import REGISTRY

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
RETRY_AFTER_BUSY_S = 1

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


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTTP errors (404, 405, 413, ...) and crashes into JSON errors, cap the
    ingestion requests in flight (503 beyond `max_in_flight`, before the body is read), and
    count requests to the ingestion routes (label `route`: events or webhook)."""
    started = time.perf_counter()
    route = _route_label(request.path)
    state = request.app[STATE]
    response: web.StreamResponse
    if route is not None and state.in_flight >= state.config.max_in_flight:
        response = json_error(
            503,
            "too_busy",
            f"the collector is handling {state.in_flight} requests, its limit; retry after "
            f"{RETRY_AFTER_BUSY_S} s",
            {"Retry-After": str(RETRY_AFTER_BUSY_S)},
        )
    else:
        response = await _handle(request, handler, counted=route is not None)
    if route is not None:
        m.REQUESTS.labels(route, str(response.status)).inc()
        m.REQUEST_DURATION.labels(route).observe(time.perf_counter() - started)
    return response


async def _handle(request: web.Request, handler: Handler, *, counted: bool) -> web.StreamResponse:
    state = request.app[STATE]
    if counted:
        state.in_flight += 1
        m.IN_FLIGHT.inc()
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(request, exc)
    except Exception:
        log.exception("collector: unexpected error on %s %s", request.method, request.path)
        return json_error(500, "internal_error", "unexpected error; see the collector's log")
    finally:
        if counted:
            state.in_flight -= 1
            m.IN_FLIGHT.dec()


def _route_label(path: str) -> str | None:
    """The bounded `route` label of an ingestion path, None for other paths."""
    if path == EVENTS_PATH:
        return "events"
    if path == "/v1/feedback":
        return "feedback"
    if path.startswith(ROUTE_PREFIX):
        return "webhook"
    return None


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    if status == 404 and request.path.startswith(ROUTE_PREFIX):
        mounted = sorted(request.app[STATE].webhooks)
        message = f"no webhook adapter is configured at {request.path}; " + (
            f"configured: {', '.join(mounted)}" if mounted else "none is configured"
        )
    elif status == 404:
        message = f"no endpoint {request.path}; POST events to {EVENTS_PATH}"
    elif status == 405:
        allowed = headers.get("Allow", "")
        message = f"{request.method} is not allowed on {request.path}; use {allowed}"
    elif status == 413:
        limit = request.app[STATE].config.max_body_bytes
        message = f"the body is larger than {limit} bytes"
    else:
        message = exc.reason
    return json_error(status, _ERROR_CODES.get(status, f"http_{status}"), message, headers)


async def post_events(request: web.Request) -> web.Response:
    """`POST /v1/events`: authenticate, read within limits, judge, produce, answer."""
    state = request.app[STATE]
    config = state.config
    source = bearer_source(request)
    if isinstance(source, web.Response):
        return source

    body = await read_body(request, config.max_body_bytes, "send smaller batches")
    if isinstance(body, web.Response):
        return body
    try:
        binary = cloudevents.from_http_binary(request.headers.items(), body)
        if binary is not None:  # CloudEvents HTTP binary mode: forwarded in structured form
            items = [binary]
        else:
            items = split_body(body, ndjson=request.content_type in NDJSON_TYPES)
    except RecursionError:
        return json_error(400, "too_deep", "the body is nested too deeply to hold events")
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

    try:
        judgement = judge(items, source, state.decoder, MESSAGE_EVENTS)
    except RecursionError:
        return json_error(400, "too_deep", "an event is nested too deeply")
    accepted, rejected = judgement.accepted, judgement.rejected
    m.EVENTS.labels("events", "rejected").inc(rejected)
    if judgement.messages:
        try:
            await hand_to_kafka(state, judgement.messages)
        except (KafkaUnavailable, ProduceFailed) as exc:
            m.EVENTS.labels("events", "undelivered").inc(accepted)
            return kafka_unavailable(
                config,
                exc,
                "Retry soon with the same event_ids: recent re-sends are not counted twice.",
            )
    m.EVENTS.labels("events", "accepted").inc(accepted)
    status = 200 if rejected == 0 else 207 if accepted else 422
    payload = {"accepted": accepted, "rejected": rejected, "results": judgement.results}
    return web.json_response(payload, status=status, dumps=dumps)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.json_response({"status": "ok"}, dumps=dumps)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: a Kafka broker answers a metadata request (cached for 2 s)."""
    state = request.app[STATE]
    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(state.executor, state.gateway.ready):
        return web.json_response({"status": "ready", "kafka": "reachable"}, dumps=dumps)
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
    webhooks: Sequence[WebhookAdapter] = (),
    clock: Callable[[], float] = time.monotonic,
    kafka_threads: int = 16,
) -> web.Application:
    """The collector as an aiohttp application; serve it with `serve()` or an `AppRunner`.

    Each of `webhooks` is mounted at `POST /v1/webhooks/<adapter.name>` (names must differ:
    `ValueError` otherwise). Kafka is contacted on the first request (or readiness probe), not
    here; the producer is closed (in-flight messages delivered) when the application shuts
    down.
    """
    table = routes(webhooks)
    app = web.Application(middlewares=[_errors_and_metrics], client_max_size=config.max_body_bytes)
    gateway = KafkaGateway(
        config.kafka_bootstrap,
        config.events_topic,
        config.kafka_timeout_s,
        security=config.kafka_security,
        compression=config.kafka_compression,
        # The coalescer gathers concurrent requests itself: the producer's own wait would only
        # add to each window's latency. Without coalescing it is what batches their records.
        linger_ms=0 if config.coalesce_linger_ms > 0 else 5,
    )
    executor = ThreadPoolExecutor(kafka_threads, thread_name_prefix="uptake-collector-kafka")
    app[STATE] = CollectorState(
        config=config,
        tokens=tokens,
        limiter=RateLimiter(config.rate, config.bucket_size, clock),
        decoder=BatchDecoder(config.limits),
        gateway=gateway,
        executor=executor,
        coalescer=Coalescer(
            gateway,
            executor,
            linger_s=config.coalesce_linger_ms / 1000,
            max_events=config.coalesce_max_events,
            max_bytes=min(config.coalesce_max_bytes, config.limits.max_message_bytes),
        ),
        replays=DeliveryCache(config.replay_ttl_s, config.replay_entries, clock),
        webhooks=table,
    )
    app.router.add_post(EVENTS_PATH, post_events)
    app.router.add_post(FEEDBACK_PATH, post_feedback)
    for path, adapter in table.items():
        app.router.add_post(path, webhook_handler(adapter))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.on_cleanup.append(_close)
    return app


def create_metrics_app() -> web.Application:
    """`GET /metrics` alone, served on the metrics port (never on the public one)."""
    app = web.Application()
    app.router.add_get("/metrics", metrics)
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
    config: CollectorConfig,
    tokens: TokenTable,
    announce: Callable[[str], None] = print,
    *,
    webhooks: Sequence[WebhookAdapter] = (),
) -> int:
    """Run the collector until SIGINT/SIGTERM; in-flight requests finish, then Kafka closes."""

    async def run() -> None:
        app = create_app(config, tokens, webhooks=webhooks)
        metrics_runner = None
        if config.scrape_port:
            try:
                metrics_runner, metrics_url = await start(
                    create_metrics_app(), config.host, config.scrape_port
                )
            except OSError as exc:
                raise SettingsError(
                    f"cannot serve the collector's /metrics on {config.host}:"
                    f"{config.scrape_port} ({exc.strerror}): set UPTAKE_COLLECTOR_METRICS_PORT "
                    "to a free port, or 0 to disable it"
                ) from exc
            announce(f"collector metrics on {metrics_url}/metrics")
        runner, url = await start(app, config.host, config.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        hooks = ", ".join(ROUTE_PREFIX + adapter.name for adapter in webhooks)
        announce(
            f"uptake collector on {url} (POST {EVENTS_PATH}; sources: "
            f"{', '.join(tokens.sources) or 'none'}; webhooks: {hooks or 'none'}) -> Kafka "
            f"{config.kafka_bootstrap} topic {config.events_topic}. Ctrl-C stops it."
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            if metrics_runner is not None:
                await metrics_runner.cleanup()

    asyncio.run(run())
    return 0
