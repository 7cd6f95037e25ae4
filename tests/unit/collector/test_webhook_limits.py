"""Webhook replay protection, the 64 KiB body limit and the in-flight cap (issue #16, hole 7),
through aiohttp's test client, with the real GitHub and GitLab payloads of
tests/unit/collector/adapters and the session's real Kafka broker for what lands.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.collector.adapters import GenericAdapter, GitHubAdapter, GitLabAdapter
from pipeline.collector.adapters.generic import DELIVERY_HEADER, SIGNATURE_HEADER
from pipeline.collector.app import create_app
from pipeline.collector.auth import TokenTable
from pipeline.collector.config import CollectorConfig
from pipeline.collector.handling import STATE
from pipeline.contract.decode import Limits
from pipeline.kafka.topics import ensure_topics
from tests.support.collector import landed
from tests.support.webhooks import fixture_bytes, sign

GITHUB_SECRET = "gh-webhook-secret-5d0c9f0e2b7a4e1f"
GITLAB_TOKEN = "gl-webhook-token-8a1e6c3b9d2f4a70"
GENERIC_TOKEN = "generic-token-3f7b2d9e1c6a4b58"
GENERIC_SECRET = "generic-hmac-secret-0e4d8b2a6f1c9e37"
GITHUB_SUCCESS = "github/deployment_status_success.json"
GITLAB_SUCCESS = "gitlab/deployment_success.json"
OLD_PAYLOADS = Limits(max_lateness=timedelta(days=365 * 30))  # the fixtures are from 2019/2021
UNREACHABLE = "127.0.0.1:1"  # for tests that never produce

Run = Callable[[TestClient[web.Request, web.Application]], Awaitable[None]]


def adapters() -> list[Any]:
    return [
        GitHubAdapter(GITHUB_SECRET),
        GitLabAdapter(GITLAB_TOKEN),
        GenericAdapter(token=GENERIC_TOKEN, secret=GENERIC_SECRET, name="argo-cd"),
    ]


def run(test: Run, bootstrap: str = UNREACHABLE, topic: str = "unused", **options: Any) -> None:
    """Serve a collector with `options` (CollectorConfig fields) and run `test` against it."""
    options = {"limits": OLD_PAYLOADS, "kafka_timeout_s": 5, **options}
    config = CollectorConfig(
        host="127.0.0.1", port=0, kafka_bootstrap=bootstrap, events_topic=topic, **options
    )

    async def main() -> None:
        app = create_app(config, TokenTable(()), webhooks=adapters(), kafka_threads=2)
        async with TestClient(TestServer(app)) as client:
            await test(client)

    asyncio.run(main())


def github_headers(body: bytes, delivery: str, secret: str = GITHUB_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, secret),
    }


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"test.webhook-limits.{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, {name: 1})
    return name


# --- replays -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_replayed_github_delivery_is_200_and_produced_once(
    kafka_bootstrap: str, topic: str
) -> None:
    body = fixture_bytes(GITHUB_SUCCESS)
    delivery = str(uuid.uuid4())
    answers: list[tuple[int, Any]] = []

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        # A forged delivery with the id does not poison the cache (verified first) ...
        forged = await client.post(
            "/v1/webhooks/github", data=body, headers=github_headers(body, delivery, "wrong")
        )
        answers.append((forged.status, await forged.json()))
        for _ in range(3):  # ... the real one, and two replays of it
            reply = await client.post(
                "/v1/webhooks/github", data=body, headers=github_headers(body, delivery)
            )
            answers.append((reply.status, await reply.json()))
        # The negative control: another delivery id of the same body is produced again.
        other = await client.post(
            "/v1/webhooks/github", data=body, headers=github_headers(body, str(uuid.uuid4()))
        )
        answers.append((other.status, await other.json()))

    run(test, kafka_bootstrap, topic)
    assert [status for status, _ in answers] == [401, 202, 200, 200, 202]
    assert answers[2][1]["replay_of"] == delivery and answers[2][1]["accepted"] == 0
    assert "nothing was produced again" in answers[2][1]["message"]
    assert len(landed(kafka_bootstrap, topic)) == 2  # the first delivery and the control


@pytest.mark.integration
def test_a_replayed_gitlab_delivery_is_recognised_by_its_idempotency_key(
    kafka_bootstrap: str, topic: str
) -> None:
    body = fixture_bytes(GITLAB_SUCCESS)
    statuses: list[int] = []

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        for key in ("retry-1", "retry-1", "retry-2"):
            headers = {
                "X-Gitlab-Event": "Deployment Hook",
                "X-Gitlab-Token": GITLAB_TOKEN,
                "Idempotency-Key": key,
                "X-Gitlab-Event-UUID": "same-event-uuid",  # Idempotency-Key comes first
            }
            reply = await client.post("/v1/webhooks/gitlab", data=body, headers=headers)
            statuses.append(reply.status)

    run(test, kafka_bootstrap, topic)
    assert statuses == [202, 200, 202]
    assert len(landed(kafka_bootstrap, topic)) == 2


def test_a_delivery_kafka_did_not_take_is_not_remembered() -> None:
    """503 (Kafka unreachable): the redelivery is handled again, never answered 200."""
    body = fixture_bytes(GITHUB_SUCCESS)
    statuses: list[int] = []

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        for _ in range(2):
            reply = await client.post(
                "/v1/webhooks/github", data=body, headers=github_headers(body, "d-1")
            )
            statuses.append(reply.status)
        assert len(client.server.app[STATE].replays) == 0

    run(test, kafka_timeout_s=1)
    assert statuses == [503, 503]


# --- the body limit ----------------------------------------------------------------------------


def test_a_content_length_over_64_kib_is_413_before_the_body_is_read() -> None:
    """The headers alone announce 10 MB: the answer comes without a byte of the body sent."""
    answer: list[bytes] = []

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"POST /v1/webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: deployment_status\r\nContent-Length: 10000000\r\n\r\n"
        )
        await writer.drain()
        answer.append(await asyncio.wait_for(reader.read(4096), timeout=10))
        writer.close()

    run(test)
    head, _, payload = answer[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(payload)["message"].startswith("the body is larger than 65536 bytes")


def test_a_chunked_body_is_cut_at_64_kib_while_streaming() -> None:
    sent: list[int] = []
    replies: list[tuple[int, Any]] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(4096):  # up to 64 MiB, if nobody stopped reading
            sent.append(16 * 1024)
            yield b" " * (16 * 1024)

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        headers = {"X-GitHub-Event": "deployment_status", "X-GitHub-Delivery": "big"}
        reply = await client.post("/v1/webhooks/github", data=endless(), headers=headers)
        replies.append((reply.status, await reply.json()))
        # The real payload (6.5 KB) fits, with or without Content-Length.
        body = fixture_bytes(GITHUB_SUCCESS)
        reply = await client.post(
            "/v1/webhooks/github", data=body, headers=github_headers(body, "d", "wrong")
        )
        replies.append((reply.status, await reply.json()))

    run(test)
    assert replies[0][0] == 413 and replies[0][1]["error"] == "body_too_large"
    assert "65536 bytes" in replies[0][1]["message"]
    assert replies[1][0] == 401  # read in full and judged by its signature
    assert sum(sent) < 16 * 1024 * 1024, "the collector stopped reading long before the end"


def test_the_webhook_limit_is_its_own_setting_and_events_keep_theirs() -> None:
    statuses: list[int] = []

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        body = b"[" + b" " * 100_000 + b"]"
        hook = await client.post(
            "/v1/webhooks/github", data=body, headers={"X-GitHub-Event": "ping"}
        )
        events = await client.post(
            "/v1/events", data=body, headers={"Authorization": "Bearer nope"}
        )
        statuses.extend([hook.status, events.status])

    run(test, webhook_max_body_bytes=64 * 1024)
    assert statuses == [413, 401]  # 100 KB is too much for a webhook, not for /v1/events


# --- the in-flight cap -------------------------------------------------------------------------


def test_requests_beyond_the_in_flight_cap_get_503_with_retry_after() -> None:
    outcomes: list[Any] = []

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"{"
            await release.wait()
            yield b"}"

        headers = {
            "Authorization": f"Bearer {GENERIC_TOKEN}",
            SIGNATURE_HEADER: "sha256=" + "0" * 64,
            DELIVERY_HEADER: "slow",
        }
        held = [
            asyncio.create_task(client.post("/v1/webhooks/argo-cd", data=slow(), headers=headers))
            for _ in range(2)
        ]
        state = client.server.app[STATE]
        for _ in range(200):
            if state.in_flight == 2:
                break
            await asyncio.sleep(0.01)
        busy = await client.post("/v1/webhooks/argo-cd", data=b"{}", headers=headers)
        events = await client.post("/v1/events", data=b"{}")
        outcomes.append((busy.status, busy.headers.get("Retry-After"), await busy.json()))
        outcomes.append(events.status)
        release.set()
        outcomes.append(sorted([(await task).status for task in held]))
        after = await client.post("/v1/webhooks/argo-cd", data=b"{}", headers=headers)
        outcomes.append((after.status, state.in_flight))

    run(test, max_in_flight=2)
    (status, retry_after, answer), events, held, after = outcomes
    assert (status, retry_after, answer["error"]) == (503, "1", "too_busy")
    assert "handling 2 requests, its limit" in answer["message"]
    assert events == 503  # one cap for both ingestion routes
    assert held == [401, 401]  # the held requests finished (their signature is wrong)
    assert after == (401, 0)  # the negative control: below the cap, requests are handled


def test_the_generic_adapter_needs_both_token_and_signature_over_http() -> None:
    body = b'{"deployment_id": 1}'
    statuses: list[int] = []

    async def test(client: TestClient[web.Request, web.Application]) -> None:
        for headers in (
            {"Authorization": f"Bearer {GENERIC_TOKEN}"},
            {SIGNATURE_HEADER: sign(body, GENERIC_SECRET)},
            {
                "Authorization": f"Bearer {GENERIC_TOKEN}",
                SIGNATURE_HEADER: sign(body, GENERIC_SECRET),
            },
        ):
            reply = await client.post("/v1/webhooks/argo-cd", data=body, headers=headers)
            statuses.append(reply.status)

    run(test)
    assert statuses == [401, 401, 400]  # both valid: authenticated, then the body is judged
