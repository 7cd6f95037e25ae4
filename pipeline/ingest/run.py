"""Start the worker process: check the warehouse, create topics, serve /metrics, run faust."""

from __future__ import annotations

import gc
import logging

import faust

from pipeline.catalog.store import CatalogStore
from pipeline.config.safety import refuse_demo_secrets
from pipeline.config.settings import Settings, SettingsError, redact_url
from pipeline.enrich.key_fingerprint import pseudonymizer_for, require_key_fingerprint
from pipeline.ingest.app import BatchSink, Progress, build_app
from pipeline.ingest.catalogs import WorkerCatalogs
from pipeline.ingest.health import Health, serve
from pipeline.ingest.seams import NONE, Seams
from pipeline.kafka.producer import make_producer
from pipeline.kafka.security import client_kwargs
from pipeline.kafka.topics import ensure_topics
from pipeline.lifecycle.agent import refuse_unsupported_mode
from pipeline.observability import logs, metrics
from pipeline.observability.adoption import start_adoption_gauges
from pipeline.observability.config import ObservabilitySettings
from pipeline.sink.clickhouse import ClickHouseSink
from pipeline.sink.dead_letters import DeadLetterPublisher
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import require_current

log = logging.getLogger("uptake.worker")


def tune_gc() -> None:
    """Batches allocate many short-lived objects: collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def run_worker(
    settings: Settings, *, exit_when_idle_s: float | None = None, seams: Seams = NONE
) -> int:
    """Run until SIGTERM/SIGINT (or idle, when asked). Raises for a person-facing setup error.

    `seams` wraps the process's parts (fault injection); the default leaves them as built."""
    log_to_stderr(settings, "worker")
    refuse_demo_secrets(settings)
    refuse_unsupported_mode(settings)
    if settings.warehouse.writer == "kafka":  # scale-out on one warehouse: `uptake writer` inserts
        return _run_publishing_worker(settings, exit_when_idle_s=exit_when_idle_s, seams=seams)
    warehouse = open_warehouse(settings)
    # Both catalogs before anything else: a broken catalog file stops the worker here.
    catalogs = load_catalogs(settings, warehouse)
    ensure_topics(
        settings.kafka.bootstrap,
        {
            settings.kafka.events_topic: settings.kafka.topic_partitions,
            settings.kafka.backfill_topic: settings.kafka.topic_partitions,
            settings.kafka.dlq_topic: 1,
        },
        security=client_kwargs(settings.kafka),
    )
    metrics.set_build_info(warehouse.kind)
    observability = ObservabilitySettings.from_settings(settings.ingest)
    adoption = None
    health = Health()
    if settings.ingest.metrics_port:
        serve_metrics(settings, health)
        # Its own connection, read in the background: scrapes never query the warehouse.
        adoption = start_adoption_gauges(settings.warehouse.url, observability)
    sink = build_sink(settings, warehouse, seams)
    try:
        return _launch(
            settings,
            seams.batch_sink(sink),
            health,
            target=redact_url(settings.warehouse.url),
            exit_when_idle_s=exit_when_idle_s,
            seams=seams,
            catalogs=catalogs,
        )
    finally:
        if adoption is not None:
            adoption.stop()


def _run_publishing_worker(
    settings: Settings, *, exit_when_idle_s: float | None, seams: Seams
) -> int:
    """UPTAKE_WRITER=kafka: decode and pseudonymise, publish to the writer topic, commit.

    No warehouse here (pipeline/ingest/remote.py): `uptake writer` checks the schema, resolves
    teams and inserts; the adoption gauges are not run by these workers, and the lifecycle is
    refused with this mode (`refuse_unsupported_mode`).
    """
    from pipeline.ingest.remote import publisher_for

    ensure_topics(
        settings.kafka.bootstrap,
        {
            settings.kafka.events_topic: settings.kafka.topic_partitions,
            settings.kafka.backfill_topic: settings.kafka.topic_partitions,
        },
        security=client_kwargs(settings.kafka),
    )
    sink = publisher_for(
        settings.kafka.bootstrap,
        settings.warehouse.writer_topic,
        compression=settings.kafka.compression,
        **client_kwargs(settings.kafka),
    )
    metrics.set_build_info("none")
    health = Health()
    if settings.ingest.metrics_port:
        serve_metrics(settings, health)
    return _launch(
        settings,
        seams.batch_sink(sink),
        health,
        target=f"writer topic {settings.warehouse.writer_topic}",
        exit_when_idle_s=exit_when_idle_s,
        seams=seams,
    )


def open_warehouse(settings: Settings) -> Warehouse:
    """The warehouse of the settings (in cluster mode when set), refused unless migrated."""
    warehouse = connect(settings.warehouse.url, engine_options=settings.warehouse.engine_options())
    if settings.warehouse.cluster:
        from pipeline.warehouse.cluster import use_cluster

        use_cluster(warehouse, settings.warehouse.cluster)
    require_current(warehouse)
    return warehouse


def load_catalogs(settings: Settings, warehouse: Warehouse) -> WorkerCatalogs:
    """Both catalogs, on the warehouse's catalog history, users keyed by the settings' key
    (refused when the warehouse recorded another key: pipeline/enrich/key_fingerprint.py)."""
    pseudonyms = pseudonymizer_for(settings)
    require_key_fingerprint(warehouse, pseudonyms)
    return WorkerCatalogs.load(settings, CatalogStore(warehouse), pseudonyms.key_of)


def build_sink(settings: Settings, warehouse: Warehouse, seams: Seams = NONE) -> ClickHouseSink:
    """The sink a process that inserts events uses: dead letters and the dedup window."""
    dead_letters = DeadLetterPublisher(
        make_producer(
            settings.kafka.bootstrap,
            compression=settings.kafka.compression,
            **client_kwargs(settings.kafka),
        ),
        settings.kafka.dlq_topic,
    )
    return seams.new_sink(
        seams.sink_warehouse(warehouse),
        dead_letters=dead_letters,
        recent_ids=settings.ingest.dedup_window,
    )


def announce(line: str, metrics_port: int) -> None:
    """The line a long-running process prints on stderr once it starts, with its /metrics."""
    metrics_at = f", metrics on :{metrics_port}/metrics" if metrics_port else ""
    logs.announce(log, line + metrics_at)


def serve_metrics(settings: Settings, health: Health) -> None:
    try:
        serve(settings.ingest.metrics_port, health, metrics.REGISTRY)
    except OSError as exc:
        raise SettingsError(
            f"cannot serve /metrics on port {settings.ingest.metrics_port} ({exc.strerror}): "
            "another Uptake process may be running; set UPTAKE_METRICS_PORT to a free port, or 0 "
            "to disable it"
        ) from exc


def _launch(
    settings: Settings,
    sink: BatchSink,
    health: Health,
    *,
    target: str,
    exit_when_idle_s: float | None,
    seams: Seams = NONE,
    catalogs: WorkerCatalogs | None = None,
) -> int:
    """Build the faust app around `sink` and run it until it stops; returns the exit code."""
    # faust's folder is <home>/faust: nothing else creates <home> when the pseudonym key is set
    # and the warehouse is a server (or another process's).
    settings.home.mkdir(parents=True, exist_ok=True)
    # A record batch no codec can open stops the worker with its coordinates (exit 65): the
    # hook comes with every faust app (pipeline/kafka/client.py).
    progress = Progress()
    app = build_app(
        settings,
        sink,
        progress=progress,
        exit_when_idle_s=exit_when_idle_s,
        wrap_lifecycle_outputs=seams.lifecycle_outputs,
        catalogs=catalogs,
        wrap_step=seams.ingest_step,
    )

    @app.timer(1.0)
    async def heartbeat() -> None:  # /healthz and /readyz (pipeline/ingest/health.py)
        health.beat(writing=progress.in_flight)

    announce(
        f"worker: {settings.kafka.bootstrap} topics {settings.kafka.events_topic}, "
        f"{settings.kafka.backfill_topic} -> {target}",
        settings.ingest.metrics_port,
    )
    tune_gc()
    worker = faust.Worker(
        app,
        quiet=True,
        redirect_stdouts=False,
        # run_worker's log_to_stderr set logging up: one format for faust's lines too, and its
        # INFO lines (lifecycle chatter) at WARN unless debugging.
        override_logging=False,
    )
    worker.spinner = None  # a terminal spinner garbles logs and CI output
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0)
    logs.announce(log, f"worker stopped: {progress.line()}")
    return code


def log_to_stderr(settings: Settings, component: str) -> None:
    """Uptake's own log lines (progress, retries) at UPTAKE_LOG_LEVEL, everything else (faust,
    aiokafka) at WARN unless debugging; to stderr in UPTAKE_LOG_FORMAT (docs/operations.md#logs)."""
    level = "debug" if settings.log_level == "debug" else "warn"
    logs.configure(component, fmt=settings.log_format, level=level, uptake_level=settings.log_level)
