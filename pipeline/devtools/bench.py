"""`uptake bench`: pipeline throughput against a raw consume-and-insert baseline, same run.

Message shapes: 1, 10 and 100 events per Kafka message by default (`SHAPES`), each measured
in turn with its own topic and consumer group; `--per-message` measures one. For each shape, all
against the same broker and one fresh database of the run's own, in the bench's embedded
warehouse ($UPTAKE_HOME/bench) or in the one `--warehouse` names:
1. produce N api_call events (JSON-array messages of `per_message` events) to the shape's fresh
   topic;
2. pipeline: the real faust worker (decode, validate, sink) consumes them; throughput is
   events / (end of the last batch - start of the first batch);
3. baselines: an aiokafka consumer reads the same messages and inserts them raw (one String row
   per message: "messages raw"; one per event: "events raw") into the same warehouse, batch by
   batch; same clock.
Then freshness, with the last shape's worker still running: a separate process sends events at
each fixed rate (`--freshness-rate`, default 10,000 then 50,000 events/s) for a few seconds; p95
of (end of the insert that wrote an event - its occurred_at) is produce-to-queryable.
It prints one JSON line: the figures of each shape under "shapes", the freshness of each rate
under "freshness", and at the top level those of the 100-per-message shape (or of the one shape
measured) as before. Ratios, not absolute numbers, travel between machines.

Runs repeat: every run has its own id, in its event ids, topics, consumer group and warehouse
database, and deletes all of them when it ends, so a run starts from the state the first one
did and the broker and warehouse do not grow with the number of runs (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from dataclasses import dataclass
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


SHAPES = ((1, 50_000), (10, 100_000), (100, 200_000))
"""(events per message, events) measured by default: ~2-3 minutes on a 2-vCPU machine."""
FRESHNESS_RATES = (10_000, 50_000)
"""events/s of the freshness phases (issue #15: p95 <= 1 s at 10,000, measured at 50,000)."""
HEADLINE_PER_MESSAGE = 100  # the top-level keys are this shape's, as before shapes existed


@dataclass
class BenchConfig:
    shapes: tuple[tuple[int, int], ...] = SHAPES
    freshness_rates: tuple[int, ...] = FRESHNESS_RATES
    freshness_seconds: float = 6.0
    teams: int = 20

    @classmethod
    def of(
        cls,
        *,
        events: int | None = None,
        per_message: int | None = None,
        freshness_rates: tuple[int, ...] = FRESHNESS_RATES,
    ) -> BenchConfig:
        """One shape when `per_message` is given (of `events`, default 200,000), else every
        shape of `SHAPES`, each of `events` when given."""
        if per_message is not None:
            shapes: tuple[tuple[int, int], ...] = ((per_message, events or 200_000),)
        else:
            shapes = tuple((n, events or default) for n, default in SHAPES)
        return cls(shapes=shapes, freshness_rates=freshness_rates)


@dataclass
class Figures:
    """One shape's figures."""

    per_message: int
    events: int = 0
    pipeline_seconds: float = 0.0
    baseline_seconds: float = 0.0
    split_baseline_seconds: float = 0.0
    peak_rss_mb: float = 0.0

    def as_json(self) -> dict[str, Any]:
        pipeline_rate = self.events / self.pipeline_seconds if self.pipeline_seconds else 0.0
        baseline_rate = self.events / self.baseline_seconds if self.baseline_seconds else 0.0
        split_rate = (
            self.events / self.split_baseline_seconds if self.split_baseline_seconds else 0.0
        )
        return {
            "events": self.events,
            "per_message": self.per_message,
            "pipeline_events_per_s": round(pipeline_rate),
            "baseline_events_per_s": round(baseline_rate),
            "ratio": round(pipeline_rate / baseline_rate, 3) if baseline_rate else None,
            "baseline_events_raw_per_s": round(split_rate),
            "ratio_events_raw": round(pipeline_rate / split_rate, 3) if split_rate else None,
            "peak_rss_mb": self.peak_rss_mb,
        }


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 3) if ordered else None


def result_json(
    shapes: list[Figures], freshness: dict[int, list[float]], warehouse_kind: str
) -> dict[str, Any]:
    """The bench's JSON line: every shape, every freshness rate, and at the top level the
    headline shape (100 per message, or the only one) with the first rate's freshness."""
    headline = next((f for f in shapes if f.per_message == HEADLINE_PER_MESSAGE), shapes[-1])
    rates = [
        {
            "rate_events_per_s": rate,
            "events": len(delays),
            "p50_freshness_s": percentile(delays, 0.50),
            "p95_freshness_s": percentile(delays, 0.95),
        }
        for rate, delays in freshness.items()
    ]
    first = rates[0] if rates else {}
    return {
        **headline.as_json(),
        "p50_freshness_s": first.get("p50_freshness_s"),
        "p95_freshness_s": first.get("p95_freshness_s"),
        "freshness_rate_events_per_s": first.get("rate_events_per_s"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "shapes": [f.as_json() for f in shapes],
        "freshness": rates,
        "warehouse": warehouse_kind,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def api_call_messages(
    count: int,
    per_message: int,
    teams: int,
    seed: int = 1,
    first: int = 0,
    source: str = "uptake-bench",
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
                "source": source,
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
        migrate(warehouse, progress=lambda line: None)
        warehouse.command(RAW_TABLE_DDL)
        shapes: list[Figures] = []
        freshness: dict[int, list[float]] = {}
        for i, (per_message, events) in enumerate(config.shapes):
            last = i == len(config.shapes) - 1
            shapes.append(
                _measure_shape(
                    run,
                    config,
                    _shape_settings(settings, per_message),
                    warehouse,
                    per_message,
                    events,
                    freshness if last else None,
                    first_id=i * 10**12,
                )
            )
        return result_json(shapes, freshness, warehouse.kind)
    finally:
        _remove_run(run, warehouse, settings.kafka.bootstrap)


def _shape_settings(settings: Settings, per_message: int) -> Settings:
    """The run's settings with the shape's own topic and consumer group (both the run's)."""
    return dataclasses.replace(
        settings,
        kafka=dataclasses.replace(
            settings.kafka,
            events_topic=f"{settings.kafka.events_topic}.m{per_message}",
            consumer_group=f"{settings.kafka.consumer_group}-m{per_message}",
        ),
    )


def _measure_shape(
    run: BenchRun,
    config: BenchConfig,
    settings: Settings,
    warehouse: Warehouse,
    per_message: int,
    events: int,
    freshness: dict[int, list[float]] | None,
    *,
    first_id: int,
) -> Figures:
    """Produce, run the worker (and the freshness phases when `freshness` is given), then the
    two raw baselines over the same messages."""
    topic = settings.kafka.events_topic
    ensure_topics(settings.kafka.bootstrap, {topic: settings.kafka.topic_partitions})
    figures = Figures(per_message=per_message, events=events)

    _say(
        f"run {run.run_id}: producing {events:,} api_call events to {topic}, {per_message}/message"
    )
    messages = api_call_messages(events, per_message, config.teams, run.id_seed, first=first_id)
    producer = make_producer(settings.kafka.bootstrap, compression=settings.kafka.compression)
    started = time.perf_counter()
    for i, value in enumerate(messages):
        producer.send(topic, key=f"team-{i % config.teams:02d}".encode(), value=value)
    producer.flush()
    producer.close()
    _say(f"produced in {time.perf_counter() - started:.1f}s")

    figures.pipeline_seconds = _run_pipeline(
        run, settings, warehouse, config, events, freshness, first_id
    )
    figures.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    # The shape's own topic in the run's own database: only this shape's events count.
    stored = warehouse.rows(
        "SELECT count() FROM events WHERE _topic = {topic:String}", {"topic": topic}
    )[0][0]
    fresh = sum(len(d) for d in (freshness or {}).values())
    if stored != events + fresh:
        raise RuntimeError(
            f"pipeline stored {stored:,} events, expected {events + fresh:,} ({events:,} of the "
            f"throughput phase + {fresh:,} of the freshness phases)"
        )
    _say(f"pipeline, {per_message}/message: {events / figures.pipeline_seconds:,.0f} events/s")

    figures.baseline_seconds = asyncio.run(
        _run_baseline(settings, warehouse, messages, split=False)
    )
    _say(f"baseline (messages raw): {events / figures.baseline_seconds:,.0f} events/s")
    figures.split_baseline_seconds = asyncio.run(
        _run_baseline(settings, warehouse, messages, split=True)
    )
    _say(f"baseline (events raw): {events / figures.split_baseline_seconds:,.0f} events/s")
    return figures


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
    run: BenchRun,
    settings: Settings,
    warehouse: Warehouse,
    config: BenchConfig,
    events: int,
    freshness: dict[int, list[float]] | None,
    first_id: int,
) -> float:
    """Run the real worker in this process until the throughput phase (and the freshness
    phases, when `freshness` is given) ends; returns the throughput phase's seconds."""
    progress = Progress()
    window: dict[str, float] = {}
    live = threading.Event()
    rates = {f"uptake-bench-fresh-{rate}": rate for rate in config.freshness_rates}
    wanted = int(sum(config.freshness_rates) * config.freshness_seconds)

    def on_batch(batch: DecodedBatch, started: float, ended: float) -> None:
        if not live.is_set():
            window.setdefault("first", started)
            window["last"] = ended
            if progress.consumed >= events:
                live.set()
                if freshness is None:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                _say("throughput phase done; measuring freshness at fixed rates")
                threading.Thread(
                    target=_freshness_phase,
                    args=(run, settings, config, first_id + events),
                    daemon=True,
                ).start()
        elif freshness is not None:
            for e in batch.events:
                if (rate := rates.get(e.source)) is not None:
                    freshness[rate].append(ended - e.occurred_at.timestamp())
            if sum(len(d) for d in freshness.values()) >= wanted:
                os.kill(os.getpid(), signal.SIGTERM)

    if freshness is not None:
        for rate in config.freshness_rates:  # in the order of the phases
            freshness.setdefault(rate, [])
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


def _freshness_phase(run: BenchRun, settings: Settings, config: BenchConfig, first: int) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=_paced_producer,
        args=(settings.kafka.bootstrap, settings.kafka.events_topic, config, run.id_seed, first),
        daemon=True,
    )
    process.start()


def _paced_producer(
    bootstrap: str, topic: str, config: BenchConfig, id_seed: int, first: int
) -> None:
    """Send each of `freshness_rates` events/s in turn, `freshness_seconds` each, in messages
    of 100 stamped at send time, their source naming the rate.

    Their ids follow the throughput phase's: first + 1 ..."""
    # UPTAKE_KAFKA_COMPRESSION, inherited with the environment of the parent.
    producer = make_producer(
        bootstrap, linger_ms=5, compression=Settings.from_env().kafka.compression
    )
    per_message = 100
    for rate in config.freshness_rates:
        interval = per_message / rate
        total = int(rate * config.freshness_seconds)
        next_send = time.monotonic()
        for n in range(0, total, per_message):
            value = api_call_messages(
                per_message,
                per_message,
                config.teams,
                seed=id_seed,
                first=first + n,
                source=f"uptake-bench-fresh-{rate}",
            )[0]
            producer.send(topic, key=f"team-{n % config.teams:02d}".encode(), value=value)
            next_send += interval
            pause = next_send - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        first += total
    producer.flush()
    producer.close()


async def _run_baseline(
    settings: Settings,
    warehouse: Warehouse,
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
