"""The collector under HTTP load: requests/s and latency with one-event bodies, coalescing on
and off in the same run (`make bench-collector`, or `python -m pipeline.devtools.bench_collector`).

The load comes from `hey` (github.com/rakyll/hey), a real HTTP load generator, built into
.uptake/tools with `go install` when missing (needs Go; the module comes through the Go proxy).
Each mode runs `uptake collector` as its own process against the broker at
KAFKA_BOOTSTRAP_SERVERS, on a fresh topic, with the rate limit off; rounds alternate the modes
(off, on, off, on, ...) so both see the same machine load. Prints progress to stderr and one
JSON line of figures to stdout; the topics are deleted at the end. docs/benchmarks.md,
"Collector under load", records the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from kafka import KafkaConsumer, TopicPartition

from pipeline.collector.auth import hash_token
from pipeline.config.settings import Settings
from pipeline.kafka.topics import delete_topics_best_effort, ensure_topics
from pipeline.sdk import api_call

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".uptake" / "tools"
HEY_MODULE = "github.com/rakyll/hey@v0.1.4"
TOPIC_PREFIX = "bench.collector."
SOURCE = "bench"


def _say(text: str) -> None:
    print(f"bench-collector: {text}", file=sys.stderr, flush=True)


def hey_binary() -> Path:
    """`hey` from PATH or .uptake/tools, built there with `go install` if missing."""
    found = shutil.which("hey") or (str(TOOLS / "hey") if (TOOLS / "hey").exists() else None)
    if found:
        return Path(found)
    go = shutil.which("go")
    if go is None:
        raise SystemExit(
            f"bench-collector: needs `hey`; install Go (https://go.dev/dl) so it can be built "
            f"with `go install {HEY_MODULE}`, or put hey on PATH"
        )
    TOOLS.mkdir(parents=True, exist_ok=True)
    _say(f"building hey into {TOOLS} (go install {HEY_MODULE})")
    subprocess.run([go, "install", HEY_MODULE], env={**os.environ, "GOBIN": str(TOOLS)}, check=True)
    return TOOLS / "hey"


@dataclass(frozen=True)
class Load:
    """What `hey` ran: seconds per mode and round, concurrent connections."""

    duration_s: int
    concurrency: int
    rounds: int
    linger_ms: float


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_PCT = re.compile(r"(\d+)% in ([\d.]+) secs")
_STATUS = re.compile(r"\[(\d+)\]\s+(\d+) responses")


def parse_hey(text: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms) and status counts from hey's summary."""
    rps = _RPS.search(text)
    if rps is None:
        raise RuntimeError(f"hey printed no summary:\n{text}")
    pct = {int(p): float(s) * 1000 for p, s in _PCT.findall(text)}
    statuses = {int(code): int(n) for code, n in _STATUS.findall(text)}
    return {
        "requests_per_s": round(float(rps.group(1)), 1),
        "p50_ms": round(pct.get(50, float("nan")), 2),
        "p99_ms": round(pct.get(99, float("nan")), 2),
        "responses": statuses,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the collector exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the collector at {url} was not ready within {timeout_s:g} s")


def _messages_on(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="uptake-bench-collector")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return int(sum(consumer.end_offsets(partitions).values()))
    finally:
        consumer.close()


def run_mode(
    hey: Path, settings: Settings, load: Load, coalescing: bool, workdir: Path, run_id: str
) -> dict[str, Any]:
    """One collector process, warmed up, under `hey` for `load.duration_s`; its figures."""
    token = secrets.token_hex(16)
    tokens = workdir / "tokens.json"
    tokens.write_text(json.dumps({SOURCE: hash_token(token)}))
    event = api_call(
        capability="api-gateway", team="checkout", service="checkout-api", api="orders",
        operation="POST /v1/orders", status_code=201, latency_ms=23.7,
    )  # fmt: skip
    body = workdir / "event.json"
    body.write_bytes(msgspec.json.encode(event))
    topic = f"{TOPIC_PREFIX}{run_id}.{uuid.uuid4().hex[:6]}"
    bootstrap = settings.kafka.bootstrap
    ensure_topics(bootstrap, {topic: settings.kafka.topic_partitions})
    port = _free_port()
    linger = load.linger_ms if coalescing else 0.0
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "UPTAKE_EVENTS_TOPIC": topic,
        "UPTAKE_COLLECTOR_RATE": "0",
        "UPTAKE_COLLECTOR_MAX_IN_FLIGHT": str(max(256, 2 * load.concurrency)),
        "UPTAKE_COLLECTOR_COALESCE_LINGER_MS": str(linger),
    }
    command = [sys.executable, "-m", "pipeline.cli", "collector", "--tokens", str(tokens),
               "--port", str(port), "--metrics-port", "0"]  # fmt: skip
    collector = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, collector)
        hey_args = [str(hey), "-m", "POST", "-T", "application/json", "-H",
                    f"Authorization: Bearer {token}", "-D", str(body)]  # fmt: skip
        # Warm-up: the producer connects on the first request.
        subprocess.run([*hey_args, "-n", "200", "-c", "10", url + "/v1/events"],
                       check=True, capture_output=True)  # fmt: skip
        before = _messages_on(bootstrap, topic)
        out = subprocess.run(
            [*hey_args, "-z", f"{load.duration_s}s", "-c", str(load.concurrency),
             url + "/v1/events"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        figures = parse_hey(out.stdout)
        messages = _messages_on(bootstrap, topic) - before
        accepted = figures["responses"].get(200, 0)
        figures["kafka_messages"] = messages
        figures["events_per_message"] = round(accepted / messages, 1) if messages else None
        figures["linger_ms"] = linger
        return figures
    finally:
        collector.terminate()
        try:
            collector.wait(30)
        except subprocess.TimeoutExpired:
            collector.kill()


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests_per_s": round(statistics.mean(r["requests_per_s"] for r in rounds), 1),
        "p99_ms": round(statistics.mean(r["p99_ms"] for r in rounds), 2),
        "p50_ms": round(statistics.mean(r["p50_ms"] for r in rounds), 2),
        "rounds": rounds,
    }


def run(load: Load, settings: Settings | None = None) -> dict[str, Any]:
    """Alternate off/on for `load.rounds` rounds; the figures with the baseline beside them."""
    settings = settings or Settings.from_env()
    hey = hey_binary()
    run_id = uuid.uuid4().hex[:8]
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    try:
        with tempfile.TemporaryDirectory(prefix="uptake-bench-collector-") as tmp:
            for round_ in range(load.rounds):
                for coalescing in (False, True):
                    name = "coalescing" if coalescing else "no coalescing"
                    _say(f"round {round_ + 1}/{load.rounds}: {name}, {load.duration_s} s")
                    figures = run_mode(hey, settings, load, coalescing, Path(tmp), run_id)
                    results[coalescing].append(figures)
    finally:
        delete_topics_best_effort(
            settings.kafka.bootstrap,
            lambda t: t.startswith(f"{TOPIC_PREFIX}{run_id}."),
            client_id="uptake-bench-collector",
            say=_say,
        )
    on, off = _summary(results[True]), _summary(results[False])
    return {
        "collector_bench": {
            "body": "one event per request, one team",
            "concurrency": load.concurrency,
            "duration_s": load.duration_s,
            "coalescing": on,
            "no_coalescing": off,
            "ratio_requests_per_s": round(on["requests_per_s"] / off["requests_per_s"], 2),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.devtools.bench_collector",
        description="The collector under hey: requests/s and p99, coalescing on vs off.",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per mode and round")
    parser.add_argument("--concurrency", type=int, default=64, help="hey's concurrent workers")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, alternated")
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=None,
        help="the coalescing mode's linger (default: UPTAKE_COLLECTOR_COALESCE_LINGER_MS's)",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    linger = settings.collector.coalesce_linger_ms if args.linger_ms is None else args.linger_ms
    if linger <= 0:
        parser.error("the coalescing mode needs a linger > 0 ms")
    load = Load(args.duration, args.concurrency, args.rounds, linger)
    print(json.dumps(run(load, settings)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
