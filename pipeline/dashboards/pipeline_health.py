"""Pipeline health (SREs, Prometheus): throughput, lag, freshness, rejects, inserts, the consumer.

Only metrics that `pipeline/observability/metrics.py`, `pipeline/collector/metrics.py` and
`pipeline/observability/` export (and Prometheus's own `up`) are used; docs/operations.md
explains each one and the runbook behind it. Rates use `$__rate_interval`, so the panels work
at any scrape interval; every query is scoped to the worker (or collector) job and the
`$instance` variable, because the collector's /metrics also shows the worker's series at zero.
"""

from __future__ import annotations

import re

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

from pipeline.dashboards import panels
from pipeline.dashboards.board import PROMETHEUS, Board, promql

UID = "uptake-pipeline-health"
WORKER = 'job="uptake-worker", instance=~"$instance"'
COLLECTOR = 'job="uptake-collector", instance=~"$collector_instance"'
RATE = "[$__rate_interval]"


def _instance_variable(name: str, label: str, job: str) -> sdk.QueryVariable:
    query = f'label_values(up{{job="{job}"}}, instance)'
    return (
        sdk.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(text="All", value=["$__all"], selected=True))
    )


def _quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    """p50/p95/p99 of a histogram of the worker, optionally per label `by`."""
    group = f"{by}, le" if by else "le"
    legend_prefix = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{WORKER}}}{RATE})))",
            f"{legend_prefix}p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def _targets(*queries: tuple[str, str]) -> list[panels.Target]:
    return [
        promql(expr, legend, ref_id=chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)
    ]


def build() -> Board:
    board = Board(
        uid=UID,
        title="Uptake — Pipeline health",
        description=(
            "Is the pipeline healthy? Throughput, Kafka lag, data freshness, rejects, ClickHouse "
            "inserts and the consumer, from the worker's and the collector's /metrics "
            "(docs/operations.md has a runbook for each alert)."
        ),
        tags=("uptake", "sre"),
        time_from="now-6h",
        refresh="30s",
    )
    board.variable(_instance_variable("instance", "Worker", "uptake-worker"))
    board.variable(_instance_variable("collector_instance", "Collector", "uptake-collector"))

    board.row("Now")
    board.add(
        panels.stat(
            "Workers up",
            "Worker targets Prometheus scrapes successfully (up == 1). 0 pages: UptakeWorkerDown.",
            _targets((f"sum(up{{{WORKER}}})", "up")),
            thresholds=((None, "red"), (1, "green")),
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Events consumed /s",
            "Events taken from Kafka per second (consumed = accepted + rejected).",
            _targets((f"sum(rate(uptake_events_consumed_total{{{WORKER}}}{RATE}))", "events/s")),
            unit="ops",
            decimals=1,
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Reject ratio",
            "Share of consumed events rejected (alert UptakeRejectRatioHigh above 5%).",
            _targets(
                (
                    f"sum(rate(uptake_events_rejected_total{{{WORKER}}}{RATE})) / "
                    f"clamp_min(sum(rate(uptake_events_consumed_total{{{WORKER}}}{RATE})), 1e-9)",
                    "rejected",
                )
            ),
            unit="percentunit",
            decimals=2,
            thresholds=((None, "green"), (0.01, "orange"), (0.05, "red")),
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Consumer lag",
            "Messages of the events topic not yet written to ClickHouse and committed, all "
            "partitions (alert UptakeConsumerLagGrowing).",
            _targets((f"sum(uptake_consumer_lag_messages{{{WORKER}}})", "messages")),
            thresholds=((None, "green"), (10_000, "orange"), (100_000, "red")),
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Freshness",
            "Age of the newest event in the warehouse (the freshest worker): now - occurred_at "
            "(alert UptakeDataStale above 15 minutes while events flow).",
            _targets((f"min(uptake_event_freshness_seconds{{{WORKER}}})", "age")),
            unit="s",
            thresholds=((None, "green"), (300, "orange"), (900, "red")),
            no_value="no event yet",
        ),
        4,
        4,
    )
    board.add(
        panels.stat(
            "Insert errors (1h)",
            "Failed (and retried) ClickHouse inserts in the last hour, all tables.",
            _targets(
                (f"sum(increase(uptake_clickhouse_insert_errors_total{{{WORKER}}}[1h]))", "errors")
            ),
            decimals=0,
            thresholds=((None, "green"), (1, "orange"), (10, "red")),
        ),
        4,
        4,
    )

    board.row("Throughput")
    board.add(
        panels.timeseries(
            "Events through the worker",
            "Consumed, accepted and rejected events per second. consumed = accepted + rejected "
            "always holds: nothing is dropped silently.",
            _targets(
                (f"sum(rate(uptake_events_consumed_total{{{WORKER}}}{RATE}))", "consumed"),
                (f"sum(rate(uptake_events_accepted_total{{{WORKER}}}{RATE}))", "accepted"),
                (f"sum(rate(uptake_events_rejected_total{{{WORKER}}}{RATE}))", "rejected"),
            ),
            unit="ops",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Accepted events by type",
            "Events written to ClickHouse per second, by event type.",
            _targets(
                (
                    f"sum by (event_type) (rate(uptake_events_accepted_total{{{WORKER}}}{RATE}))",
                    "{{event_type}}",
                )
            ),
            unit="ops",
            stack=True,
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Rows written to ClickHouse",
            "Rows inserted per second, by table (events, rejected_events).",
            _targets(
                (
                    "sum by (table) "
                    f"(rate(uptake_clickhouse_inserted_rows_total{{{WORKER}}}{RATE}))",
                    "{{table}}",
                )
            ),
            unit="rowsps",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Events per batch",
            "Median and 95th percentile of events per worker batch. Small batches under load "
            "mean a slow flush; batches at UPTAKE_BATCH_MAX_MESSAGES mean a busy worker.",
            _targets(*_quantiles("uptake_batch_events")[:2]),
        ),
        12,
        8,
    )

    board.row("Lag and freshness")
    board.add(
        panels.timeseries(
            "Consumer lag by partition",
            "Messages per partition not yet written and committed (log end offset - committed "
            "offset). One growing partition: a hot key; all: the worker is too slow.",
            _targets(
                (
                    f"sum by (partition) (uptake_consumer_lag_messages{{{WORKER}}})",
                    "partition {{partition}}",
                )
            ),
            stack=True,
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Freshness and idle time",
            "Age of the newest event written (freshness) and the time since the worker last "
            "finished a batch (idle or stuck).",
            _targets(
                (f"min(uptake_event_freshness_seconds{{{WORKER}}})", "newest event age"),
                (
                    f"time() - max(uptake_last_batch_timestamp_seconds{{{WORKER}}})",
                    "since last batch",
                ),
            ),
            unit="s",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Event delay (occurred → written)",
            "Percentiles of the time from occurred_at to being written to ClickHouse: the "
            "emitter's buffering, Kafka and the worker together.",
            _targets(*_quantiles("uptake_event_delay_seconds")),
            unit="s",
        ),
        24,
        8,
    )

    board.row("Rejects")
    board.add(
        panels.timeseries(
            "Rejected events by reason",
            "Rejects per second by reason code (docs/events.md#reject-reasons); each is in "
            "rejected_events and on the dead-letter topic.",
            _targets(
                (
                    f"sum by (reason) (rate(uptake_events_rejected_total{{{WORKER}}}{RATE}))",
                    "{{reason}}",
                ),
            ),
            unit="ops",
            stack=True,
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Dead letters and skipped replays",
            "Rejections published to the dead-letter topic, rows skipped as replays (at or "
            "below a partition's stored offset) and re-sent event ids the sink skipped.",
            _targets(
                (f"sum(rate(uptake_dead_letters_written_total{{{WORKER}}}{RATE}))", "dead letters"),
                (
                    f"sum(rate(uptake_sink_replayed_rows_skipped_total{{{WORKER}}}{RATE}))",
                    "replayed rows skipped",
                ),
                (
                    f"sum(rate(uptake_sink_duplicate_events_skipped_total{{{WORKER}}}{RATE}))",
                    "duplicate events skipped",
                ),
            ),
            unit="ops",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Collector: events by outcome",
            "Events the HTTP collector judged: accepted (acknowledged by Kafka), rejected "
            "(validation), undelivered (Kafka did not acknowledge: answered 503).",
            _targets(
                (
                    f"sum by (outcome) (rate(uptake_collector_events_total{{{COLLECTOR}}}{RATE}))",
                    "{{outcome}}",
                ),
            ),
            unit="ops",
            stack=True,
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Collector: requests by status",
            "Ingestion requests per second by HTTP status (401/413/422/429: the sender's "
            "problem; 5xx: ours, alert UptakeCollectorErrors).",
            _targets(
                (
                    f"sum by (status) (rate(uptake_collector_requests_total{{{COLLECTOR}}}{RATE}))",
                    "{{status}}",
                ),
            ),
            unit="reqps",
            stack=True,
        ),
        12,
        8,
    )

    board.row("ClickHouse inserts")
    board.add(
        panels.timeseries(
            "Insert latency by table",
            "Percentiles of one column-oriented insert (retries excluded), per table.",
            _targets(*_quantiles("uptake_clickhouse_insert_duration_seconds", by="table")),
            unit="s",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Insert errors by table",
            "Failed insert attempts per second; each is retried with backoff while nothing is "
            "committed (alerts UptakeClickHouseInsertErrors / InsertsFailing).",
            _targets(
                (
                    "sum by (table) "
                    f"(rate(uptake_clickhouse_insert_errors_total{{{WORKER}}}{RATE}))",
                    "{{table}}",
                )
            ),
            unit="ops",
        ),
        12,
        8,
    )
    latency_heatmap = panels.heatmap(
        "Insert latency distribution",
        "Inserts per latency bucket over time (all tables).",
        [
            promql(
                "sum by (le) (increase("
                f"uptake_clickhouse_insert_duration_seconds_bucket{{{WORKER}}}{RATE}))",
                "{{le}}",
            ).format(prometheus_model.PromQueryFormat.HEATMAP)
        ],
        unit="s",
    )
    board.add(latency_heatmap, 12, 8)
    board.add(
        panels.timeseries(
            "Rows per insert",
            "Median and 95th percentile rows per insert, by table. The design aims at "
            "10k to 100k rows per insert under load.",
            _targets(*_quantiles("uptake_clickhouse_insert_rows", by="table")[:2]),
        ),
        12,
        8,
    )

    board.row("Adoption lifecycle")
    board.add(
        panels.timeseries(
            "Lifecycle: activity applied",
            "Activity records (team, capability, day) the lifecycle agent applied, next to the "
            "events written: flat while events flow means the agent is stuck.",
            _targets(
                (
                    f"sum(rate(uptake_lifecycle_activity_records_total{{{WORKER}}}{RATE}))",
                    "activity records",
                ),
                (
                    f"sum(rate(uptake_events_accepted_total{{{WORKER}}}{RATE}))",
                    "events accepted",
                ),
            ),
            unit="ops",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Lifecycle: milestones written",
            "Milestone rows written by milestone and action; retractions follow late events "
            "that undo a milestone (docs/lifecycle.md).",
            _targets(
                (
                    "sum by (milestone, action) "
                    f"(increase(uptake_lifecycle_milestones_written_total{{{WORKER}}}{RATE}))",
                    "{{milestone}} {{action}}",
                ),
            ),
            bars=True,
        ),
        12,
        8,
    )

    board.row("Kafka consumer and process")
    board.add(
        panels.timeseries(
            "Offset commit duration",
            "95th percentile of offset commits that committed something.",
            _targets(_quantiles("uptake_kafka_commit_duration_seconds")[1]),
            unit="s",
        ),
        8,
        8,
    )
    board.add(
        panels.timeseries(
            "Rebalances and backpressure",
            "Consumer-group rebalances and times the stream buffer was full (fetching paused).",
            _targets(
                (f"sum(increase(uptake_kafka_rebalances_total{{{WORKER}}}{RATE}))", "rebalances"),
                (
                    f"sum(increase(uptake_stream_buffer_full_total{{{WORKER}}}{RATE}))",
                    "buffer full",
                ),
            ),
            bars=True,
        ),
        8,
        8,
    )
    board.add(
        panels.timeseries(
            "Adoption gauges: age of the last read",
            "Seconds since the worker last read the adoption gauges from ClickHouse "
            "(alert UptakeAdoptionGaugesFailing), and failed reads.",
            _targets(
                (
                    f"time() - max(uptake_adoption_refresh_timestamp_seconds{{{WORKER}}} > 0)",
                    "age",
                ),
                (
                    f"sum(increase(uptake_adoption_refresh_errors_total{{{WORKER}}}{RATE}))",
                    "failed reads",
                ),
            ),
            unit="s",
        ),
        8,
        8,
    )
    board.add(
        panels.timeseries(
            "CPU",
            "CPU seconds per second of each worker process.",
            _targets(
                (
                    f"sum by (instance) (rate(process_cpu_seconds_total{{{WORKER}}}{RATE}))",
                    "{{instance}}",
                )
            ),
            unit="percentunit",
        ),
        12,
        8,
    )
    board.add(
        panels.timeseries(
            "Resident memory",
            "Resident memory of each worker process.",
            _targets(
                (
                    f"sum by (instance) (process_resident_memory_bytes{{{WORKER}}})",
                    "{{instance}}",
                )
            ),
            unit="bytes",
        ),
        12,
        8,
    )
    _adoption_row(board)
    return board


def _adoption_row(board: Board) -> None:
    """The adoption and DORA gauges the adoption alerts watch (rules/uptake-adoption.yml);
    every worker serves the same figures, so `max` shows them once."""
    board.row("Adoption and DORA gauges (alerts in rules/uptake-adoption.yml)")
    gauges = (
        (
            "Active teams per capability, last 7 days",
            "Teams that used each capability in the last 7 days. Alert "
            "UptakeCapabilityActiveTeamsFalling: below 75 % of a week earlier.",
            "uptake_adoption_active_teams",
            'window="7d"',
            "{{capability}}",
            "short",
        ),
        (
            "Adoption rate per capability, last 28 days",
            "Target teams that used the capability in 28 days / its target teams.",
            "uptake_adoption_rate",
            'window="28d"',
            "{{capability}}",
            "percentunit",
        ),
        (
            "Teams per lifecycle stage",
            "Teams per capability now trying it (used, not activated), activated, churned "
            "(docs/lifecycle.md).",
            "uptake_adoption_teams",
            "",
            "{{capability}} · {{stage}}",
            "short",
        ),
        (
            "Stalled teams per capability",
            "Teams that first used the capability over 28 days ago and never activated it. "
            "Alert UptakeAdoptionStalled: at least 3 and a quarter of its teams.",
            "uptake_adoption_stalled_teams",
            "",
            "{{capability}}",
            "short",
        ),
        (
            "DORA: median lead time, 28 days",
            "Commit to production; alert UptakeDoraLevelDropped when its DORA level falls.",
            "uptake_dora_lead_time_seconds",
            "",
            "lead time",
            "s",
        ),
        (
            "DORA: deployments per week, 28 days",
            "Production deployments that went live per week; alert UptakeDoraLevelDropped.",
            "uptake_dora_deployment_frequency_per_week",
            "",
            "deployments / week",
            "short",
        ),
        (
            "DORA: change failure ratio, 28 days",
            "Deployments rolled back or causing an incident / deployments.",
            "uptake_dora_change_failure_ratio",
            "",
            "change failure ratio",
            "percentunit",
        ),
    )
    for i, (title, description, metric, matcher, legend, unit) in enumerate(gauges):
        labels = ", ".join(re.findall(r"\{\{(\w+)\}\}", legend))
        by = f" by ({labels})" if labels else ""
        expr = f"max{by} ({metric}{{{WORKER}{', ' + matcher if matcher else ''}}})"
        board.add(
            panels.timeseries(title, description, _targets((expr, legend)), unit=unit),
            12 if i < 4 else 8,
            8,
        )
