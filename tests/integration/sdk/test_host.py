"""The SDK behaves like a good guest in a host: a small web app that emits one event per request
keeps answering its own requests while the collector is down, while Kafka is down and while the
broker restarts; after recovery every event the SDK did not report as dropped is in the
warehouse exactly once (counted there, after the real worker consumed the topic).

The negative control for "exactly once" is the count itself: an event lost or written twice
changes `count()` or the id set compared below.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import secrets
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uptake_sdk import DeliveryError, UptakeClient, UptakeError, api_call

from pipeline.devtools.broker import LocalBroker
from pipeline.kafka.topics import ensure_topics
from tests.conftest import Pipeline, free_port, wait_until
from tests.support.collector import start_collector

pytestmark = pytest.mark.integration

MAX_ANSWER_S = 1.0  # the host's own requests, on 2 shared cores with a JVM starting


class HostApp:
    """A tiny web service: GET /order emits an api_call event through the SDK and answers 200.
    The ids it emitted are kept (the ground truth), so are the events reported as dropped."""

    def __init__(self, client: UptakeClient) -> None:
        self.client = client
        self.emitted: list[str] = []
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                e = api_call(capability="api-gateway", team="checkout", service="checkout-api",
                             api="orders", operation="GET /order", status_code=200,
                             latency_ms=1.0)  # fmt: skip
                app.emitted.append(e["event_id"])
                app.client.emit(e)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/order"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hit(self, n: int, pause: float = 0.0) -> list[float]:
        """Request n times; the answer times in seconds (each must be a 200)."""
        times = []
        for _ in range(n):
            started = time.monotonic()
            with urllib.request.urlopen(self.url, timeout=10) as answer:
                assert answer.status == 200
            times.append(time.monotonic() - started)
            time.sleep(pause)
        return times

    def stop(self) -> None:
        self.server.shutdown()


class Dropped:
    """on_error: remembers the ids of events reported as dropped."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.count = 0
        self.errors: list[UptakeError] = []

    def __call__(self, error: UptakeError) -> None:
        self.errors.append(error)
        if isinstance(error, DeliveryError) and error.dropped:
            self.count += error.count
            self.ids.update(e["event_id"] for e in error.events)


def assert_exactly_once(pipeline: Pipeline, expected: set[str]) -> None:
    pipeline.run("worker", "--exit-when-idle", "5", timeout=300)
    rows = pipeline.rows("SELECT toString(event_id) AS id FROM events")
    landed = [r["id"] for r in rows]
    assert len(landed) == len(set(landed)), "an event is in the warehouse twice"
    assert set(landed) == expected, (
        f"missing {len(expected - set(landed))}, unexpected {len(set(landed) - expected)}"
    )


# --- HTTP: the collector down, a process restart with the spool, recovery --------------------


def test_host_keeps_answering_with_the_collector_down_and_every_event_arrives_once(
    pipeline_env: Pipeline, tmp_path: Path
) -> None:
    pipeline_env.run("migrate")
    token = secrets.token_urlsafe(24)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"svc": hashlib.sha256(token.encode()).hexdigest()}))
    port = free_port()  # nothing listens here yet: the collector is down
    url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"

    # 1. A process emits while the collector is down and exits: its exit is bounded and its
    #    events wait on disk (the spool) for the next process.
    script = textwrap.dedent(
        f"""
        import json, time
        from uptake_sdk import UptakeClient, api_call
        c = UptakeClient(url={url!r}, token={token!r}, source="svc", spool_dir={str(spool)!r},
                         exit_timeout_s=1, retry_initial_s=0.05)
        ids = []
        for i in range(40):
            e = api_call(capability="api-gateway", team="search", api="q", operation="GET /q",
                         status_code=200, latency_ms=2.0)
            ids.append(e["event_id"])
            c.emit(e)
        print(json.dumps(ids))
        """
    )
    started = time.monotonic()
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert time.monotonic() - started < 10
    first_ids = set(json.loads(first.stdout))
    assert list(spool.glob("*.batch")), "the first process left nothing in the spool"

    # 2. The host starts (same spool) while the collector is still down and keeps answering.
    dropped = Dropped()
    started = time.monotonic()
    client = UptakeClient(url=url, token=token, source="svc", spool_dir=spool, linger_ms=20,
                          on_error=dropped, retry_initial_s=0.05, retry_max_s=0.5)  # fmt: skip
    assert time.monotonic() - started < 0.5
    host = HostApp(client)
    collector = None
    try:
        down = host.hit(60, pause=0.01)
        assert max(down) < MAX_ANSWER_S, max(down)
        wait_until(lambda: client.stats().send_failures > 0, 30, what="a failed attempt")
        assert any(isinstance(e, DeliveryError) for e in dropped.errors)

        # 3. The collector comes up: spool and queue drain by themselves.
        collector = start_collector(pipeline_env, tokens, port)
        up = host.hit(40)
        assert max(up) < MAX_ANSWER_S
        assert client.flush(60), client.stats()
        client.close(10)
    finally:
        host.stop()
        if collector is not None:
            collector.terminate()
            collector.wait(30)
    assert not list(spool.glob("*.batch"))
    stats = client.stats()
    assert stats.dropped == dropped.count
    expected = (first_ids | set(host.emitted)) - dropped.ids
    assert dropped.count == len(dropped.ids)  # every drop named its events
    assert_exactly_once(pipeline_env, expected)


def test_negative_control_the_exactly_once_check_catches_events_lost_without_the_spool(
    pipeline_env: Pipeline, tmp_path: Path
) -> None:
    """Without a spool, a process that exits while the collector is down loses its events
    silently (it has no on_error): the check above must report them missing."""
    pipeline_env.run("migrate")
    token = secrets.token_urlsafe(24)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"svc": hashlib.sha256(token.encode()).hexdigest()}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    script = textwrap.dedent(
        f"""
        import json
        from uptake_sdk import UptakeClient, api_call
        c = UptakeClient(url={url!r}, token={token!r}, source="svc", exit_timeout_s=1,
                         retry_initial_s=0.05)
        ids = []
        for i in range(10):
            e = api_call(capability="api-gateway", team="search", api="q", operation="GET /q",
                         status_code=200, latency_ms=2.0)
            ids.append(e["event_id"])
            c.emit(e)
        print(json.dumps(ids))
        """
    )
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    lost = set(json.loads(first.stdout))
    collector = start_collector(pipeline_env, tokens, port)
    try:
        client = UptakeClient(url=url, token=token, source="svc", linger_ms=20)
        kept = set()
        for _ in range(5):
            event = api_call(capability="api-gateway", team="search", api="q",
                             operation="GET /q", status_code=200, latency_ms=2.0)  # fmt: skip
            kept.add(event["event_id"])
            client.emit(event)
        assert client.flush(60), client.stats()
        client.close(10)
    finally:
        collector.terminate()
        collector.wait(30)
    with pytest.raises(AssertionError, match="missing 10, unexpected 0"):
        assert_exactly_once(pipeline_env, lost | kept)


# --- Kafka: down at start, then a broker restart under load ------------------------------------


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this test only (not started): the session broker is never touched."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("needs java and mvn on PATH (Debian: openjdk-17-jre-headless, maven)")
    port, controller = free_port(), free_port()
    home = tmp_path_factory.mktemp("sdk-kafka")
    broker = LocalBroker(home, port=port, controller_port=controller)
    try:
        yield broker
    finally:
        broker.stop(timeout=15)


def test_host_keeps_answering_with_kafka_down_and_through_a_broker_restart(
    own_broker: LocalBroker, pipeline_env: Pipeline
) -> None:
    pipeline = Pipeline(dict(pipeline_env.env, KAFKA_BOOTSTRAP_SERVERS=own_broker.bootstrap),
                        pipeline_env.home)  # fmt: skip
    topic = pipeline.env["UPTAKE_EVENTS_TOPIC"]
    dropped = Dropped()
    started = time.monotonic()
    client = UptakeClient(own_broker.bootstrap, topic, source="svc", timeout_s=2,
                          linger_ms=20, on_error=dropped, retry_max_s=1.0)  # fmt: skip
    assert time.monotonic() - started < 0.5, "construction waited for Kafka"
    host = HostApp(client)
    try:
        # 1. Kafka is down (nothing listens on its port): the host answers as usual.
        down = host.hit(50, pause=0.02)
        assert max(down) < MAX_ANSWER_S, max(down)
        wait_until(lambda: client.stats().send_failures > 0, 30, what="a failed attempt")
        assert client.stats().delivered == 0

        # 2. Kafka comes up: what was queued is sent without the host doing anything.
        own_broker.start(timeout=120, progress=lambda _: None)
        ensure_topics(own_broker.bootstrap, {topic: 2})
        assert client.flush(60), client.stats()

        # 3. The broker restarts while the host serves a steady stream of requests.
        times: list[float] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                times.extend(host.hit(1, pause=0.02))

        loader = threading.Thread(target=load)
        loader.start()
        try:
            time.sleep(1)
            assert own_broker.stop(timeout=30)
            time.sleep(2)
            own_broker.start(timeout=120, progress=lambda _: None)
            time.sleep(1)
        finally:
            stop.set()
            loader.join()
        assert len(times) > 50 and max(times) < MAX_ANSWER_S, (len(times), max(times))
        assert client.flush(60), client.stats()
        client.close(10)
    finally:
        host.stop()
    assert client.stats().dropped == dropped.count == len(dropped.ids)
    pipeline.run("migrate")
    assert_exactly_once(pipeline, set(host.emitted) - dropped.ids)
