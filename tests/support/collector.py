"""The HTTP collector (pipeline/collector) harness: a collector served in-process from a
background thread's event loop, or as an `uptake collector` subprocess, and readers of what
landed on Kafka and of /metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from pipeline.collector.app import create_metrics_app, start
from tests.conftest import REPO, Pipeline, wait_until
from tests.support.topics import records


@dataclass
class Reply:
    """An HTTP answer: status, headers and raw body."""

    status: int
    headers: Message
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class FakeClock:
    """The rate limiter's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Collector:
    """A collector served from a background thread's event loop."""

    url: str
    topic: str
    bootstrap: str
    clock: FakeClock
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _runner: web.AppRunner
    metrics_url: str
    """The metrics port's base URL: /metrics is not served on the public one."""
    _metrics_runner: web.AppRunner
    auth: dict[str, str] = field(default_factory=dict)
    """Headers `post` sends when given none (the test's bearer token)."""
    _stopped: bool = field(default=False)

    @property
    def app(self) -> web.Application:
        """The application served (its state, e.g. to wrap its Kafka gateway in a test)."""
        return self._runner.app

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.headers, error.read())

    def scrape(self) -> Reply:
        """GET /metrics on the metrics port."""
        with urllib.request.urlopen(self.metrics_url + "/metrics", timeout=30) as response:
            return Reply(response.status, response.headers, response.read())

    def post(self, body: Any, headers: dict[str, str] | None = None, ndjson: bool = False) -> Reply:
        """POST events (JSON-encoded unless bytes) with `self.auth` unless `headers`."""
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        content_type = "application/x-ndjson" if ndjson else "application/json"
        return self.request(
            "POST",
            "/v1/events",
            data,
            {"Content-Type": content_type, **(self.auth if headers is None else headers)},
        )

    def landed(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(key, events) of every message on the topic, read to its end offsets."""
        return landed(self.bootstrap, self.topic)

    def landed_events(self) -> list[dict[str, Any]]:
        return [e for _, batch in self.landed() for e in batch]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        asyncio.run_coroutine_threadsafe(self._metrics_runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(collector: Collector, name: str, **labels: str) -> float:
    """The value of the sample `name` with exactly `labels` (in any order) on /metrics, else 0."""
    text = collector.scrape().raw.decode()
    for line in text.splitlines():
        sample = _SAMPLE.match(line)
        if sample is None or sample["name"] != name:
            continue
        if dict(_LABEL.findall(sample["labels"] or "")) == labels:
            return float(sample["value"])
    return 0.0


def serve_in_thread(
    app: web.Application,
    topic: str,
    bootstrap: str,
    clock: FakeClock,
    auth: dict[str, str] | None = None,
) -> Collector:
    """Serve `app` on a free port from a new thread's event loop; `stop()` it afterwards.

    `bootstrap` is where `landed()` reads `topic` (the real broker, even when the app itself
    is pointed at a closed port).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, url = asyncio.run_coroutine_threadsafe(start(app, "127.0.0.1", 0), loop).result(10)
    metrics = start(create_metrics_app(), "127.0.0.1", 0)
    metrics_runner, metrics_url = asyncio.run_coroutine_threadsafe(metrics, loop).result(10)
    return Collector(
        url,
        topic,
        bootstrap,
        clock,
        loop,
        thread,
        runner,
        metrics_url,
        metrics_runner,
        dict(auth or {}),
    )


# Like json.loads: a number beyond the double range (valid JSON, e.g. `1e400`) is inf.
_LANDED = msgspec.json.Decoder(float_hook=float)


def landed(bootstrap: str, topic: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(key, events) of every message on `topic`, read to its end offsets."""
    return [(r.key.decode(), _LANDED.decode(r.value)) for r in records(bootstrap, topic)]


def start_collector(pipeline: Pipeline, tokens: Path, port: int) -> subprocess.Popen[str]:
    """`uptake collector` as a subprocess on `port` with `tokens`, once /healthz answers."""
    collector = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "collector", "--tokens", str(tokens),
         "--port", str(port)],
        cwd=REPO, env=pipeline.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, what="the collector")
    return collector


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False
