"""What every route handler of the collector shares: its state, JSON errors, bodies, Kafka.

`pipeline.collector.app` builds the application and mounts the routes; the route modules
(`app`'s own `POST /v1/events`, `pipeline.collector.webhooks`) import this module and never the
application, so the import graph has no cycle (checked by import-linter in `make lint`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from pipeline.collector.adapters import WebhookAdapter
from pipeline.collector.auth import TokenTable
from pipeline.collector.coalesce import Coalescer
from pipeline.collector.config import CollectorConfig
from pipeline.collector.producer import KafkaGateway
from pipeline.collector.ratelimit import RateLimiter
from pipeline.collector.replay import DeliveryCache
from pipeline.contract.decode import BatchDecoder

log = logging.getLogger(__name__)

MESSAGE_EVENTS = 500
"""Most events in one Kafka message the collector produces."""
RETRY_AFTER_UNAVAILABLE_S = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class CollectorState:
    """What the handlers share: configuration, tokens, limiter, decoder, Kafka, threads, the
    coalescer in front of Kafka, the mounted webhook adapters (route path -> adapter), the
    webhook delivery ids already handled and the number of ingestion requests being handled."""

    config: CollectorConfig
    tokens: TokenTable
    limiter: RateLimiter
    decoder: BatchDecoder
    gateway: KafkaGateway
    executor: ThreadPoolExecutor
    coalescer: Coalescer
    replays: DeliveryCache
    webhooks: dict[str, WebhookAdapter] = field(default_factory=dict)
    in_flight: int = 0


STATE = web.AppKey("uptake_collector", CollectorState)


def dumps(obj: Any) -> str:
    """JSON text for `web.json_response`."""
    return msgspec.json.encode(obj).decode("utf-8")


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The collector's error answer: `{"error": code, "message": message}`."""
    return web.json_response(
        {"error": code, "message": message}, status=status, headers=headers, dumps=dumps
    )


async def hand_to_kafka(state: CollectorState, messages: list[tuple[str, bytes]]) -> None:
    """Produce (key, JSON array) messages and return once Kafka acknowledged all of them.

    Goes through the coalescer (`pipeline.collector.coalesce`), which may merge them with other
    requests' messages of the same key, and runs the blocking producer in the collector's
    thread pool. Raises `KafkaUnavailable` or `ProduceFailed`; the caller must then answer
    503, never 2xx.
    """
    await state.coalescer.produce(messages)


async def read_body(request: web.Request, limit: int, advice: str) -> bytes | web.Response:
    """The raw body, or a 413 answer when it is over `limit` bytes (`advice` says what to do).

    Checks `Content-Length` before reading anything, then counts while reading (a chunked or
    compressed body), so no more than `limit` bytes (plus one network chunk) are ever held.
    """
    too_large = json_error(
        413, "body_too_large", f"the body is larger than {limit} bytes; {advice}"
    )
    if request.content_length is not None and request.content_length > limit:
        return too_large
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                return too_large
            chunks.append(chunk)
    except RequestPayloadError as exc:  # e.g. a gzip body that does not decompress
        return json_error(400, "bad_body", f"the body could not be read: {exc}")
    return b"".join(chunks)


def kafka_unavailable(config: CollectorConfig, exc: Exception, what: str) -> web.Response:
    """The 503 answer when Kafka did not acknowledge; `what` says what to resend."""
    log.warning("collector: answering 503: %s", exc)  # details stay in the log
    return json_error(
        503,
        "kafka_unavailable",
        f"Kafka did not acknowledge the events within {config.kafka_timeout_s:g} s, so "
        f"none is confirmed. {what}",
        {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
    )


def _unauthorized(code: str, message: str) -> web.Response:
    challenge = 'Bearer realm="uptake"'
    if code == "invalid_token":
        challenge += ', error="invalid_token"'
    return json_error(401, code, message, {"WWW-Authenticate": challenge})


def bearer_source(request: web.Request) -> str | web.Response:
    """The source the request's bearer token speaks for, or the 401 answer."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return _unauthorized("missing_token", "send Authorization: Bearer <token>")
    tokens = request.app[STATE].tokens
    source = tokens.source_for(token.strip()) if scheme.lower() == "bearer" else None
    if source is None:
        return _unauthorized("invalid_token", "the bearer token is not valid for any source")
    return source
