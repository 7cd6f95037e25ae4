"""`uptake bench`: pipeline throughput against a raw consume-and-insert baseline, same run.

Phases, all against the same broker and one fresh database of the run's own, in the bench's
embedded warehouse ($UPTAKE_HOME/bench) or in the one `--warehouse` names:
1. produce N api_call events (JSON-array messages of `per_message` events) to a fresh topic;
2. pipeline: the real faust worker (decode, validate, sink) consumes them; throughput is
   events / (end of the last batch - start of the first batch);
3. baseline: an aiokafka consumer reads the same messages and inserts them raw (one String row
   per message) into the same warehouse, batch by batch; same clock;
4. freshness: a separate process sends events at a fixed rate for a few seconds while the worker
   runs; p95 of (end of the insert that wrote an event - its occurred_at) is produce-to-queryable.
It prints one JSON line with the figures. Ratios, not absolute numbers, travel between machines.

Runs repeat: every run has its own id, in its event ids, topics, consumer group and warehouse
database, and deletes all of them when it ends, so a run starts from the state the first one
did and the broker and warehouse do not grow with the number of runs (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
import msgspec

from pipeline.config.settings import Secret, Settings
from pipeline.contract.decode import DecodedBatch
from pipeline.ingest.app import Progress, build_app
from pipeline.ingest.run import load_catalogs, tune_gc
from pipeline.kafka.producer import make_producer
from pipeline.kafka.topics import delete_topics_best_effort, ensure_topics, partition_count
from pipeline.sink.clickhouse import ClickHouseSink
from pipeline.warehouse.connection import (
    DEFAULT_DATABASE,
    Warehouse,
    connect,
    quote_identifier,
    with_database,
)
from pipeline.warehouse.migrations import migrate

RAW_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_raw
(
    _partition UInt32,
    _offset UInt64,
    _index UInt32,
    value String
)
ENGINE = MergeTree
ORDER BY (_partition, _offset)
"""


BENCH_DATABASE_PREFIX = "bench_"


@dataclass(frozen=True)
class BenchRun:
    """One run's names. Everything the run creates carries its id, so all of it can go."""

    run_id: str
    id_seed: int  # the high 64 bits of the run's event ids

    @classmethod
    def new(cls) -> BenchRun:
        drawn = uuid.uuid4()
        return cls(drawn.hex[:12], drawn.int >> 64)

    @classmethod
    def of_database(cls, name: str) -> BenchRun | None:
        """The run a warehouse database belongs to, or None for another database."""
        if not name.startswith(BENCH_DATABASE_PREFIX):
            return None
        return cls(name.removeprefix(BENCH_DATABASE_PREFIX), 0)

    @property
    def topic(self) -> str:
        return f"uptake.bench.{self.run_id}"

    @property
    def consumer_group(self) -> str:
        return f"uptake-bench-{self.run_id}"

    @property
    def database(self) -> str:
        return f"{BENCH_DATABASE_PREFIX}{self.run_id}"

    def owns_topic(self, name: str) -> bool:
        # The events topic and the lifecycle's `<events topic>.activity`/`.milestones`, the
        # changelog `<group>-lifecycle-changelog` and faust's `<group>-__assignor-__leader`.
        return name == self.topic or name.startswith((f"{self.topic}.", f"{self.consumer_group}-"))


@dataclass
class BenchConfig:
    events: int = 200_000
    per_message: int = 100
    freshness_rate: int = 10_000
    freshness_seconds: float = 8.0
    teams: int = 20


@dataclass
class Figures:
    events: int = 0
    pipeline_seconds: float = 0.0
    baseline_seconds: float = 0.0
    split_baseline_seconds: float = 0.0
    freshness: list[float] = field(default_factory=list)

    def as_json(self, config: BenchConfig, warehouse_kind: str) -> dict[str, Any]:
        pipeline_rate = self.events / self.pipeline_seconds if self.pipeline_seconds else 0.0
        baseline_rate = self.events / self.baseline_seconds if self.baseline_seconds else 0.0
        split_rate = (
            self.events / self.split_baseline_seconds if self.split_baseline_seconds else 0.0
        )
        delays = sorted(self.freshness)
        p95 = delays[int(0.95 * (len(delays) - 1))] if delays else float("nan")
        p50 = delays[int(0.50 * (len(delays) - 1))] if delays else float("nan")
        return {
            "events": self.events,
            "per_message": config.per_message,
            "pipeline_events_per_s": round(pipeline_rate),
            "baseline_events_per_s": round(baseline_rate),
            "ratio": round(pipeline_rate / baseline_rate, 3) if baseline_rate else None,
            "baseline_events_raw_per_s": round(split_rate),
            "ratio_events_raw": round(pipeline_rate / split_rate, 3) if split_rate else None,
            "p50_freshness_s": round(p50, 3),
            "p95_freshness_s": round(p95, 3),
            "freshness_rate_events_per_s": config.freshness_rate,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "warehouse": warehouse_kind,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        }


def api_call_messages(
    count: int, per_message: int, teams: int, seed: int = 1, first: int = 0
) -> list[bytes]:
    """`count` valid api_call events as JSON-array messages; occurred_at is now.

    Event ids are UUIDs of `seed` (high 64 bits) and first + 1 ... first + count (low bits):
    the same arguments give the same ids, which the sink takes for re-sends.
    """
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    messages = []
    for start in range(0, count, per_message):
        batch = [
            {
                "event_id": str(uuid.UUID(int=(seed << 64) + first + i + 1, version=4)),
                "event_type": "api_call",
                "schema_version": 1,
                "occurred_at": now,
                "source": "uptake-bench",
                "team": f"team-{i % teams:02d}",
                "service": f"svc-{i % (teams * 3):03d}",
                "user": f"user-{i % 1000}",
                "capability": "api-gateway",
                "data": {
                    "api": "orders",
                    "operation": "GET /v1/orders/{id}",
                    "status_code": 500 if i % 50 == 0 else 200,
                    "latency_ms": float(5 + i % 200),
                },
            }
            for i in range(start, min(start + per_message, count))
        ]
        messages.append(msgspec.json.encode(batch))
    return messages


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def run_bench(config: BenchConfig, warehouse_url: str | None = None) -> dict[str, Any]:
    """Run all phases in a database of this run, dropped at the end with the run's topics.

    The warehouse defaults to a bench-only folder ($UPTAKE_HOME/bench), never the user's data;
    there the run first removes what earlier runs left behind (a run killed before its clean-up,
    or the `uptake` database of bench versions that wrote there). With `warehouse_url`, only
    this run's database is created and dropped.
    """
    run = BenchRun.new()
    home = Settings.from_env().home
    base_url = warehouse_url or f"chdb://{(home / 'bench').resolve()}"
    settings = Settings.from_env(
        events_topic=run.topic,
        consumer_group=run.consumer_group,
        flush_interval_s=0.5,
        clickhouse_url=Secret(with_database(base_url, run.database)),
    )
    warehouse = connect(
        settings.warehouse.url,
        create_database=True,
        engine_options=settings.warehouse.engine_options(),  # the worker's bounds
    )
    try:
        if warehouse_url is None:
            _remove_leftovers(warehouse, settings.kafka.bootstrap)
        return _measure(run, config, settings, warehouse)
    finally:
        _remove_run(run, warehouse, settings.kafka.bootstrap)


def _measure(
    run: BenchRun, config: BenchConfig, settings: Settings, warehouse: Warehouse
) -> dict[str, Any]:
    topic = run.topic
    ensure_topics(settings.kafka.bootstrap, {topic: settings.kafka.topic_partitions})
    migrate(warehouse, progress=lambda line: None)
    warehouse.command(RAW_TABLE_DDL)
    figures = Figures(events=config.events)

    _say(f"run {run.run_id}: producing {config.events:,} api_call events to {topic}")
    messages = api_call_messages(config.events, config.per_message, config.teams, run.id_seed)
    producer = make_producer(settings.kafka.bootstrap, compression=settings.kafka.compression)
    started = time.perf_counter()
    for i, value in enumerate(messages):
        producer.send(topic, key=f"team-{i % config.teams:02d}".encode(), value=value)
    producer.flush()
    producer.close()
    _say(f"produced in {time.perf_counter() - started:.1f}s")

    figures.pipeline_seconds = _run_pipeline(run, settings, warehouse, config, figures)
    # The run's own topic in the run's own database: only this run's events count.
    stored = warehouse.rows(
        "SELECT count() FROM events WHERE _topic = {topic:String}", {"topic": topic}
    )[0][0]
    expected = config.events + len(figures.freshness)
    if stored != expected:
        raise RuntimeError(
            f"pipeline stored {stored:,} events, expected {expected:,} ({config.events:,} of the "
            f"throughput phase + {len(figures.freshness):,} of the freshness phase)"
        )
    _say(f"pipeline: {config.events / figures.pipeline_seconds:,.0f} events/s")

    figures.baseline_seconds = asyncio.run(
        _run_baseline(settings, warehouse, config, messages, split=False)
    )
    _say(f"baseline (messages raw): {config.events / figures.baseline_seconds:,.0f} events/s")
    figures.split_baseline_seconds = asyncio.run(
        _run_baseline(settings, warehouse, config, messages, split=True)
    )
    _say(f"baseline (events raw): {config.events / figures.split_baseline_seconds:,.0f} events/s")
    return figures.as_json(config, warehouse.kind)


def _remove_run(run: BenchRun, warehouse: Warehouse, bootstrap: str) -> None:
    """Drop the run's database and delete its topics (its group's offsets go with them)."""
    try:
        warehouse.command(f"DROP DATABASE IF EXISTS {quote_identifier(run.database)} SYNC")
    finally:
        warehouse.close()
    _delete_topics(bootstrap, [run])


def _remove_leftovers(warehouse: Warehouse, bootstrap: str) -> None:
    """Remove earlier runs' databases and topics from the bench's own folder and the broker.

    Only on the bench-only folder, which this process holds locked: no other run is using it.
    """
    current = warehouse.database
    names = [row[0] for row in warehouse.rows("SELECT name FROM system.databases")]
    runs = [r for r in map(BenchRun.of_database, names) if r is not None and r.database != current]
    stale = [r.database for r in runs] + [n for n in names if n == DEFAULT_DATABASE]
    for name in stale:
        warehouse.command(f"DROP DATABASE IF EXISTS {quote_identifier(name)} SYNC")
    if stale:
        _say(f"removed the databases of earlier runs: {', '.join(stale)}")
    _delete_topics(bootstrap, runs)


def _delete_topics(bootstrap: str, runs: list[BenchRun]) -> None:
    """Delete the runs' topics (best effort: a leftover topic is reported, not fatal)."""
    if runs:

        def owned(topic: str) -> bool:
            return any(r.owns_topic(topic) for r in runs)

        delete_topics_best_effort(bootstrap, owned, client_id="uptake-bench", say=_say)


def _run_pipeline(
    run: BenchRun, settings: Settings, warehouse: Warehouse, config: BenchConfig, figures: Figures
) -> float:
    """Run the real worker in this process until the throughput and freshness phases end."""
    progress = Progress()
    window: dict[str, float] = {}
    live = threading.Event()

    def on_batch(batch: DecodedBatch, started: float, ended: float) -> None:
        if not live.is_set():
            window.setdefault("first", started)
            window["last"] = ended
            if progress.consumed >= config.events:
                live.set()
                _say("throughput phase done; measuring freshness at a fixed rate")
                threading.Thread(
                    target=_freshness_phase, args=(run, settings, config), daemon=True
                ).start()
        else:
            figures.freshness.extend(ended - e.occurred_at.timestamp() for e in batch.events)
            if len(figures.freshness) >= int(config.freshness_rate * config.freshness_seconds):
                os.kill(os.getpid(), signal.SIGTERM)

    # As `uptake worker` runs it: catalogs resolve teams, the sink skips re-sent event ids.
    catalogs = load_catalogs(settings, warehouse)
    sink = ClickHouseSink(warehouse, recent_ids=settings.ingest.dedup_window)
    app = build_app(settings, sink, progress=progress, on_batch=on_batch, catalogs=catalogs)
    worker = faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    tune_gc()
    with contextlib.suppress(SystemExit):  # the worker exits through SystemExit
        worker.execute_from_commandline()
    asyncio.set_event_loop(asyncio.new_event_loop())
    if "first" not in window:
        raise RuntimeError("the worker consumed nothing")
    return window["last"] - window["first"]


def _freshness_phase(run: BenchRun, settings: Settings, config: BenchConfig) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=_paced_producer,
        args=(settings.kafka.bootstrap, settings.kafka.events_topic, config, run.id_seed),
        daemon=True,
    )
    process.start()


def _paced_producer(bootstrap: str, topic: str, config: BenchConfig, id_seed: int) -> None:
    """Send `freshness_rate` events/s, in messages of 100 stamped at send time.

    Their ids follow the throughput phase's: first + 1 ... with first >= config.events."""
    # UPTAKE_KAFKA_COMPRESSION, inherited with the environment of the parent.
    producer = make_producer(
        bootstrap, linger_ms=5, compression=Settings.from_env().kafka.compression
    )
    per_message = 100
    interval = per_message / config.freshness_rate
    total = int(config.freshness_rate * config.freshness_seconds)
    next_send = time.monotonic()
    for n in range(0, total, per_message):
        value = api_call_messages(
            per_message, per_message, config.teams, seed=id_seed, first=config.events + n
        )[0]
        producer.send(topic, key=f"team-{n % config.teams:02d}".encode(), value=value)
        next_send += interval
        pause = next_send - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    producer.flush()
    producer.close()


async def _run_baseline(
    settings: Settings,
    warehouse: Warehouse,
    config: BenchConfig,
    messages: list[bytes],
    *,
    split: bool,
) -> float:
    """Consume the throughput phase's messages with aiokafka and insert them raw.

    split=False inserts each message as one row (the baseline the issue names); split=True
    splits each message into its events without validating them (msgspec Raw) and inserts one
    row per event — the least work that stores the same rows the pipeline stores.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        count = partition_count(settings.kafka.bootstrap, settings.kafka.events_topic)
        partitions = [TopicPartition(settings.kafka.events_topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        wanted, seen = len(messages), 0
        first: float | None = None
        while seen < wanted:
            fetched = await consumer.getmany(
                timeout_ms=500, max_records=settings.ingest.batch_max_messages
            )
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                continue
            first = first or time.perf_counter()
            records = records[: wanted - seen]
            await asyncio.to_thread(_insert_raw, warehouse, records, split)
            seen += len(records)
        assert first is not None
        return time.perf_counter() - first
    finally:
        await consumer.stop()


_SPLIT = msgspec.json.Decoder(list[msgspec.Raw])


def _insert_raw(warehouse: Warehouse, records: list[Any], split: bool) -> None:
    partitions: list[int] = []
    offsets: list[int] = []
    indexes: list[int] = []
    values: list[bytes] = []
    for record in records:
        parts = [bytes(raw) for raw in _SPLIT.decode(record.value)] if split else [record.value]
        partitions.extend([record.partition] * len(parts))
        offsets.extend([record.offset] * len(parts))
        indexes.extend(range(len(parts)))
        values.extend(parts)
    warehouse.insert_columns(
        "bench_raw",
        [partitions, offsets, indexes, values],
        ("_partition", "_offset", "_index", "value"),
    )


def main(config: BenchConfig, warehouse_url: str | None = None) -> int:
    result = run_bench(config, warehouse_url)
    print(json.dumps(result), flush=True)
    return 0
