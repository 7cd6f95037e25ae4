"""`uptake writer`: the one process that writes to the warehouse when UPTAKE_WRITER=kafka.

Reads the writer topic in its own group (`<UPTAKE_CONSUMER_GROUP>-writer`), merges each poll
into one batch, resolves teams with the worker's catalogs, writes with `ClickHouseSink` and
commits only after ClickHouse acknowledged (a crash replays; the watermarks skip what is stored).
One writer per warehouse. A failing insert is retried; on SIGTERM while it still fails the
writer exits 75 without committing. Serves /metrics, /healthz, /readyz and the adoption gauges.
Why it is exact: docs/guarantees.md, "Scale-out"; docs/design.md, "Scale-out with one writer".
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kafka import KafkaConsumer

from pipeline.config.safety import refuse_demo_secrets
from pipeline.config.settings import Settings, redact_url
from pipeline.ingest.catalogs import WorkerCatalogs
from pipeline.ingest.health import Health
from pipeline.ingest.remote import (
    TOPIC_MAX_MESSAGE_BYTES,
    decode_batch,
    ensure_writer_topic,
    merge_batches,
)
from pipeline.ingest.run import (
    announce,
    build_sink,
    load_catalogs,
    log_to_stderr,
    open_warehouse,
    serve_metrics,
)
from pipeline.ingest.seams import NONE, Seams
from pipeline.kafka.security import client_kwargs
from pipeline.kafka.topics import KafkaUnavailable, ensure_topics, unreachable_message
from pipeline.lifecycle.agent import refuse_unsupported_mode
from pipeline.observability import logs, metrics
from pipeline.observability.adoption import start_adoption_gauges
from pipeline.observability.config import ObservabilitySettings
from pipeline.sink.clickhouse import REJECTED, ClickHouseSink, SinkStopped

log = logging.getLogger("uptake.writer")

EXIT_SINK_FAILED = 75  # as the worker: the batch was not written and was not committed
MAX_RECORDS_PER_WRITE = 64  # writer-topic records merged into one insert per table at most


class Writer:
    """The consume → write → commit loop; `run()` blocks until `stop()` or idle."""

    def __init__(
        self,
        settings: Settings,
        sink: ClickHouseSink,
        consumer: KafkaConsumer,
        health: Health,
        catalogs: WorkerCatalogs | None = None,
        exit_when_idle_s: float | None = None,
        *,
        dedup: bool = True,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.consumer = consumer
        self.health = health
        self.catalogs = catalogs
        self.exit_when_idle_s = exit_when_idle_s
        self.dedup = dedup  # off only for the negative control: replays are written too
        self._stopping = threading.Event()
        self._writing = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uptake-sink")
        self.written: dict[str, int] = {}
        self.batches = 0

    def stop(self) -> None:
        self._stopping.set()
        self.sink.stop()

    def run(self) -> int:
        beats = threading.Thread(target=self._beat, name="uptake-heartbeat", daemon=True)
        beats.start()
        if self.catalogs is not None:
            self.catalogs.start(self._thread.submit)  # catalog rows on the sink's thread
        last_data = time.monotonic()
        try:
            while not self._stopping.is_set():
                polled = self.consumer.poll(timeout_ms=500, max_records=MAX_RECORDS_PER_WRITE)
                records = sorted(
                    (r for rs in polled.values() for r in rs), key=lambda r: (r.partition, r.offset)
                )
                if not records:
                    if (
                        self.exit_when_idle_s is not None
                        and time.monotonic() - last_data >= self.exit_when_idle_s
                    ):
                        log.info("no new batches for %.0fs: stopping", self.exit_when_idle_s)
                        break
                    continue
                last_data = time.monotonic()
                if not self._write([r.value for r in records]):
                    return EXIT_SINK_FAILED
                self.consumer.commit()
        finally:
            self._stopping.set()
            if self.catalogs is not None:
                self.catalogs.stop()
            self.consumer.close(autocommit=False)
        return 0

    def _write(self, values: list[bytes]) -> bool:
        decoded = [decode_batch(value) for value in values]
        if self.dedup:
            batch = merge_batches(decoded)
            # Offsets two workers both published (a rebalance, a worker that died before its
            # commit), dropped here rather than by the sink's watermarks: counted the same way.
            for table, before, after in (
                ("events", sum(len(b.events) for b in decoded), len(batch.events)),
                (REJECTED.table, sum(len(b.rejections) for b in decoded), len(batch.rejections)),
            ):
                if before > after:
                    metrics.REPLAYED_ROWS_SKIPPED.labels(table).inc(before - after)
        else:  # negative control: concatenate, replays included
            batch = decoded[0]
            for more in decoded[1:]:
                for name in ("events", "partitions", "offsets", "topics", "user_keys"):
                    getattr(batch, name).extend(getattr(more, name))
                batch.rejections.extend(more.rejections)
            batch.teams = []
        if self.catalogs is not None:
            self.catalogs.enrich(batch)
        self._writing = True
        try:
            written = self._thread.submit(self.sink.write, batch).result()
        except SinkStopped as exc:
            log.error(
                "stopping without committing the current batch (it will be replayed): %s", exc
            )
            return False
        finally:
            self._writing = False
        for table, rows in written.items():
            self.written[table] = self.written.get(table, 0) + rows
            if rows:
                metrics.INSERT_BATCH_ROWS.labels(table).observe(rows)
        if self.sink.dead_letters is not None:
            metrics.DEAD_LETTERS.inc(written.get(REJECTED.table, 0))
        metrics.LAST_BATCH.set(time.time())
        self.batches += 1
        return True

    def _beat(self) -> None:
        while not self._stopping.wait(1.0):
            self.health.beat(writing=self._writing)
        self.health.beat(writing=False)


def run_writer(
    settings: Settings, *, exit_when_idle_s: float | None = None, seams: Seams = NONE
) -> int:
    """Run `uptake writer` until SIGTERM/SIGINT (or idle, when asked); `seams` as run_worker."""
    log_to_stderr(settings, "writer")
    refuse_demo_secrets(settings)
    refuse_unsupported_mode(settings)
    warehouse = open_warehouse(settings)
    catalogs = load_catalogs(settings, warehouse)
    security = client_kwargs(settings.kafka)
    ensure_writer_topic(
        settings.kafka.bootstrap, settings.warehouse.writer_topic, security=security
    )
    ensure_topics(settings.kafka.bootstrap, {settings.kafka.dlq_topic: 1}, security=security)
    metrics.set_build_info(warehouse.kind)
    health = Health()
    adoption = None
    if settings.ingest.metrics_port:
        serve_metrics(settings, health)
        adoption = start_adoption_gauges(
            settings.warehouse.url, ObservabilitySettings.from_settings(settings.ingest)
        )
    sink = build_sink(settings, warehouse, seams)
    consumer = _consumer(settings)
    writer = Writer(
        settings, sink, consumer, health, catalogs, exit_when_idle_s, dedup=seams.dedup_replays
    )

    def on_signal(signum: int, frame: Any) -> None:
        writer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    announce(
        f"writer: {settings.kafka.bootstrap} topic {settings.warehouse.writer_topic} -> "
        f"{redact_url(settings.warehouse.url)}",
        settings.ingest.metrics_port,
    )
    try:
        code = writer.run()
    finally:
        if adoption is not None:
            adoption.stop()
    written = ", ".join(f"{rows:,} rows to {table}" for table, rows in writer.written.items())
    logs.announce(
        log, f"writer stopped: {writer.batches:,} batches, {written or 'nothing written'}"
    )
    return code


def _consumer(settings: Settings) -> KafkaConsumer:
    try:
        return KafkaConsumer(
            settings.warehouse.writer_topic,
            bootstrap_servers=settings.kafka.bootstrap.split(","),
            group_id=f"{settings.kafka.consumer_group}-writer",
            client_id="uptake-writer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=TOPIC_MAX_MESSAGE_BYTES,
            fetch_max_bytes=4 * TOPIC_MAX_MESSAGE_BYTES,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=30 * 60 * 1000,  # an insert may be retried for a long time
            **client_kwargs(settings.kafka),
        )
    except Exception as exc:
        raise KafkaUnavailable(unreachable_message(settings.kafka.bootstrap)) from exc
