"""The worker's /healthz and /readyz next to /metrics (pipeline/ingest/health.py)."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from pipeline.ingest.health import Health, serve
from tests.conftest import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_not_ready_but_live_before_the_loop_runs() -> None:
    health = Health(stall_after_s=60, clock=Clock())
    assert health.live() == (True, "starting")
    assert health.ready() == (False, "starting")


def test_ready_while_the_loop_beats_and_batches_complete() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    for _ in range(10):
        health.beat(writing=True)
        clock.now += 20
        health.beat(writing=False)  # the batch finished within 20 s
        assert health.ready() == (True, "ok")


def test_a_batch_writing_for_too_long_makes_it_unready_but_still_live() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    health.beat(writing=True)
    for _ in range(7):  # 70 s of beats, all while the same batch is being written
        clock.now += 10
        health.beat(writing=True)
    ready, why = health.ready()
    assert not ready and "writing for 70s" in why
    assert health.live() == (True, "ok")  # a restart would not help a failing ClickHouse
    health.beat(writing=False)
    assert health.ready() == (True, "ok")


def test_a_silent_loop_fails_liveness_and_readiness() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    health.beat()
    clock.now += 61
    assert health.live()[0] is False
    assert health.ready()[0] is False


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_served_next_to_the_metrics() -> None:
    registry = CollectorRegistry()
    Counter("uptake_probe_test_total", "a test counter", registry=registry).inc()
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    port = free_port()
    server = serve(port, health, registry, addr="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port}"
        assert _get(base + "/readyz") == (503, "starting\n")
        health.beat()
        assert _get(base + "/healthz") == (200, "ok\n")
        assert _get(base + "/readyz") == (200, "ok\n")
        status, text = _get(base + "/metrics")
        assert status == 200 and "uptake_probe_test_total 1.0" in text
        clock.now += 120
        status, text = _get(base + "/healthz")
        assert status == 503 and "has not run for 120s" in text
    finally:
        server.shutdown()
        server.server_close()
