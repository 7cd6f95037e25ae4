"""Liveness and readiness of a long-running process, served next to its `/metrics`.

- `GET /healthz` (liveness): 200 while the process's main loop keeps beating. The loop calls
  `Health.beat()` every second; no beat for `stall_after_s` means the loop is stuck (a deadlock,
  a blocking call on the event loop) and a restart helps. A slow or failing ClickHouse does *not*
  fail liveness: restarting would not help, the sink retries with backoff.
- `GET /readyz` (readiness): 200 once the loop beats and no batch has been in flight for more
  than `stall_after_s` — i.e. the process is consuming *and* its writes complete. 503 while an
  insert keeps failing (the sink retries, nothing is committed), so a rollout pauses and a
  PodDisruptionBudget counts the pod as unavailable.
- every other path: the Prometheus text of the registry (as `prometheus_client` serves it).

The answers are plain text: `ok`, or the reason for 503. Thread-safe: the HTTP server runs in
its own thread and only reads the two timestamps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

DEFAULT_STALL_AFTER_S = 60.0


class Health:
    """What `/healthz` and `/readyz` answer; fed by `beat()` from the process's main loop."""

    def __init__(
        self,
        stall_after_s: float = DEFAULT_STALL_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._last_beat: float | None = None
        self._busy_since: float | None = None

    def beat(self, writing: bool = False) -> None:
        """The loop is alive; `writing`: a batch is being written right now."""
        now = self._clock()
        self._last_beat = now
        if not writing:
            self._busy_since = None
        elif self._busy_since is None:
            self._busy_since = now

    def live(self) -> tuple[bool, str]:
        if self._last_beat is None:
            return True, "starting"  # liveness must not kill a process that is still starting
        silent = self._clock() - self._last_beat
        if silent > self.stall_after_s:
            return False, f"the main loop has not run for {silent:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self._last_beat is None:
            return False, "starting"
        alive, why = self.live()
        if not alive:
            return False, why
        if self._busy_since is not None:
            busy = self._clock() - self._busy_since
            if busy > self.stall_after_s:
                return False, f"a batch has been writing for {busy:.0f}s (inserts failing?)"
        return True, "ok"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no access log."""


def wsgi_app(health: Health, registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok, why = health.live() if path == "/healthz" else health.ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            body = (why + "\n").encode()
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        return metrics(environ, start_response)

    return app


def serve(
    port: int, health: Health, registry: CollectorRegistry, addr: str = "0.0.0.0"
) -> ThreadingWSGIServer:
    """Serve /metrics, /healthz and /readyz on `port` in a daemon thread; raises OSError."""
    server = make_server(
        addr, port, wsgi_app(health, registry), ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="uptake-metrics", daemon=True)
    thread.start()
    return server
