"""Start the worker process: check the warehouse, create topics, serve /metrics, run faust."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable

import faust

from pipeline.catalog.store import CatalogStore
from pipeline.config.settings import Settings, SettingsError, redact_url
from pipeline.devtools.faults import KillSwitch
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.ingest.app import BatchSink, Progress, build_app
from pipeline.ingest.catalogs import WorkerCatalogs
from pipeline.ingest.health import Health, serve
from pipeline.kafka import undecodable
from pipeline.kafka.producer import make_producer
from pipeline.kafka.security import client_kwargs
from pipeline.kafka.topics import ensure_topics
from pipeline.observability import metrics
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


def run_worker(settings: Settings, *, exit_when_idle_s: float | None = None) -> int:
    """Run until SIGTERM/SIGINT (or idle, when asked). Raises for a person-facing setup error."""
    log_to_stderr(settings.log_level)
    if settings.writer == "kafka":  # scale-out on one warehouse: `uptake writer` inserts
        return _run_publishing_worker(settings, exit_when_idle_s=exit_when_idle_s)
    warehouse = open_warehouse(settings)
    # Both catalogs before anything else: a broken catalog file stops the worker here.
    catalogs = load_catalogs(settings, warehouse)
    ensure_topics(
        settings.kafka_bootstrap,
        {
            settings.events_topic: settings.topic_partitions,
            settings.backfill_topic: settings.topic_partitions,
            settings.dlq_topic: 1,
        },
        security=client_kwargs(settings),
    )
    metrics.set_build_info(warehouse.kind)
    observability = ObservabilitySettings.from_settings(settings)
    adoption = None
    health = Health()
    if settings.metrics_port:
        serve_metrics(settings, health)
        # Its own connection, read in the background: scrapes never query the warehouse.
        adoption = start_adoption_gauges(settings.warehouse_url, observability)
    sink = build_sink(settings, warehouse)
    kill_switch = None
    if settings.chaos_kill_at:
        kill_switch = KillSwitch(settings.chaos_kill_at, settings.chaos_kill_after_batches)
        sink.fault = _chain(sink.fault, kill_switch.before_insert)
        sink.inserted = kill_switch.after_insert
        log.warning(
            "fault injection: SIGKILL %s after %d batches",
            settings.chaos_kill_at,
            settings.chaos_kill_after_batches,
        )

    try:
        return _launch(
            settings,
            sink,
            health,
            target=redact_url(settings.warehouse_url),
            exit_when_idle_s=exit_when_idle_s,
            kill_switch=kill_switch,
            catalogs=catalogs,
        )
    finally:
        if adoption is not None:
            adoption.stop()


def _run_publishing_worker(settings: Settings, *, exit_when_idle_s: float | None) -> int:
    """UPTAKE_WRITER=kafka: decode and pseudonymise, publish to the writer topic, commit.

    No warehouse here (pipeline/ingest/remote.py): `uptake writer` checks the schema, resolves
    teams and inserts; the adoption lifecycle and gauges are not run by these workers.
    """
    from dataclasses import replace

    from pipeline.ingest.remote import publisher_for

    ensure_topics(
        settings.kafka_bootstrap,
        {
            settings.events_topic: settings.topic_partitions,
            settings.backfill_topic: settings.topic_partitions,
        },
        security=client_kwargs(settings),
    )
    sink = publisher_for(
        settings.kafka_bootstrap,
        settings.writer_topic,
        compression=settings.kafka_compression,
        **client_kwargs(settings),
    )
    metrics.set_build_info("none")
    health = Health()
    if settings.metrics_port:
        serve_metrics(settings, health)
    kill_switch = None
    if settings.chaos_kill_at:
        kill_switch = KillSwitch(settings.chaos_kill_at, settings.chaos_kill_after_batches)
    return _launch(
        replace(settings, lifecycle_enabled=False),
        sink,
        health,
        target=f"writer topic {settings.writer_topic}",
        exit_when_idle_s=exit_when_idle_s,
        kill_switch=kill_switch,
    )


def open_warehouse(settings: Settings) -> Warehouse:
    """The warehouse of the settings (in cluster mode when set), refused unless migrated."""
    warehouse = connect(settings.warehouse_url)
    if settings.clickhouse_cluster:
        from pipeline.warehouse.cluster import use_cluster

        use_cluster(warehouse, settings.clickhouse_cluster)
    require_current(warehouse)
    return warehouse


def load_catalogs(settings: Settings, warehouse: Warehouse) -> WorkerCatalogs:
    """Both catalogs, on the warehouse's catalog history, users keyed by the settings' key."""
    pseudonyms = Pseudonymizer.from_secret_or_file(
        settings.pseudonym_key.reveal(), settings.pseudonym_key_file
    )
    return WorkerCatalogs.load(settings, CatalogStore(warehouse), pseudonyms.key_of)


def build_sink(settings: Settings, warehouse: Warehouse) -> ClickHouseSink:
    """The sink a process that inserts events uses: dead letters, the dedup window, and the
    injected faults and negative control of the chaos settings."""
    dead_letters = DeadLetterPublisher(
        make_producer(
            settings.kafka_bootstrap,
            compression=settings.kafka_compression,
            **client_kwargs(settings),
        ),
        settings.dlq_topic,
    )
    sink = ClickHouseSink(warehouse, dead_letters=dead_letters, recent_ids=settings.dedup_window)
    if settings.chaos_fail_inserts:
        sink.fault = failing_inserts(settings.chaos_fail_inserts)
    if settings.chaos_fail_inserts_file:
        sink.fault = _chain(sink.fault, failing_while_exists(settings.chaos_fail_inserts_file))
    if settings.chaos_ignore_watermarks:
        log.warning("negative control: the sink ignores its watermarks and will double count")
        sink.ignore_watermarks = True
    return sink


def serve_metrics(settings: Settings, health: Health) -> None:
    try:
        serve(settings.metrics_port, health, metrics.REGISTRY)
    except OSError as exc:
        raise SettingsError(
            f"cannot serve /metrics on port {settings.metrics_port} ({exc.strerror}): another "
            "Uptake process may be running; set UPTAKE_METRICS_PORT to a free port, or 0 to "
            "disable it"
        ) from exc


def _launch(
    settings: Settings,
    sink: BatchSink,
    health: Health,
    *,
    target: str,
    exit_when_idle_s: float | None,
    kill_switch: KillSwitch | None = None,
    catalogs: WorkerCatalogs | None = None,
) -> int:
    """Build the faust app around `sink` and run it until it stops; returns the exit code."""
    # faust's folder is <home>/faust: nothing else creates <home> when the pseudonym key is set
    # and the warehouse is a server (or another process's).
    settings.home.mkdir(parents=True, exist_ok=True)
    # A record batch no codec can open stops the worker with its coordinates (exit 65).
    for library, codecs in undecodable.missing_codecs().items():
        log.warning(
            "%s cannot decompress %s: batches compressed so will stop the worker (install %s)",
            library,
            ", ".join(codecs),
            undecodable.CODEC_LIBRARIES[library],
        )
    undecodable.install(
        undecodable.stop_worker(
            settings.consumer_group, settings.kafka_bootstrap, settings.undecodable_exit_delay_s
        )
    )
    progress = Progress()
    app = build_app(
        settings,
        sink,
        progress=progress,
        exit_when_idle_s=exit_when_idle_s,
        kill_switch=kill_switch,
        catalogs=catalogs,
    )

    @app.timer(1.0)
    async def heartbeat() -> None:  # /healthz and /readyz (pipeline/ingest/health.py)
        health.beat(writing=progress.in_flight)

    print(
        f"worker: {settings.kafka_bootstrap} topics {settings.events_topic}, "
        f"{settings.backfill_topic} -> {target}"
        + (f", metrics on :{settings.metrics_port}/metrics" if settings.metrics_port else ""),
        file=sys.stderr,
        flush=True,
    )
    tune_gc()
    # faust's own INFO lines are its lifecycle chatter: keep them at WARN unless debugging.
    faust_level = "debug" if settings.log_level == "debug" else "warn"
    log_to_stderr(settings.log_level)
    worker = faust.Worker(
        app,
        loglevel=faust_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=True,
    )
    worker.spinner = None  # a terminal spinner garbles logs and CI output
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0)
    print(f"worker stopped: {progress.line()}", file=sys.stderr, flush=True)
    return code


def log_to_stderr(level: str) -> None:
    """Uptake's own log lines (progress, retries) go to stderr whatever faust does with logging."""
    logger = logging.getLogger("uptake")
    logger.setLevel({"warn": "WARNING"}.get(level.lower(), level.upper()))
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


def failing_inserts(count: int) -> Callable[[str], None]:
    """A sink fault that fails the first `count` inserts (every insert when negative)."""
    remaining = [count]

    def fault(table: str) -> None:
        if remaining[0] == 0:
            return
        remaining[0] -= 1
        raise ConnectionError(f"injected failure of the insert into {table} (chaos setting)")

    log.warning("fault injection: failing %s inserts", "all" if count < 0 else count)
    return fault


def failing_while_exists(path: str) -> Callable[[str], None]:
    """A sink fault that fails every insert while the file `path` exists: a warehouse outage
    a drill or a test switches on and off (the worker retries as it would for a real one)."""

    def fault(table: str) -> None:
        if os.path.exists(path):
            raise ConnectionError(f"injected failure of the insert into {table} ({path} exists)")

    log.warning("fault injection: inserts fail while %s exists", path)
    return fault


def _chain(
    first: Callable[[str], None] | None, then: Callable[[str], None]
) -> Callable[[str], None]:
    def both(table: str) -> None:
        if first is not None:
            first(table)
        then(table)

    return both
