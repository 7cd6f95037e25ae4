"""`uptake soak`: sustained load at a fraction of what the pipeline sustains, then a burst.

Blocks for the whole run (calibration, `duration_s`, the burst and its drain) against the
configured broker, with the real worker as a subprocess and a warehouse of its own. Progress goes
to stderr, one JSON line of figures to stdout; the verdict (`judge`) fails when anything is lost
or double counted, the worker did not exit 0, the rate, lag or RSS bound was missed or the burst
did not drain. The phases and bounds: docs/reliability.md#load.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from pipeline.config.settings import DEFAULT_KAFKA_COMPRESSION, Settings, redact_url
from pipeline.kafka.topics import delete_topics_best_effort, ensure_topics

Cell = tuple[str, str]


@dataclass(frozen=True)
class SoakConfig:
    """What the run does; the CLI flags of `uptake soak` map one to one."""

    duration_s: float = 300.0  # sustained phase (seconds)
    rate_fraction: float = 0.8  # of the calibrated throughput
    rate: float | None = None  # events/s; None: calibrate
    burst: float = 10.0  # burst volume = burst x rate x burst_s events
    burst_s: float = 5.0
    per_message: int = 100  # events per Kafka message
    teams: int = 12
    sample_every_s: float = 5.0
    lag_bound_s: float = 0.0  # sustained lag allowed, in seconds of the rate; 0: lag_bound_for
    calibration_s: float = 20.0  # calibration step 2: seconds of production at full speed
    rss_growth_bound: float = 0.15  # RSS growth allowed over the second half (fraction)
    rss_growth_floor_mb: float = 64.0  # ... but never less than this many MB
    rss_peak_bound_mb: float = 0.0  # worker peak RSS over its whole run (MB); 0: not judged
    drain_timeout_s: float = 300.0
    keep_load: bool = False  # keep the sustained load running during the burst and its drain
    reject_every: int = 50  # one message in this many carries one invalid event
    seed: int = 1


# --------------------------------------------------------------------------------------------
# messages: simulator events as templates with fresh event ids and send-time timestamps


@dataclass(frozen=True)
class MessageTemplate:
    """One Kafka message: a %-format with an event-id suffix and occurred_at per event."""

    key: bytes
    format: bytes
    events: int
    accepted: tuple[tuple[Cell, int], ...]  # (team, event_type) -> events
    rejected: tuple[tuple[Cell, int], ...]  # (reason, event_type) -> events


INVALID_REASON = "schema_violation"
CALIBRATION_EVENTS = 1_000_000  # calibration step 1's backlog, in whole batches (2 at least)


def message_templates(
    seed: int, teams: int, per_message: int, reject_every: int, pool: int = 20_000
) -> list[MessageTemplate]:
    """Full messages of `per_message` same-team simulator events, in the simulator's time order.

    In every `reject_every`-th message one api_call gets status_code 999 (a schema violation).
    """
    from pipeline.devtools.simulate.org import Organisation, generate

    org = Organisation.synthetic(seed, teams=teams)
    by_team: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, event in enumerate(generate(org, pool, seed, window=timedelta(minutes=10))):
        by_team.setdefault(event["team"], []).append((i, event))
    chunks = [
        events[start : start + per_message]
        for events in by_team.values()
        for start in range(0, len(events) - per_message + 1, per_message)
    ]
    chunks.sort(key=lambda chunk: chunk[0][0])  # interleaves the teams as they occur
    templates = []
    for n, chunk in enumerate(chunks):
        events = [dict(event) for _, event in chunk]
        bad = -1
        if reject_every and n % reject_every == 0:
            bad = next((j for j, e in enumerate(events) if e["event_type"] == "api_call"), -1)
            if bad >= 0:
                events[bad]["data"] = {**events[bad]["data"], "status_code": 999}
        parts = []
        for event in events:
            event["event_id"], event["occurred_at"] = "@ID@", "@TS@"
            encoded = msgspec.json.encode(event).replace(b"%", b"%%")
            parts.append(encoded.replace(b'"@ID@"', b'"%b"').replace(b'"@TS@"', b'"%b"'))
        accepted = Counter((e["team"], e["event_type"]) for j, e in enumerate(events) if j != bad)
        rejected = Counter([(INVALID_REASON, events[bad]["event_type"])] if bad >= 0 else [])
        templates.append(
            MessageTemplate(
                key=events[0]["team"].encode(),
                format=b"[" + b",".join(parts) + b"]",
                events=len(events),
                accepted=tuple(accepted.items()),
                rejected=tuple(rejected.items()),
            )
        )
    if not templates:
        raise ValueError(f"no team has {per_message} events in a pool of {pool}")
    return templates


def _now_iso() -> bytes:
    now = datetime.now(UTC)
    return b"%s.%03dZ" % (now.strftime("%Y-%m-%dT%H:%M:%S").encode(), now.microsecond // 1000)


class Sender:
    """Sends templates round-robin with fresh event ids; counts what Kafka acknowledged."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        templates: Sequence[MessageTemplate],
        compression: str = DEFAULT_KAFKA_COMPRESSION,
    ) -> None:
        from pipeline.kafka.producer import make_producer

        self.producer = make_producer(
            bootstrap, linger_ms=10, client_id="uptake-soak", compression=compression
        )
        self.topic = topic
        self.templates = templates
        rng = random.SystemRandom()
        # A random UUIDv4 prefix per sender and a 48-bit counter: ids unique across senders.
        self.prefix = b"%08x-%04x-4%03x-%04x-" % (
            rng.getrandbits(32),
            rng.getrandbits(16),
            rng.getrandbits(12),
            0x8000 | rng.getrandbits(14),
        )
        self.next_id = 0
        self.sent = 0  # messages handed to the producer
        self.acked = [0] * len(templates)  # per template, counted by Kafka's acknowledgement
        self.acked_events = 0
        self.failures: list[str] = []
        self.on_ack: Callable[[int], None] | None = None

    def send_one(self) -> int:
        index = self.sent % len(self.templates)
        template = self.templates[index]
        first = self.next_id
        self.next_id += template.events
        args: list[bytes] = [_now_iso()] * (2 * template.events)
        args[0::2] = [b"%s%012x" % (self.prefix, n) for n in range(first, self.next_id)]
        future = self.producer.send(
            self.topic, key=template.key, value=template.format % tuple(args)
        )
        future.add_callback(self._acked, index)
        future.add_errback(self._failed)
        self.sent += 1
        return template.events

    def _acked(self, index: int, _metadata: object) -> None:  # kafka-python's I/O thread
        self.acked[index] += 1
        self.acked_events += self.templates[index].events
        if self.on_ack is not None:
            self.on_ack(self.acked_events)

    def _failed(self, exc: BaseException) -> None:
        self.failures.append(repr(exc))

    def close(self) -> dict[str, Any]:
        """Flush, close, and say what Kafka took: events and the truth per cell."""
        self.producer.flush()
        self.producer.close()
        accepted: Counter[Cell] = Counter()
        rejected: Counter[Cell] = Counter()
        for template, count in zip(self.templates, self.acked, strict=True):
            for cell, n in template.accepted:
                accepted[cell] += n * count
            for cell, n in template.rejected:
                rejected[cell] += n * count
        return {
            "events": self.acked_events,
            "messages": sum(self.acked),
            "failures": self.failures[:5],
            "failed": len(self.failures),
            "accepted": sorted([*cell, n] for cell, n in accepted.items()),
            "rejected": sorted([*cell, n] for cell, n in rejected.items()),
        }


@dataclass
class ProducerHandle:
    """A producer process and what the orchestrator shares with it."""

    process: Any
    ready: Any
    go: Any
    stop: Any
    acked: Any  # multiprocessing.Value('q'): events acknowledged so far
    results: Any
    started_at: Any  # Value('d'): time.time() of the first send
    finished_at: Any  # Value('d'): time.time() when every message was acknowledged

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        result: dict[str, Any] = self.results.get(timeout=timeout)
        self.process.join(timeout)
        if result.get("error"):
            raise RuntimeError(f"the producer failed: {result['error']}")
        return result


def start_producer(
    bootstrap: str, topic: str, config: SoakConfig, *, rate: float | None, events: int | None
) -> ProducerHandle:
    """A producer process, started and loading its templates; it sends after `go` is set.

    `rate` paces it (events/s until `stop` is set, after a head start of `events` sent at once);
    without a rate it sends `events` as fast as it can.
    """
    ctx = multiprocessing.get_context("spawn")
    handle = ProducerHandle(
        process=None,
        ready=ctx.Event(),
        go=ctx.Event(),
        stop=ctx.Event(),
        acked=ctx.Value("q", 0, lock=False),
        results=ctx.Queue(),
        started_at=ctx.Value("d", 0.0, lock=False),
        finished_at=ctx.Value("d", 0.0, lock=False),
    )
    handle.process = ctx.Process(
        target=_producer_main,
        args=(bootstrap, topic, config, rate, events, handle),
        daemon=True,
        name="uptake-soak-producer",
    )
    handle.process.start()
    return handle


def _producer_main(
    bootstrap: str,
    topic: str,
    config: SoakConfig,
    rate: float | None,
    events: int | None,
    handle: ProducerHandle,
) -> None:
    try:
        templates = message_templates(
            config.seed, config.teams, config.per_message, config.reject_every
        )
        # UPTAKE_KAFKA_COMPRESSION, inherited with the environment of the parent.
        sender = Sender(bootstrap, topic, templates, Settings.from_env().kafka.compression)

        def on_ack(total: int) -> None:
            handle.acked.value = total

        sender.on_ack = on_ack
        handle.ready.set()
        handle.go.wait()
        handle.started_at.value = time.time()
        sent = 0
        if rate is None:
            while sent < (events or 0) and not handle.stop.is_set():
                sent += sender.send_one()
        else:  # paced; `events` (if any) are a head start sent at once
            started = time.monotonic()
            while not handle.stop.is_set():
                due = (events or 0) + (time.monotonic() - started) * rate
                while sent < due:
                    sent += sender.send_one()
                time.sleep(0.002)
        result = sender.close()
        handle.finished_at.value = time.time()
        result["seconds"] = handle.finished_at.value - handle.started_at.value
        handle.results.put(result)
    except BaseException as exc:  # reported to the orchestrator, which raises it
        handle.ready.set()
        handle.results.put({"error": repr(exc)})


# --------------------------------------------------------------------------------------------
# observing the worker and Kafka


def scrape(url: str) -> dict[str, float]:
    """The worker's /metrics: each sample's value by name, summed over labels (not _created)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):
                totals[s.name] = totals.get(s.name, 0.0) + s.value
    return totals


class CommittedLag:
    """Messages of the topic the worker's group has not committed, read from Kafka itself."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        from kafka import KafkaConsumer, TopicPartition

        # Never subscribes, so it never joins the group: it only reads the committed offsets.
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=group,
            enable_auto_commit=False,
            client_id="uptake-soak-lag",
        )
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]

    def messages(self) -> int:
        end = self.consumer.end_offsets(self.partitions)
        return sum(max(0, end[tp] - (self.consumer.committed(tp) or 0)) for tp in self.partitions)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Sample:
    t: float  # seconds since the sustained phase started
    phase: str
    produced: int  # events Kafka acknowledged, all producers
    consumed: int  # uptake_events_consumed_total
    produced_per_s: float
    consumed_per_s: float
    lag_events: int  # committed lag x events per message
    rss_mb: float
    cpu_cores: float  # worker CPU seconds per second since the previous sample
    machine_busy: float | None  # share of all cores busy since the previous sample (Linux)

    def line(self, rate: float) -> str:
        lag_s = self.lag_events / rate if rate else math.nan
        return (
            f"t={self.t:6.0f}s {self.phase:9} produced {self.produced:>11,} "
            f"({self.produced_per_s:>8,.0f}/s) consumed {self.consumed:>11,} "
            f"({self.consumed_per_s:>8,.0f}/s) lag {self.lag_events:>9,} ev ({lag_s:5.1f} s) "
            f"rss {self.rss_mb:6.0f} MB worker cpu {self.cpu_cores:4.2f}"
            + (f" machine {self.machine_busy:4.0%}" if self.machine_busy is not None else "")
        )


def machine_cpu() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _say(text: str) -> None:
    print(f"soak: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Run:
    """One soak: the names it uses, its worker and what it observed."""

    config: SoakConfig
    settings: Settings
    folder: Path
    warehouse_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    samples: list[Sample] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    worker_peak_rss_mb: float = 0.0  # VmHWM read before the worker is stopped

    @property
    def topic(self) -> str:
        return f"uptake.soak.{self.run_id}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.settings.kafka.bootstrap,
            UPTAKE_HOME=str(self.folder),
            UPTAKE_CLICKHOUSE_URL=self.warehouse_url,
            UPTAKE_EVENTS_TOPIC=self.topic,
            UPTAKE_DLQ_TOPIC=f"{self.topic}.dlq",
            UPTAKE_CONSUMER_GROUP=f"uptake-soak-{self.run_id}",
            UPTAKE_METRICS_PORT=str(self.metrics_port),
            PYTHONUNBUFFERED="1",
        )
        return env

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_file(self) -> Path:
        return self.folder / f"worker-{self.run_id}.log"

    def uptake(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"uptake {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return list(
            json.loads(self.uptake("query", "--format", "json", "--max-rows", "100000000", sql))
        )

    def worker_log(self, chars: int = 3000) -> str:
        return self.log_file.read_text()[-chars:] if self.log_file.exists() else ""

    def check_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is not None:
            raise RuntimeError(
                f"the worker exited {self.worker.returncode} during the soak:\n{self.worker_log()}"
            )

    def start_worker(self) -> None:
        """`uptake worker` as a subprocess; returns once its /metrics answers."""
        self.metrics_port = _free_port()
        with self.log_file.open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while True:
            self.check_worker()
            try:
                scrape(self.metrics_url)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the worker's /metrics never answered:\n{self.worker_log()}"
                    ) from exc
                time.sleep(0.2)

    def stop_worker(self, timeout: float = 120) -> int:
        """SIGTERM; the worker's exit code (it is killed if it does not stop in time)."""
        assert self.worker is not None
        if self.worker.poll() is None:
            self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, peak_rss_mb(self.worker.pid))
            self.worker.send_signal(signal.SIGTERM)
        try:
            return self.worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
            return -signal.SIGKILL

    def metrics(self, attempts: int = 5) -> dict[str, float]:
        """The worker's /metrics; a busy worker may reset a connection now and then."""
        for attempt in range(attempts):
            self.check_worker()
            try:
                return scrape(self.metrics_url)
            except OSError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM, MB): what its memory limit must hold,
    also between two samples; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sampler:
    """Takes the samples: producers' acknowledged events, the worker's metrics, Kafka's lag."""

    def __init__(
        self, run: Run, lag: CommittedLag, producers: Sequence[ProducerHandle], rate: float
    ) -> None:
        self.run = run
        self.lag = lag
        self.producers = producers
        self.rate = rate
        self.t0 = time.time()
        self._previous: tuple[float, int, int, float] | None = None
        self._machine = machine_cpu()

    def produced(self) -> int:
        return sum(int(p.acked.value) for p in self.producers)

    def take(self, phase: str, *, quiet: bool = False) -> Sample:
        now = time.time()
        produced = self.produced()
        figures = self.run.metrics()
        lag_events = self.lag.messages() * self.run.config.per_message
        consumed = int(figures.get("uptake_events_consumed_total", 0))
        cpu = figures.get("process_cpu_seconds_total", 0.0)
        last_t, last_produced, last_consumed, last_cpu = self._previous or (self.t0, 0, 0, cpu)
        span = max(now - last_t, 1e-9)
        sample = Sample(
            t=now - self.t0,
            phase=phase,
            produced=produced,
            consumed=consumed,
            produced_per_s=(produced - last_produced) / span,
            consumed_per_s=(consumed - last_consumed) / span,
            lag_events=lag_events,
            rss_mb=figures.get("process_resident_memory_bytes", 0.0) / 2**20,
            cpu_cores=(cpu - last_cpu) / span,
            machine_busy=None,
        )
        self._previous = (now, produced, consumed, cpu)
        machine, before = machine_cpu(), self._machine
        busy = None
        if machine and before and machine[1] > before[1]:
            busy = (machine[0] - before[0]) / (machine[1] - before[1])
        sample.machine_busy = busy
        self._machine = machine
        self.run.samples.append(sample)
        if not quiet:
            _say(sample.line(self.rate))
        return sample

    def every(
        self, phase: str, interval: float, until: Callable[[Sample], bool], timeout: float
    ) -> Sample:
        """Sample every `interval` seconds until `until(sample)` holds; raises after `timeout`."""
        deadline = time.monotonic() + timeout
        next_at = time.monotonic() + interval
        while True:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            sample = self.take(phase)
            if until(sample):
                return sample
            if time.monotonic() > deadline:
                raise TimeoutError(f"{phase}: not done after {timeout:.0f} s")


def _batch_ends(
    run: Run, done: Callable[[list[tuple[float, int]]], bool], timeout: float
) -> list[tuple[float, int]]:
    """(end of a batch, events consumed by then) for the batches ending until `done(ends)`.

    Read from the worker's `uptake_last_batch_timestamp_seconds` and
    `uptake_events_consumed_total`, polled 4 times a second (a batch takes seconds).
    """
    ends: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while not done(ends):
        figures = run.metrics()
        end = figures.get("uptake_last_batch_timestamp_seconds", 0.0)
        if end and (not ends or end > ends[-1][0]):
            ends.append((end, int(figures.get("uptake_events_consumed_total", 0))))
        if time.monotonic() > deadline:
            raise RuntimeError(f"calibration: not done after {timeout:.0f} s")
        time.sleep(0.25)
    return ends


def _throughput(ends: Sequence[tuple[float, int]]) -> float:
    """Events per second between the first and the last batch end."""
    if len(ends) < 2:
        raise RuntimeError("calibration: could not tell the worker's batches apart; pass --rate")
    return (ends[-1][1] - ends[0][1]) / (ends[-1][0] - ends[0][0])


def calibrate(run: Run, config: SoakConfig, lag: CommittedLag) -> dict[str, Any]:
    """Measure what the pipeline sustains on this machine, in two steps.

    1. alone: a backlog of whole batches (CALIBRATION_EVENTS, 2 batches at least) is produced
       first, then the worker is started and drains it; `uptake bench`'s measure: events
       between the first and the last batch end / time.
    2. shared: a producer sends a 1-batch head start, then paces at the throughput of step 1 for
       `calibration_s`. The worker cannot keep up, so it runs at its capacity while the producer
       and the broker take their share of the cores, as they will in the sustained phase; the
       throughput between the batch ends of that window is what the pipeline sustains here.
    """
    bootstrap, batch_messages = run.settings.kafka.bootstrap, run.settings.ingest.batch_max_messages
    batch_events = batch_messages * config.per_message
    batches = max(2, math.ceil(CALIBRATION_EVENTS / batch_events))  # whole batches, no wait
    backlog = batches * batch_events
    _say(
        f"calibration 1/2: producing {backlog:,} events ({batches} batches) before the worker "
        "starts"
    )
    producer = start_producer(bootstrap, run.topic, config, rate=None, events=backlog)
    producer.ready.wait(120)
    producer.go.set()
    alone_truth = producer.result(timeout=600)
    produced_per_s = alone_truth["events"] / alone_truth["seconds"]
    _say(f"calibration 1/2: produced in {alone_truth['seconds']:.1f} s ({produced_per_s:,.0f}/s)")
    run.start_worker()
    ends = _batch_ends(run, lambda e: bool(e) and e[-1][1] >= backlog, timeout=600)
    alone = _throughput(ends)
    _say(f"calibration 1/2: the worker alone: {alone:,.0f} events/s (uptake bench's measure)")

    _say(
        f"calibration 2/2: {config.calibration_s:.0f} s of production at {alone:,.0f} events/s "
        "while the worker consumes"
    )
    producer = start_producer(
        bootstrap, run.topic, config, rate=alone, events=batch_messages * config.per_message
    )
    producer.ready.wait(120)
    producer.go.set()
    started = time.time()
    consumed_before = ends[-1][1]

    def enough(ends: list[tuple[float, int]]) -> bool:
        # At least 3 batch ends (2 whole batches) even when batches take longer than the window.
        in_window = [end for end in ends if end[1] > consumed_before]
        return time.time() - started >= config.calibration_s and len(in_window) >= 3

    ends = _batch_ends(run, enough, config.calibration_s + 300)
    producer.stop.set()
    shared_truth = producer.result()
    window = [end for end in ends if end[1] > consumed_before]
    shared = _throughput(window)
    _say(
        f"calibration 2/2: the pipeline sustains {shared:,.0f} events/s on these cores "
        f"({shared / alone:.0%} of the worker alone); waiting for the backlog to drain"
    )
    _wait_lag(lag, 0, timeout=600)
    return {
        "worker_alone_events_per_s": round(alone),
        "shared_events_per_s": round(shared),
        "shared_window_s": config.calibration_s,
        "shared_batches": len(window),
        "producer_alone_events_per_s": round(produced_per_s),
        "events": alone_truth["events"] + shared_truth["events"],
        "truths": [alone_truth, shared_truth],
    }


def _wait_lag(lag: CommittedLag, messages: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while lag.messages() > messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not catch up in {timeout:.0f} s")
        time.sleep(0.5)


def run_soak(config: SoakConfig, warehouse_url: str | None = None) -> dict[str, Any]:
    """Run every phase and judge; the report as a dict (see the module docstring)."""
    settings = Settings.from_env()
    folder = (settings.home / "soak").resolve()
    if warehouse_url is None:
        shutil.rmtree(folder, ignore_errors=True)  # soak-only data, replaced at every run
        warehouse_url = f"chdb://{folder / 'warehouse'}"
    folder.mkdir(parents=True, exist_ok=True)
    run = Run(config, settings, folder, warehouse_url)
    _say(f"run {run.run_id}: topic {run.topic}, warehouse {redact_url(warehouse_url)}")
    run.uptake("migrate")
    ensure_topics(
        settings.kafka.bootstrap,
        {run.topic: settings.kafka.topic_partitions, f"{run.topic}.dlq": 1},
    )
    lag = CommittedLag(
        settings.kafka.bootstrap,
        run.env["UPTAKE_CONSUMER_GROUP"],
        run.topic,
        settings.kafka.topic_partitions,
    )
    producers: list[ProducerHandle] = []
    try:
        report = _phases(run, config, lag, producers)
    finally:
        for producer in producers:
            producer.stop.set()
            producer.go.set()
        if run.worker is not None and run.worker.poll() is None:
            run.stop_worker()
        lag.close()
        # The soak's topics hold gigabytes after a few minutes: delete them (best effort).
        ours = {run.topic, f"{run.topic}.dlq"}
        delete_topics_best_effort(
            settings.kafka.bootstrap, ours.__contains__, client_id="uptake-soak", say=_say
        )
    return report


def _phases(
    run: Run, config: SoakConfig, lag: CommittedLag, producers: list[ProducerHandle]
) -> dict[str, Any]:
    bootstrap = run.settings.kafka.bootstrap
    calibration: dict[str, Any] | None = None
    truths: list[dict[str, Any]] = []
    if config.rate is None:
        calibration = calibrate(run, config, lag)
        truths.extend(calibration.pop("truths"))
        rate = config.rate_fraction * calibration["shared_events_per_s"]
    else:
        run.start_worker()
        rate = config.rate
    burst_events = int(config.burst * rate * config.burst_s)
    lag_bound_s = config.lag_bound_s or lag_bound_for(config, run.settings)
    lag_bound = lag_bound_s * rate
    _say(
        f"sustained: {rate:,.0f} events/s for {config.duration_s:.0f} s "
        f"({config.rate_fraction:.0%} of the calibrated throughput)"
        if calibration
        else f"sustained: {rate:,.0f} events/s for {config.duration_s:.0f} s (given)"
    )
    _say(
        f"burst: {burst_events:,} events ({config.burst:g} x the rate x {config.burst_s:g} s) "
        f"after the sustained phase; lag bound {lag_bound:,.0f} events ({lag_bound_s:g} s)"
    )
    base = start_producer(bootstrap, run.topic, config, rate=rate, events=None)
    burst = start_producer(bootstrap, run.topic, config, rate=None, events=burst_events)
    producers += [base, burst]
    for producer in producers:
        producer.ready.wait(120)
    sampler = Sampler(run, lag, producers, rate)
    started = time.time()
    sampler.t0 = started
    sampler.take("start", quiet=True)
    run.samples.clear()
    base.go.set()
    sampler.every(
        "sustained",
        config.sample_every_s,
        lambda s: s.t >= config.duration_s - config.sample_every_s / 2,
        timeout=config.duration_s + 60,
    )
    sustained_end = time.time()
    sustained_produced = sampler.produced()

    if not config.keep_load:
        base.stop.set()
        truths.append(base.result())
    burst.go.set()
    sampler.every(
        "burst", 1.0, lambda s: burst.finished_at.value > 0, timeout=config.drain_timeout_s
    )
    burst_result = burst.result()
    truths.append(burst_result)
    burst_started, burst_finished = burst.started_at.value, burst.finished_at.value
    sent_in = max(burst_finished - burst_started, 1e-9)
    _say(
        f"burst: {burst_result['events']:,} events sent in {sent_in:.1f} s "
        f"({burst_result['events'] / sent_in:,.0f}/s, {burst_result['events'] / sent_in / rate:.1f}"
        " x the rate)"
    )
    # Drained: everything committed; under continued load, back within the sustained bound.
    target = lag_bound if config.keep_load else 0
    drained_at: float | None = None
    try:
        drained = sampler.every(
            "drain", 1.0, lambda s: s.lag_events <= target, config.drain_timeout_s
        )
        drained_at = started + drained.t
    except TimeoutError:
        _say(f"the burst did not drain within {config.drain_timeout_s:.0f} s")
    if config.keep_load:
        base.stop.set()
        truths.append(base.result())
    with contextlib.suppress(TimeoutError):
        sampler.every("final", 1.0, lambda s: s.lag_events == 0, config.drain_timeout_s)
    produced_total = sum(t["events"] for t in truths)
    final_metrics = run.metrics()
    worker_exit = run.stop_worker()
    _say(f"worker stopped (exit {worker_exit}); comparing the warehouse with what was sent")

    events = run.rows(
        # reported_team: the team the event named (`team` is resolved through the team catalog).
        "SELECT reported_team AS team, event_type, count() AS n, uniqExact(event_id) AS ids "
        "FROM events "
        f"WHERE _topic = '{run.topic}' GROUP BY team, event_type"
    )
    rejects = run.rows(
        "SELECT reason, event_type, count() AS n, uniqExact(_partition, _offset, _index) AS k "
        f"FROM rejected_events WHERE _topic = '{run.topic}' GROUP BY reason, event_type"
    )
    truth_events = _sum_cells(t["accepted"] for t in truths)
    truth_rejects = _sum_cells(t["rejected"] for t in truths)
    verdict = judge(
        config,
        rate=rate,
        lag_bound=lag_bound,
        samples=run.samples,
        events=events,
        rejects=rejects,
        truth_events=truth_events,
        truth_rejects=truth_rejects,
        worker_metrics=final_metrics,
        worker_exit=worker_exit,
        producer_failures=sum(t["failed"] for t in truths),
        drained=drained_at is not None,
        worker_peak_rss_mb=run.worker_peak_rss_mb,
    )
    sustained = [s for s in run.samples if s.phase == "sustained"]
    burst_samples = [s for s in run.samples if s.phase in ("burst", "drain")]
    report: dict[str, Any] = {
        "run": run.run_id,
        "topic": run.topic,
        "warehouse": redact_url(run.warehouse_url),
        "machine": {
            "cpus": os.cpu_count(),
            "machine": __import__("platform").machine(),
            "python": __import__("platform").python_version(),
        },
        "calibration": calibration,
        "rate_events_per_s": round(rate),
        "rate_fraction": config.rate_fraction if calibration else None,
        "sustained": {
            "seconds": round(sustained_end - started, 1),
            "events": sustained_produced,
            "produced_events_per_s": round(sustained_produced / (sustained_end - started)),
            "max_lag_events": max((s.lag_events for s in sustained), default=0),
            "max_lag_s": round(max((s.lag_events for s in sustained), default=0) / rate, 2),
            "lag_bound_events": round(lag_bound),
        },
        "rss_mb": verdict.pop("rss"),
        # Over the worker's whole run: the calibration backlog, the load and the burst.
        "worker_peak_rss_mb": round(run.worker_peak_rss_mb),
        "burst": {
            "events": burst_result["events"],
            "produce_s": round(burst_finished - burst_started, 1),
            "producer_events_per_s": round(
                burst_result["events"] / max(burst_finished - burst_started, 1e-9)
            ),
            "times_rate": round(
                burst_result["events"] / max(burst_finished - burst_started, 1e-9) / rate, 2
            ),
            "max_lag_events": max((s.lag_events for s in burst_samples), default=0),
            "load_during_burst": config.keep_load,
            "drained": drained_at is not None,
            "drain_s_after_burst": _round(drained_at, burst_finished),
            "drain_s_from_burst_start": _round(drained_at, burst_started),
            "peak_rss_mb": round(max((s.rss_mb for s in burst_samples), default=0.0)),
        },
        "events_produced": produced_total,
        "verdict": verdict,
        "truth": {"events": truth_events, "rejected": truth_rejects},
        "samples": [asdict(s) for s in run.samples],
        "worker_log": str(run.log_file),
    }
    return report


def lag_bound_for(config: SoakConfig, settings: Settings) -> float:
    """The sustained lag allowed, in seconds of the rate: 3 x flush interval / (1 - fraction).

    The worker takes a batch when it is full or after the flush interval, writes it, then
    commits; at utilisation u a batch therefore holds about flush / (1 - u) seconds of events
    (5 s at 80 % and the default 1 s), and the committed lag stays near that. Three times it
    leaves room for a slow insert or a rebalance, and catches a lag that grows for good.
    """
    fraction = config.rate_fraction if config.rate is None else 0.8
    return round(3 * settings.ingest.flush_interval_s / max(1 - fraction, 0.05), 1)


def _round(end: float | None, start: float) -> float | None:
    return None if end is None else round(end - start, 1)


def _sum_cells(tables: Any) -> list[list[Any]]:
    total: Counter[Cell] = Counter()
    for rows in tables:
        for a, b, n in rows:
            total[a, b] += n
    return sorted([*cell, n] for cell, n in total.items())


def _rss_figures(config: SoakConfig, sustained: Sequence[Sample]) -> dict[str, Any]:
    """RSS at the start, middle and end of the sustained phase (median of 3 samples each)."""
    if len(sustained) < 6:
        return {"samples": len(sustained), "growth_ok": False}
    middle = min(range(len(sustained)), key=lambda i: abs(sustained[i].t - config.duration_s / 2))
    start = statistics.median(s.rss_mb for s in sustained[:3])
    mid = statistics.median(s.rss_mb for s in sustained[max(0, middle - 1) : middle + 2])
    end = statistics.median(s.rss_mb for s in sustained[-3:])
    bound = max(config.rss_growth_bound * mid, config.rss_growth_floor_mb)
    return {
        "start": round(start),
        "mid": round(mid),
        "end": round(end),
        "growth_second_half": round(end - mid, 1),
        "growth_second_half_pct": round(100 * (end - mid) / mid, 1) if mid else None,
        "growth_bound": round(bound, 1),
        "growth_ok": end - mid <= bound,
    }


def judge(
    config: SoakConfig,
    *,
    rate: float,
    lag_bound: float,
    samples: Sequence[Sample],
    events: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    truth_events: Sequence[Sequence[Any]],
    truth_rejects: Sequence[Sequence[Any]],
    worker_metrics: Mapping[str, float],
    worker_exit: int,
    producer_failures: int,
    drained: bool,
    worker_peak_rss_mb: float = 0.0,
) -> dict[str, Any]:
    """Compare the warehouse with the truth and the samples with the bounds; `passed` says all.

    `events` has one row per (team, event_type) with `n` (rows) and `ids` (distinct event ids);
    `rejects` one per (reason, event_type) with `n` and `k` (distinct source coordinates).
    `lag_bound` is in events; `worker_peak_rss_mb` is judged when config.rss_peak_bound_mb is set.
    """
    expected: Counter[Cell] = Counter({(str(t), str(e)): int(n) for t, e, n in truth_events})
    stored_ids: Counter[Cell] = Counter()
    duplicates = 0
    for row in events:
        stored_ids[str(row["team"]), str(row["event_type"])] += int(row["ids"])
        duplicates += int(row["n"]) - int(row["ids"])
    lost = expected - stored_ids
    extra = stored_ids - expected
    accepted_total = sum(expected.values())
    # Rows the sink wrote: more than the events sent is a double write even if a merge folded it.
    inserted = int(worker_metrics.get("uptake_clickhouse_inserted_rows_total", 0))
    rejected_expected = {(str(r), str(e)): int(n) for r, e, n in truth_rejects}
    rejected_stored = {(str(r["reason"]), str(r["event_type"])): int(r["n"]) for r in rejects}
    rejected_distinct = sum(int(r["k"]) for r in rejects)
    rejected_total = sum(rejected_expected.values())
    sustained = [s for s in samples if s.phase == "sustained"]
    max_lag = max((s.lag_events for s in sustained), default=0)
    produced_rate = sustained[-1].produced / sustained[-1].t if sustained else 0.0
    rss = _rss_figures(config, sustained)
    double_counted = (
        sum(extra.values()) + duplicates + max(0, inserted - accepted_total - rejected_total)
    )
    failures = []
    if lost:
        failures.append(f"lost {sum(lost.values())} events: {dict(lost)}")
    if double_counted:
        failures.append(
            f"double counted: {dict(extra)} extra, {duplicates} ids twice, "
            f"{inserted} rows inserted for {accepted_total + rejected_total} sent"
        )
    if rejected_stored != rejected_expected or rejected_distinct != rejected_total:
        failures.append(
            f"rejects {rejected_stored} (distinct {rejected_distinct}), sent {rejected_expected}"
        )
    if worker_exit != 0:
        failures.append(f"the worker exited {worker_exit}")
    if producer_failures:
        failures.append(f"{producer_failures} messages were not acknowledged by Kafka")
    if produced_rate < 0.95 * rate:
        failures.append(f"the producer reached {produced_rate:,.0f} of {rate:,.0f} events/s")
    if max_lag > lag_bound:
        failures.append(f"sustained lag reached {max_lag:,} events (bound {lag_bound:,.0f})")
    if not rss["growth_ok"]:
        failures.append(f"worker RSS grew beyond the bound over the second half: {rss}")
    if not drained:
        failures.append(f"the burst did not drain within {config.drain_timeout_s:.0f} s")
    if config.rss_peak_bound_mb and worker_peak_rss_mb > config.rss_peak_bound_mb:
        failures.append(
            f"worker peak RSS {worker_peak_rss_mb:,.0f} MB exceeded the bound of "
            f"{config.rss_peak_bound_mb:,.0f} MB"
        )
    return {
        "passed": not failures,
        "failures": failures,
        "lost": sum(lost.values()),
        "double_counted": double_counted,
        "duplicate_event_ids": duplicates,
        "events_stored": sum(stored_ids.values()),
        "events_sent": accepted_total,
        "rejected_stored": sum(rejected_stored.values()),
        "rejected_sent": rejected_total,
        "rows_inserted_by_worker": inserted,
        "worker_exit": worker_exit,
        "rss": rss,
    }


def main(config: SoakConfig, warehouse_url: str | None = None) -> int:
    report = run_soak(config, warehouse_url)
    verdict = report["verdict"]
    rss = report["rss_mb"]
    burst = report["burst"]
    _say(
        f"verdict: {'PASSED' if verdict['passed'] else 'FAILED'}: lost {verdict['lost']}, "
        f"double counted {verdict['double_counted']}, max sustained lag "
        f"{report['sustained']['max_lag_events']:,} events "
        f"({report['sustained']['max_lag_s']} s), RSS {rss.get('start')} / {rss.get('mid')} / "
        f"{rss.get('end')} MB (second half {rss.get('growth_second_half')} MB), peak "
        f"{report['worker_peak_rss_mb']} MB, burst of "
        f"{burst['events']:,} events drained {burst['drain_s_after_burst']} s after it ended"
    )
    for failure in verdict["failures"]:
        _say(f"  failed: {failure}")
    print(json.dumps(report), flush=True)
    return 0 if verdict["passed"] else 1
