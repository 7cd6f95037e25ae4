"""uptake_sdk.UptakeClient without services: a scripted transport stands in for Kafka and the
collector, so the host-facing promises are checked exactly: no blocking construction, a bounded
queue that drops the newest event and counts it, no exception into the host (strict mode
raises), retries with backoff honouring Retry-After, bounded flush and close, the disk spool
across a "restart", and the disabled switch."""

from __future__ import annotations

import http.server
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uptake_sdk
from uptake_sdk import DeliveryError, InvalidEvent, UptakeClient, UptakeError, api_call
from uptake_sdk.transport import HttpTransport, Message, TransportError

from tests.conftest import free_port


def event(team: str = "checkout") -> dict[str, Any]:
    return api_call(capability="api-gateway", team=team, api="orders",
                    operation="POST /v1/orders", status_code=201, latency_ms=3.5)  # fmt: skip


class Scripted:
    """A transport whose answers are scripted: each send pops the next outcome (an exception to
    raise, a number of refused events, or "hang" to block until released)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[Message] = []
        self.attempts: list[float] = []
        self.release = threading.Event()

    def open(self) -> None:
        return None

    def send(self, messages: Sequence[Message]) -> int:
        self.attempts.append(time.monotonic())
        outcome = self.outcomes.pop(0) if self.outcomes else 0
        if outcome == "hang":
            self.release.wait(30)
            raise TransportError("hung")
        if isinstance(outcome, BaseException):
            raise outcome
        self.sent.extend(messages)
        return int(outcome)

    def close(self) -> None:
        return None

    def ids(self) -> list[str]:
        return [e["event_id"] for _, v in self.sent for e in msgspec.json.decode(v)]


@pytest.fixture
def errors() -> list[UptakeError]:
    return []


def client(transport: Scripted, errors: list[UptakeError], **options: Any) -> UptakeClient:
    options.setdefault("linger_ms", 5)
    options.setdefault("retry_initial_s", 0.01)
    return UptakeClient(transport=transport, source="unit", on_error=errors.append, **options)


def test_construction_never_touches_the_network() -> None:
    started = time.monotonic()
    dead_kafka = UptakeClient(f"127.0.0.1:{free_port()}", source="svc", timeout_s=30)
    dead_http = UptakeClient(url=f"http://127.0.0.1:{free_port()}", token="t", source="svc")
    assert time.monotonic() - started < 0.5
    dead_kafka.emit(event())
    started = time.monotonic()
    dead_kafka.close(timeout=0.5)
    dead_http.close(timeout=0.5)
    assert time.monotonic() - started < 2.5


def test_invalid_events_go_to_on_error_not_into_the_host(errors: list[UptakeError]) -> None:
    transport = Scripted()
    c = client(transport, errors)
    bad = event()
    bad["data"]["status_code"] = 700
    c.emit(bad)
    c.emit({"event_type": "page_view"})
    c.emit("not an event")  # type: ignore[arg-type]
    c.emit(event())
    assert c.flush(2)
    assert [type(e) for e in errors] == [InvalidEvent] * 3
    assert isinstance(errors[0], InvalidEvent) and errors[0].path == "$.data.status_code"
    assert c.stats().invalid == 3 and c.stats().delivered == 1
    c.close()


def test_strict_mode_raises_as_before(errors: list[UptakeError]) -> None:
    c = client(Scripted(), errors, strict=True)
    with pytest.raises(InvalidEvent):
        c.emit({"event_type": "page_view"})
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.emit(event())


def test_a_full_queue_drops_the_newest_event_and_counts_it(errors: list[UptakeError]) -> None:
    transport = Scripted("hang")
    c = client(transport, errors, max_queue_events=10, batch_events=1)
    kept = [event() for _ in range(10)]
    for e in kept:
        c.emit(e)
    started = time.monotonic()
    for _ in range(5):
        c.emit(event())  # the queue is full: dropped at once, never waits
    assert time.monotonic() - started < 0.1
    assert c.stats().dropped_queue_full == 5
    dropped = [e for e in errors if isinstance(e, DeliveryError) and e.reason == "queue_full"]
    assert len(dropped) == 5 and all(e.dropped for e in dropped)
    transport.release.set()
    assert c.flush(5)
    # the first send hung and failed, was retried: every kept event arrived once, in order
    assert transport.ids() == [e["event_id"] for e in kept]
    c.close()


def test_failed_sends_are_retried_with_backoff_and_arrive_once(errors: list[UptakeError]) -> None:
    transport = Scripted(*[TransportError("down")] * 4)
    c = client(transport, errors, retry_initial_s=0.02, retry_max_s=0.2)
    sent = [event() for _ in range(20)]
    for e in sent:
        c.emit(e)
    assert c.flush(10)
    assert sorted(transport.ids()) == sorted(e["event_id"] for e in sent)
    assert len(transport.attempts) >= 5
    stats = c.stats()
    assert (stats.send_failures, stats.delivered, stats.dropped) == (4, 20, 0)
    assert sum(isinstance(e, DeliveryError) and not e.dropped for e in errors) == 4
    c.close()


def test_retry_after_is_honoured(errors: list[UptakeError]) -> None:
    transport = Scripted(TransportError("429", retry_after=0.6))
    c = client(transport, errors, retry_initial_s=0.001, retry_max_s=5)
    c.emit(event())
    assert c.flush(5)
    assert transport.attempts[1] - transport.attempts[0] >= 0.55
    c.close()


def test_flush_and_close_are_bounded_and_report_what_is_left(errors: list[UptakeError]) -> None:
    transport = Scripted("hang")
    c = client(transport, errors)
    for _ in range(3):
        c.emit(event())
    started = time.monotonic()
    assert c.flush(0.3) is False
    c.close(timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert c.stats().dropped_undelivered == 3
    [last] = [e for e in errors if isinstance(e, DeliveryError) and e.dropped]
    assert last.reason == "undelivered_at_close" and len(last.events) == 3
    transport.release.set()


def test_strict_close_raises_with_the_events_not_delivered(errors: list[UptakeError]) -> None:
    transport = Scripted(*[TransportError("down")] * 100)
    c = client(transport, errors, strict=True)
    sent = [event() for _ in range(3)]
    for e in sent:
        c.emit(e)
    with pytest.raises(DeliveryError, match="did not acknowledge 3 event") as raised:
        c.close(timeout=0.3)
    assert sorted(e["event_id"] for e in raised.value.events) == sorted(e["event_id"] for e in sent)


def test_a_broken_on_error_callback_does_not_reach_the_host() -> None:
    def explode(error: UptakeError) -> None:
        raise RuntimeError("callback bug")

    c = UptakeClient(transport=Scripted(), on_error=explode, source="unit")
    c.emit({"event_type": "page_view"})  # reported to the callback, which raises: swallowed
    c.close()


def test_the_spool_survives_a_restart_while_the_transport_is_down(
    errors: list[UptakeError], tmp_path: Path
) -> None:
    down = Scripted(*[TransportError("down")] * 1000)
    first = client(down, errors, spool_dir=tmp_path, retry_initial_s=0.05)
    sent = [event(team) for team in ("a", "b") * 10]
    for e in sent:
        first.emit(e)
    first.close(timeout=0.3)  # nothing delivered: everything is on disk, nothing dropped
    assert first.stats().dropped == 0 and list(tmp_path.glob("*.batch"))
    up = Scripted()
    second = client(up, errors, spool_dir=tmp_path)  # the "restarted process"
    assert second.flush(5)
    assert sorted(up.ids()) == sorted(e["event_id"] for e in sent)
    assert not list(tmp_path.glob("*.batch"))
    second.close()


def test_disabled_sends_nothing_and_costs_under_a_microsecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPTAKE_SDK_DISABLED", "1")
    threads = threading.active_count()
    transport = Scripted()
    c = UptakeClient(transport=transport, source="unit")
    assert c.disabled and threading.active_count() == threads
    e = event()
    n = 200_000
    best = min(_time_calls(c, e, n) for _ in range(5))
    assert best / n < 1e-6, f"{best / n * 1e9:.0f} ns per emit() when disabled"
    assert c.flush(1) is True
    c.close()
    assert transport.attempts == []


def _time_calls(c: UptakeClient, e: dict[str, Any], n: int) -> float:
    emit = c.emit
    started = time.perf_counter()
    for _ in range(n):
        emit(e)
    return time.perf_counter() - started


def test_disabled_costs_nothing_even_for_kafka_at_exit() -> None:
    script = textwrap.dedent(
        f"""
        import time
        from uptake_sdk import UptakeClient
        c = UptakeClient("127.0.0.1:{free_port()}", source="x")
        c.emit({{"event_type": "api_call"}})
        print(c.disabled)
        """
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"UPTAKE_SDK_DISABLED": "true"}, timeout=30)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    assert time.monotonic() - started < 5


# --- the HTTP transport against a scripted server -----------------------------------------------


class _Collector(http.server.BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, str], bytes]] = []
    bodies: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.append((dict(self.headers), body))
        status, headers, answer = self.answers.pop(0) if self.answers else (200, {}, b"{}")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def scripted_collector() -> Iterator[str]:
    _Collector.answers, _Collector.bodies = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_sends_gzip_batches_with_the_token_and_honours_429(
    scripted_collector: str, errors: list[UptakeError]
) -> None:
    import gzip

    _Collector.answers = [
        (429, {"Retry-After": "1"}, b'{"error": "rate_limited"}'),
        (503, {"Retry-After": "0"}, b'{"error": "kafka_unavailable"}'),
    ]
    c = UptakeClient(url=scripted_collector, token="s3cret", source="unit", linger_ms=5,
                     on_error=errors.append, retry_initial_s=0.01)  # fmt: skip
    sent = [event() for _ in range(30)]
    for e in sent:
        c.emit(e)
    started = time.monotonic()
    assert c.flush(10)
    assert time.monotonic() - started >= 0.95  # waited Retry-After: 1
    headers, body = _Collector.bodies[-1]
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Encoding"] == "gzip"
    landed = msgspec.json.decode(gzip.decompress(body))
    assert [e["event_id"] for e in landed] == [e["event_id"] for e in sent]
    assert len(_Collector.bodies) == 3
    assert c.stats().send_failures == 2 and c.stats().delivered == 30
    c.close()


def test_http_4xx_is_permanent_and_counted_as_dropped(
    scripted_collector: str, errors: list[UptakeError]
) -> None:
    _Collector.answers = [(401, {}, b'{"error": "invalid_token"}')]
    c = UptakeClient(url=scripted_collector, token="wrong", source="unit", linger_ms=5,
                     on_error=errors.append)  # fmt: skip
    c.emit(event())
    assert c.flush(5)
    assert c.stats().dropped_refused == 1 and len(_Collector.bodies) == 1
    assert any(isinstance(e, DeliveryError) and e.reason == "refused" for e in errors)
    c.close()


def test_the_http_transport_names_the_events_route() -> None:
    assert HttpTransport("http://c:8080/", "t").url == "http://c:8080/v1/events"
    assert HttpTransport("http://c:8080/v1/events", "t").url == "http://c:8080/v1/events"
    assert uptake_sdk.UptakeClient is UptakeClient
