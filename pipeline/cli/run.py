"""`uptake simulate`, `uptake worker` and `uptake demo`: moving events through the pipeline."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from pipeline.cli.argtypes import (
    at_most,
    days,
    duration,
    fraction,
    positive_float,
    positive_int,
    seconds,
)
from pipeline.config.settings import Settings

if TYPE_CHECKING:
    from pipeline.ingest.seams import Seams

team_count = at_most(20, "teams: the synthetic organisation has")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "simulate",
        help="send realistic platform usage events of a synthetic organisation to Kafka",
        description=(
            "Generate platform usage events (api_call, deploy, model_training, incident) for a "
            "synthetic organisation whose teams adopt platform capabilities over the last days, "
            "and send them to the events topic with kafka-python. The same --seed gives the same "
            "events. Events of one team are batched into JSON-array messages keyed by team."
        ),
    )
    bound = cmd.add_mutually_exclusive_group()
    bound.add_argument(
        "--events", type=positive_int, default=None, help="how many events (default 100000)"
    )
    bound.add_argument(
        "--duration", type=seconds, default=None, help="send for this many seconds instead"
    )
    cmd.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    cmd.add_argument("--teams", type=team_count, default=12, help="teams (default 12, max 20)")
    cmd.add_argument(
        "--days", type=days, default=6.0, help="days of history to spread events over (default 6)"
    )
    cmd.add_argument(
        "--per-message",
        type=positive_int,
        default=100,
        help="events per Kafka message (default 100; 1 sends one event per message)",
    )
    cmd.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="write the ground truth (counts per team and event type, the scenario, the true "
        "factor of each capability on each DORA key, each team's adoption moments) to this JSON "
        "file",
    )
    # Ground-truth knobs of the scenario (devtools/simulate/org.py Scenario; docs/analysts.md).
    cmd.add_argument(
        "--recovery-factor",
        type=positive_float,
        default=1.0,
        help="adopting incident-response multiplies failed deployment recovery time by this "
        "(default 1: no effect)",
    )
    cmd.add_argument(
        "--uncounted-api-share",
        type=float,
        default=0.0,
        help="share of moments that are api-gateway calls of an API its catalog entry does not "
        "list (no use of it; default 0)",
    )
    cmd.add_argument(
        "--churn-capability",
        default="",
        help="the first team to adopt this capability stops using it mid-window (default: none)",
    )
    cmd.add_argument(
        "--lead-time-factor",
        type=positive_float,
        default=0.5,
        help="adopting deploy-pipeline multiplies a team's lead time by this (default 0.5)",
    )
    cmd.add_argument(
        "--change-failure-factor",
        type=positive_float,
        default=0.6,
        help="... and its change failure rate by this (default 0.6)",
    )
    cmd.add_argument(
        "--restore-factor",
        type=positive_float,
        default=0.7,
        help="adopting incident-response multiplies time to restore by this (default 0.7)",
    )
    cmd.add_argument(
        "--deploy-frequency-factor",
        type=positive_float,
        default=1.0,
        help="adopting deploy-pipeline multiplies a team's deploy rate by this (default 1)",
    )
    cmd.add_argument(
        "--trend-per-week",
        type=float,
        default=0.02,
        help="organisation-wide improvement per week of every team's lead time, time to restore "
        "and deploy rate, adopters or not (default 0.02: 2%% a week; 0: none)",
    )
    cmd.add_argument(
        "--incident-caused-share",
        type=float,
        default=0.05,
        help="share of succeeded production deploys that cause an incident naming them in "
        "caused_by_deployment (default 0.05)",
    )
    cmd.add_argument(
        "--weekend-deploy-factor",
        type=positive_float,
        default=0.3,
        help="deploy rate on Saturdays and Sundays relative to weekdays (default 0.3)",
    )
    cmd.add_argument(
        "--flat",
        action="store_true",
        help="no scenario: teams deploy and have incidents only after adopting the platform's "
        "capabilities (the stream the pipeline tests use)",
    )
    cmd.set_defaults(func=_simulate)

    cmd = subparsers.add_parser(
        "worker",
        help="run the stream processor: Kafka -> validate -> ClickHouse",
        description=(
            "Run the faust worker: consume the events topic in batches, validate every event, "
            "write accepted and rejected events to ClickHouse, and commit offsets only after "
            "ClickHouse acknowledged. Stops on Ctrl-C / SIGTERM. Needs a migrated warehouse."
        ),
    )
    cmd.add_argument(
        "--exit-when-idle",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help=(
            "stop once caught up (no lag on its partitions) and no new events arrived for this "
            "long (for batch runs and demos)"
        ),
    )
    cmd.set_defaults(func=_worker)

    cmd = subparsers.add_parser(
        "writer",
        help="write the workers' batches to ClickHouse (UPTAKE_WRITER=kafka: scale-out)",
        description=(
            "With UPTAKE_WRITER=kafka the workers publish decoded, pseudonymised batches to "
            "UPTAKE_WRITER_TOPIC instead of inserting; this one process resolves teams, writes "
            "them to the warehouse (each source offset once) and commits after ClickHouse "
            "acknowledged. Run exactly one per warehouse. Stops on Ctrl-C / SIGTERM."
        ),
    )
    cmd.add_argument(
        "--exit-when-idle",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="stop after no new batches arrived for this long (for batch runs and tests)",
    )
    cmd.set_defaults(func=_writer)

    cmd = subparsers.add_parser(
        "demo",
        help="the whole pipeline once: broker, migrate, simulate, worker, summary",
        description=(
            "Start the local broker if none answers, migrate the warehouse, send eight weeks of "
            "simulated events of a scenario organisation (teams adopt capabilities; adopting "
            "the deploy pipeline halves lead time), run the worker until it has written them "
            "all, then print the adoption funnel per capability, DORA before vs after adoption "
            "and per-team usage, and write the HTML report to $UPTAKE_HOME/report.html. Safe to "
            "run again: new events are added to the warehouse."
        ),
    )
    cmd.add_argument(
        "--events", type=positive_int, default=100_000, help="events to simulate (default 100000)"
    )
    cmd.add_argument("--seed", type=int, default=None, help="random seed (default: time-based)")
    cmd.set_defaults(func=_demo)

    cmd = subparsers.add_parser(
        "bench",
        help="measure pipeline throughput against raw baselines and print one JSON line",
        description=(
            "For 1, 10 and 100 events per Kafka message in turn (50,000, 100,000 and 200,000 "
            "events; about 2-3 minutes on 2 vCPUs): produce api_call events to a fresh topic, "
            "run the real worker over them, then two baselines that only consume the same "
            "messages and insert them raw into the same warehouse (one row per message, one "
            "per event). Then measure produce-to-queryable freshness at 10,000 and 50,000 "
            "events/s. Prints progress to stderr and one JSON line to stdout: each shape under "
            '"shapes" (pipeline_events_per_s, baseline_events_per_s, ratio, '
            'baseline_events_raw_per_s, ratio_events_raw), each rate under "freshness" '
            "(p50/p95), and at the top level the 100-per-message shape's figures, the first "
            "rate's p95_freshness_s and peak_rss_mb. Uses its own "
            "warehouse ($UPTAKE_HOME/bench) unless --warehouse is given. Safe to run again: "
            "each run uses a database and topics of its own and deletes them at the end. "
            "Needs a broker. With --queries: fill the warehouse with generated events "
            "(ClickHouse's numbers(), no Kafka) and time every dashboard panel's query instead "
            "(docs/benchmarks.md)."
        ),
    )
    cmd.add_argument(
        "--events",
        type=positive_int,
        default=None,
        help="events to produce per shape (default 50000, 100000 and 200000 for 1, 10 and 100 "
        "per message; 200000 with --per-message; 100000000 with --queries)",
    )
    cmd.add_argument(
        "--queries",
        action="store_true",
        help="time every dashboard panel's ClickHouse query over a generated warehouse",
    )
    cmd.add_argument(
        "--runs",
        type=positive_int,
        default=10,
        help="with --queries: timed runs of each query after one warm-up (default 10)",
    )
    cmd.add_argument(
        "--teams",
        type=positive_int,
        default=500,
        help="with --queries: teams in the generated catalog and events (default 500)",
    )
    cmd.add_argument(
        "--per-message",
        type=positive_int,
        default=None,
        help="measure only this many events per Kafka message (default: 1, 10 and 100)",
    )
    cmd.add_argument(
        "--freshness-rate",
        type=positive_int,
        action="append",
        default=None,
        help="events/s sent during a freshness phase; repeat for several phases "
        "(default 10000 and 50000)",
    )
    cmd.add_argument(
        "--warehouse",
        default=None,
        metavar="URL",
        help=(
            "warehouse for the bench (default chdb://$UPTAKE_HOME/bench); the run creates a "
            "database bench_<run id> there and drops it at the end"
        ),
    )
    cmd.set_defaults(func=_bench)

    cmd = subparsers.add_parser(
        "soak",
        help="sustained load at a fraction of the measured throughput, then a burst; a verdict",
        description=(
            "Calibrate the pipeline's throughput on this machine (the worker drains a backlog), "
            "send a fraction of it for --duration while sampling worker RSS, CPU and consumer "
            "lag, then send a burst of --burst x rate x --burst-seconds events on top, and "
            "measure how long it takes to drain. Afterwards the warehouse is compared with what "
            "was sent. Progress to stderr, one JSON line to stdout; exits 1 if the verdict "
            "fails. Uses its own warehouse ($UPTAKE_HOME/soak, replaced at every run) unless "
            "--warehouse is given. Needs a broker."
        ),
    )
    cmd.add_argument(
        "--duration", type=duration, default=300.0, help="sustained phase: 90s, 5m (default 5m)"
    )
    cmd.add_argument(
        "--rate-fraction",
        type=fraction,
        default=0.8,
        help="sustained rate as a fraction of the calibrated throughput (default 0.8)",
    )
    cmd.add_argument(
        "--rate",
        type=positive_int,
        default=None,
        help="sustained rate in events/s instead of calibrating",
    )
    cmd.add_argument(
        "--burst", type=positive_float, default=10.0, help="burst as a multiple of the rate (10)"
    )
    cmd.add_argument(
        "--burst-seconds",
        type=seconds,
        default=5.0,
        help="burst length at that multiple: its volume is burst x rate x seconds (default 5)",
    )
    cmd.add_argument(
        "--keep-load",
        action="store_true",
        help="keep the sustained load running during the burst (drained: lag back within the "
        "bound); default: the load stops and drained means everything is written",
    )
    cmd.add_argument(
        "--sample-every", type=seconds, default=5.0, help="seconds between samples (default 5)"
    )
    cmd.add_argument(
        "--lag-bound",
        type=seconds,
        default=0.0,
        help="sustained lag allowed, in seconds of the rate (default: 3 x the flush interval / "
        "(1 - rate fraction), 15 s at 0.8)",
    )
    cmd.add_argument(
        "--calibration-seconds",
        type=seconds,
        default=20.0,
        help="calibration: seconds the worker runs flat out beside the producer (default 20)",
    )
    cmd.add_argument(
        "--warehouse",
        default=None,
        metavar="URL",
        help="warehouse URL for the soak (default chdb://$UPTAKE_HOME/soak/warehouse)",
    )
    cmd.set_defaults(func=_soak)


def _simulate(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from pipeline.devtools.simulate.org import (
        GroundTruth,
        Organisation,
        Scenario,
        generate,
        with_feedback,
    )
    from pipeline.kafka.producer import ProgressLine, make_producer, produce
    from pipeline.kafka.security import client_kwargs
    from pipeline.kafka.topics import ensure_topics

    settings = Settings.from_env()
    total = args.events or (10_000_000 if args.duration else 100_000)
    ensure_topics(
        settings.kafka.bootstrap,
        {settings.kafka.events_topic: settings.kafka.topic_partitions},
        security=client_kwargs(settings.kafka),
    )
    org = Organisation.synthetic(args.seed, teams=args.teams)
    truth = GroundTruth()
    scenario = None
    if not getattr(args, "flat", False):
        scenario = Scenario(
            lead_time_factor=getattr(args, "lead_time_factor", 0.5),
            change_failure_factor=getattr(args, "change_failure_factor", 0.6),
            restore_factor=getattr(args, "restore_factor", 0.7),
            deploy_frequency_factor=getattr(args, "deploy_frequency_factor", 1.0),
            trend_per_week=getattr(args, "trend_per_week", 0.02),
            weekend_deploy_factor=getattr(args, "weekend_deploy_factor", 0.3),
            incident_caused_share=getattr(args, "incident_caused_share", 0.05),
            recovery_factor=getattr(args, "recovery_factor", 1.0),
            uncounted_api_share=getattr(args, "uncounted_api_share", 0.0),
            churn_capability=getattr(args, "churn_capability", ""),
        )
    events = generate(
        org, total, args.seed, window=timedelta(days=args.days), truth=truth, scenario=scenario
    )
    if getattr(args, "feedback", False):  # the demo: developers also rate what they use
        events = with_feedback(events, args.seed)
    producer = make_producer(
        settings.kafka.bootstrap,
        compression=settings.kafka.compression,
        **client_kwargs(settings.kafka),
    )
    deadline = time.monotonic() + args.duration if args.duration else None
    progress = ProgressLine("simulate: events sent", None if args.duration else total)
    try:
        report = produce(
            producer,
            settings.kafka.events_topic,
            events,
            per_message=args.per_message,
            progress=progress,
            deadline=deadline,
        )
    finally:
        producer.close()
    print(
        f"sent {report.events:,} events in {report.messages:,} messages to "
        f"{settings.kafka.events_topic} ({report.events_per_s:,.0f} events/s)"
    )
    if args.truth:
        write_truth(args.truth, truth)
    return 0


def write_truth(path: Path, truth: object) -> None:
    from pipeline.devtools.simulate.org import GroundTruth

    assert isinstance(truth, GroundTruth)
    rows = [
        {"team": team, "event_type": event_type, "events": count}
        for (team, event_type), count in sorted(truth.by_team_type.items())
    ]
    out: dict[str, object] = {"total": truth.total, "by_team_type": rows}
    if truth.scenario is not None:
        out["scenario"] = dict(vars(truth.scenario))
        out["effects"] = truth.scenario.effects()
        out["planned_adoption"] = [
            {"team": team, "capability": capability, "at": at.isoformat()}
            for (team, capability), at in sorted(truth.planned_adoption.items())
        ]
        out["churned"] = [
            {"team": team, "capability": capability, "stopped_at": at.isoformat()}
            for (team, capability), at in sorted(truth.churned.items())
        ]
        uncounted: dict[tuple[str, str], int] = {}
        for (team, capability, _day), n in truth.uncounted.items():
            uncounted[team, capability] = uncounted.get((team, capability), 0) + n
        out["uncounted_calls"] = [
            {"team": team, "capability": capability, "events": n}
            for (team, capability), n in sorted(uncounted.items())
        ]
    path.write_bytes(msgspec.json.encode(out))


def _worker(args: argparse.Namespace) -> int:
    from pipeline.ingest.run import run_worker

    settings = Settings.from_env()
    return run_worker(settings, exit_when_idle_s=args.exit_when_idle, seams=_faults(settings))


def _writer(args: argparse.Namespace) -> int:
    from pipeline.ingest.writer import run_writer

    settings = Settings.from_env()
    return run_writer(settings, exit_when_idle_s=args.exit_when_idle, seams=_faults(settings))


def _faults(settings: Settings) -> Seams:
    """Fault injection, wired in only when a UPTAKE_CHAOS_* setting is present."""
    from pipeline.devtools import faults
    from pipeline.ingest.seams import NONE

    return faults.seams_for(settings.faults) if settings.faults.present else NONE


def _soak(args: argparse.Namespace) -> int:
    from pipeline.devtools.soak import SoakConfig, main

    config = SoakConfig(
        duration_s=args.duration,
        rate_fraction=args.rate_fraction,
        rate=args.rate,
        burst=args.burst,
        burst_s=args.burst_seconds,
        keep_load=args.keep_load,
        sample_every_s=args.sample_every,
        lag_bound_s=args.lag_bound,
        calibration_s=args.calibration_seconds,
    )
    return main(config, args.warehouse)


def _bench(args: argparse.Namespace) -> int:
    from pipeline.devtools.bench import FRESHNESS_RATES, BenchConfig, main

    if args.queries:
        from pipeline.devtools import bench_queries

        return bench_queries.main(
            bench_queries.QueryBenchConfig(
                events=args.events or 100_000_000, runs=args.runs, teams=args.teams
            ),
            args.warehouse,
        )
    config = BenchConfig.of(
        events=args.events,
        per_message=args.per_message,
        freshness_rates=tuple(args.freshness_rate or FRESHNESS_RATES),
    )
    return main(config, args.warehouse)


def _demo(args: argparse.Namespace) -> int:
    from pipeline.cli.data import format_table
    from pipeline.devtools.broker import LocalBroker
    from pipeline.kafka.probe import broker_answers
    from pipeline.warehouse.connection import opened

    settings = Settings.from_env()
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    step = _Steps()
    step("Kafka")
    if broker_answers(settings.kafka.bootstrap):
        print(f"  a broker answers at {settings.kafka.bootstrap}")
    else:
        host, _, port = settings.kafka.bootstrap.split(",")[0].rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            print(f"error: no broker answers at {settings.kafka.bootstrap}", file=sys.stderr)
            return 1
        LocalBroker(settings.broker_home, port=int(port)).start()
    # The embedded warehouse is one process at a time: migrate and worker run in processes of
    # their own, and this one opens the warehouse only after the worker finished.
    step("warehouse")
    migrated = subprocess.run([sys.executable, "-m", "pipeline.cli", "migrate"], check=False)
    if migrated.returncode:
        return migrated.returncode
    step("worker")
    # The demo sends DEMO_DAYS of history; the live lateness limit (7 days) would reject most
    # of it, so this worker accepts events as old as the demo's window.
    worker_env = dict(os.environ)
    history_s = (DEMO_DAYS + 2) * 86_400
    if settings.ingest.max_lateness_s < history_s:
        worker_env["UPTAKE_MAX_LATENESS_S"] = str(history_s)
    worker = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "worker", "--exit-when-idle", "8"],
        env=worker_env,
    )
    try:
        step(f"simulate {args.events:,} events (seed {seed})")
        code = _simulate(
            argparse.Namespace(
                events=args.events,
                duration=None,
                seed=seed,
                teams=12,
                days=float(DEMO_DAYS),
                per_message=100,
                truth=None,
                feedback=True,
            )
        )
        if code:
            return code
        step("waiting for the worker to write everything (it stops 8 s after the last event)")
        code = worker.wait()
    except BaseException:
        worker.terminate()
        worker.wait()
        raise
    if code:
        print(f"error: the worker exited with status {code}", file=sys.stderr)
        return code
    report = settings.home / "report.html"
    step("HTML report")
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--output", str(report)], check=False
    )
    with opened(settings.warehouse.url) as warehouse:
        for title, sql in DEMO_SUMMARIES:
            step(title)
            names, rows = warehouse.query(sql)
            print(format_table(names, rows))
        totals = warehouse.rows(
            "SELECT (SELECT count() FROM events), (SELECT count() FROM rejected_events)"
        )[0]
    print(f"\n{totals[0]:,} events in the warehouse, {totals[1]:,} rejected.")
    print(NEXT_STEPS.format(url=settings.warehouse.url, report=report))
    return 0


DEMO_DAYS = 56

ADOPTION_SQL = """
SELECT
    f.capability AS capability,
    f.teams_used AS teams_using,
    f.teams_activated AS activated,
    f.teams_active_7d AS active_7d,
    f.teams_churned_now AS churned,
    t.targets AS target_teams
FROM adoption_funnel AS f
LEFT JOIN
(
    -- The target teams of the newest day with data, as every adoption rate counts them.
    SELECT capability, argMax(targets, day) AS targets
    FROM capability_targets_daily_all
    GROUP BY capability
) AS t USING (capability)
ORDER BY teams_using DESC, capability
"""

IMPACT_SQL = """
SELECT
    capability,
    teams,
    round(lead_time_median_s_before / 3600, 1) AS lead_time_h_before,
    round(lead_time_median_s_after / 3600, 1) AS lead_time_h_after,
    round(change_failure_rate_before, 3) AS change_failure_before,
    round(change_failure_rate_after, 3) AS change_failure_after,
    round(time_to_restore_median_s_before / 3600, 1) AS restore_h_before,
    round(time_to_restore_median_s_after / 3600, 1) AS restore_h_after
FROM impact_summary
WHERE capability IN ('deploy-pipeline', 'incident-response')
ORDER BY capability
"""


SUMMARY_SQL = """
SELECT
    team,
    countIf(event_type = 'api_call') AS api_calls,
    countIf(event_type = 'deploy') AS deploys,
    countIf(event_type = 'model_training') AS trainings,
    countIf(event_type = 'incident') AS incidents,
    uniqExact(capability) AS capabilities,
    formatDateTime(min(occurred_at), '%Y-%m-%d %H:%i') AS first_seen,
    formatDateTime(max(occurred_at), '%Y-%m-%d %H:%i') AS last_seen
FROM events
GROUP BY team
ORDER BY count() DESC
"""

FEEDBACK_SQL = """
SELECT
    capability,
    formatDateTime(month, '%Y-%m') AS in_month,
    scale,
    responses,
    round(if(scale = 'csat', csat * 100, nps)) AS score,
    round(response_rate * 100, 1) AS response_rate_pct
FROM feedback_monthly
WHERE capability IN (SELECT name FROM capability_catalog FINAL WHERE declared = 1)
ORDER BY capability, in_month, scale
"""

DEMO_SUMMARIES = (
    ("adoption per capability (lifecycle: docs/lifecycle.md)", ADOPTION_SQL),
    ("delivery before vs after adoption (DORA, docs/analysts.md)", IMPACT_SQL),
    ("developer feedback: CSAT % satisfied or NPS, response rate (docs/analysts.md)", FEEDBACK_SQL),
    ("usage per team", SUMMARY_SQL),
)

NEXT_STEPS = """
Where to look next:
  uptake query "SELECT capability, uniqExact(team) AS teams FROM events GROUP BY capability"
  uptake query "SELECT reason, count() FROM rejected_events GROUP BY reason"
  uptake worker            keep consuming (metrics on http://127.0.0.1:9464/metrics)
  uptake settings          every setting and its environment variable
  open {report}   the charts (uptake report --help)
The warehouse is {url}; docs/analysts.md explains the tables and views."""


class _Steps:
    def __init__(self) -> None:
        self.n = 0
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        self.n += 1
        elapsed = time.monotonic() - self.started
        print(f"\n[{self.n}] {text}  (+{elapsed:.0f}s)", flush=True)
