"""`uptake bench --queries`: every dashboard panel's ClickHouse query timed over a large warehouse.

1. fill: a fresh database of the run's own (named and removed as `uptake bench` does,
   docs/benchmarks.md "Repeated runs"), migrated with the shipped migrations, gets catalogs for
   `teams` teams and `capabilities` capabilities, then `events` events over `days` days written
   by ClickHouse's own generators (`INSERT INTO events ... SELECT ... FROM numbers()`, in
   chunks), so the materialized views fill the rollups and facts as the worker's inserts do.
   Bodies (`data`) are JSON as emitters send them (pipeline/devtools/simulate/org.py): api
   calls (with outcomes for business capabilities), deploys with commits, model trainings,
   incidents and feedback. The lifecycle milestones the worker's agent would write are derived
   from the filled rollups (first use, activation after 7 days of use).
2. queries: every ClickHouse panel query of every dashboard (`pipeline.dashboards.panel_queries`,
   as Grafana sends them with the dashboard's defaults, ending now), run once to warm up and
   then `runs` times; p50/p95 per query.
Prints progress and a table (slowest first) to stderr, one JSON line to stdout.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.catalog.store import CAPABILITY_COLUMNS
from pipeline.config.settings import Settings
from pipeline.dashboards.generate import DASHBOARDS
from pipeline.dashboards.panel_queries import (
    PanelQuery,
    default_variables,
    has_clickhouse_targets,
    panel_queries,
    time_range_of,
)
from pipeline.devtools.bench import BenchRun, _remove_leftovers
from pipeline.warehouse.connection import Warehouse, connect, quote_identifier, with_database
from pipeline.warehouse.migrations import MIGRATIONS_DIR, migrate


@dataclass(frozen=True)
class QueryBenchConfig:
    events: int = 100_000_000
    runs: int = 10
    days: int = 90
    teams: int = 500
    capabilities: int = 30
    chunk: int = 2_000_000  # a 5M-row chunk held 7 GB of RSS in the views; 2M stays lower
    users_per_team: int = 20
    seed: int = 15


def _say(text: str) -> None:
    print(f"bench --queries: {text}", file=sys.stderr, flush=True)


# --- the catalogs ----------------------------------------------------------------------------

_EVENT_TYPES = ("api_call", "deploy", "model_training", "incident")


def capability_kinds(count: int) -> list[tuple[str, str, str]]:
    """(name, event type, platform) of each capability: about half api calls, the rest split."""
    kinds = []
    api = max(1, count * 16 // 30)
    deploy = max(1, count * 6 // 30)
    training = max(1, count * 4 // 30)
    for i in range(count):
        if i < api:
            platform_type = (
                "business-capability"
                if i >= api - 3
                else "data-ml"
                if i >= api - 6
                else "developer-infrastructure"
            )
            kinds.append((f"cap-{i:02d}", "api_call", platform_type))
        elif i < api + deploy:
            kinds.append((f"cap-{i:02d}", "deploy", "developer-infrastructure"))
        elif i < api + deploy + training:
            kinds.append((f"cap-{i:02d}", "model_training", "data-ml"))
        else:
            kinds.append((f"cap-{i:02d}", "incident", "developer-infrastructure"))
    return kinds


def _fill_catalogs(warehouse: Warehouse, config: QueryBenchConfig, start: datetime) -> None:
    """Teams under 25 groups under one root, their services and users; the capabilities."""
    since = f"toDateTime64('{start - timedelta(days=30):%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
    seed, groups, users = config.seed, 25, config.users_per_team
    user_key = _user_key(f"intDiv(number, {users})", f"number % {users}", seed)
    warehouse.command(
        f"""
        INSERT INTO team_catalog (kind, name, team, parent, valid_from)
        SELECT 'team', 'org', 'org', '', {since}
        UNION ALL
        SELECT 'team', g, g, 'org', {since}
        FROM (SELECT concat('group-', leftPad(toString(number), 2, '0')) AS g
              FROM numbers({groups}))
        UNION ALL
        SELECT 'team', t, t, concat('group-', leftPad(toString(number % {groups}), 2, '0')),
               {since}
        FROM (SELECT number, concat('team-', leftPad(toString(number), 3, '0')) AS t
              FROM numbers({config.teams}))
        UNION ALL
        SELECT 'service', concat(t, '-svc', toString(k)), t, '', {since}
        FROM (SELECT concat('team-', leftPad(toString(intDiv(number, 3)), 3, '0')) AS t,
                     number % 3 AS k
              FROM numbers({config.teams * 3}))
        UNION ALL
        SELECT 'user', {user_key},
               concat('team-', leftPad(toString(intDiv(number, {users})), 3, '0')), '', {since}
        FROM numbers({config.teams * users})
        """
    )
    rows = []
    loaded_at = datetime.now(UTC)
    kinds = capability_kinds(config.capabilities)
    for name, event_type, platform_type in kinds:
        # data-ml capabilities target the first fifth of the teams; the rest every team.
        targets = (
            [f"team-{t:03d}" for t in range(config.teams // 5)]
            if platform_type == "data-ml"
            else []
        )
        north_star = platform_type == "business-capability"
        rows.append(
            [
                name,
                platform_type,
                f"platform-{event_type}",
                f"bench capability {name}",
                [event_type],
                [f"api-{name}"] if event_type == "api_call" else [],
                targets,
                f"{name} decisions" if north_star else "",
                "risk_decision" if north_star else "",
                "decision_rate" if north_star else "",
                "approve" if north_star else "",
                "ratio" if north_star else "",
                1,
                loaded_at,
            ]
        )
    warehouse.insert_columns(
        "capability_catalog", list(zip(*rows, strict=True)), CAPABILITY_COLUMNS
    )


def _user_key(team_index: str, member: str, seed: int) -> str:
    """SQL: the 32-hex pseudonym of a team's member (events.user_key's shape)."""
    return f"lower(hex(MD5(concat(toString({team_index}), '/', toString({member}), '/{seed}'))))"


# --- the events ------------------------------------------------------------------------------


def events_sql(config: QueryBenchConfig, start_ms: int, first: int, count: int) -> str:
    """INSERT ... SELECT of events `first` ... `first + count - 1` (deterministic in the seed).

    A row's hash picks its kind (88% api calls, 6% deploys, 2% trainings, 1.5% incidents,
    2.5% feedback), its capability of that kind (skewed to the first ones), its team (skewed to
    the first ones), and a time between the day the team adopted the capability (its own hash,
    anywhere in the window; late adopters in the last tenth) and the end of the window.
    """
    kinds = capability_kinds(config.capabilities)
    by_type = {t: [i for i, (_, kind, _) in enumerate(kinds) if kind == t] for t in _EVENT_TYPES}
    api, deploy, training, incident = (by_type[t] for t in _EVENT_TYPES)
    business = [i for i, (_, _, p) in enumerate(kinds) if p == "business-capability"]
    # The window starts an hour after `start_ms`: no row reaches the api calls' 90-day TTL
    # (0003) while the bench runs, so merges delete nothing.
    window_ms = config.days * 86_400_000 - 3_600_000
    first_ms = start_ms + 3_600_000

    def b(bits: int) -> str:  # the row's hash shifted: independent draws from one hash
        return f"bitShiftRight(h, {bits})"

    def iso(at: str) -> str:
        return f"formatDateTime({at}, '%Y-%m-%dT%H:%i:%SZ', 'UTC')"

    def pick(indices: list[int], bits: str) -> str:
        return f"[{', '.join(map(str, indices))}][1 + {bits} % {len(indices)}]"

    teams, users, seed = config.teams, config.users_per_team, config.seed
    started = iso(f"at - toIntervalSecond(60 + {b(39)} % 1800)")
    committed_1 = iso(f"at - toIntervalMinute(30 + {b(41)} % 4000)")
    committed_2 = iso(f"at - toIntervalMinute(60 + {b(43)} % 6000)")
    opened = iso(f"at - toIntervalMinute(5 + {b(38)} % 600)")
    user_key = _user_key("team_i", f"{b(45)} % {users}", seed)
    return f"""
INSERT INTO events
    (event_id, event_type, schema_version, occurred_at, source, team, reported_team, service,
     user_key, capability, data, _topic, _partition, _offset)
SELECT
    generateUUIDv4(n) AS event_id,
    kind AS event_type,
    1 AS schema_version,
    at AS occurred_at,
    'uptake-bench-queries' AS source,
    team,
    team AS reported_team,
    service,
    if(kind = 'incident', '', {user_key}) AS user_key,
    capability,
    multiIf(
        kind = 'api_call', concat(
            '{{"api":"', if({b(52)} % 20 = 0, 'misc', concat('api-', capability)),
            '","operation":"GET /v1/items/{{id}}","status_code":',
            toString(multiIf(h % 1000 < 20, 500, h % 1000 < 50, 404, 200)),
            ',"latency_ms":', toString(round(exp(3 + ({b(33)} % 1000) / 600), 2)),
            if(has([{", ".join(map(str, business))}], cap_i), concat(
                ',"outcome":{{"name":"risk_decision","decision":"',
                if({b(36)} % 100 < 85, 'approve', 'decline'),
                '","value":', toString(10 + {b(38)} % 5000), ',"unit":"EUR"}}'), ''),
            '}}'),
        kind = 'deploy', concat(
            '{{"deployment_id":"dep-', toString(n), '","service":"', service,
            '","environment":"', if({b(36)} % 10 < 7, 'production', 'staging'),
            '","status":"', multiIf({b(37)} % 100 < 85, 'succeeded',
                                    {b(37)} % 2 = 0, 'failed', 'rolled_back'),
            '","started_at":"', {started},
            '","commits":[{{"sha":"', lower(hex(SHA1(toString(n)))),
            '","committed_at":"', {committed_1},
            '"}},{{"sha":"', lower(hex(SHA1(toString(n + 1)))),
            '","committed_at":"', {committed_2}, '"}}]}}'),
        kind = 'model_training', concat(
            '{{"run_id":"run-', toString(n), '","model":"', team, '-ranker","status":"',
            multiIf({b(36)} % 100 < 80, 'succeeded', {b(36)} % 100 < 95, 'failed',
                    'cancelled'),
            '","duration_s":', toString(120 + {b(38)} % 14000),
            ',"gpu_hours":', toString(round(({b(38)} % 14000) / 3600 * ({b(50)} % 4), 3)),
            if({b(36)} % 100 < 24, concat(',"registered_model":"', team, '-ranker"'), ''),
            '}}'),
        kind = 'incident', concat(
            '{{"incident_id":"inc-', toString(n), '","service":"', service,
            '","severity":"sev', toString(1 + {b(36)} % 4), '","status":"resolved",',
            '"opened_at":"', {opened},
            '","resolved_at":"', {iso("at")}, '"}}'),
        concat(
            '{{"scale":"', if({b(36)} % 2 = 0, 'csat', 'nps'), '","score":',
            toString(if({b(36)} % 2 = 0, 1 + {b(37)} % 5, {b(37)} % 11)),
            if({b(40)} % 3 = 0, ',"comment":"Fast once it works."', ''), '}}')
    ) AS data,
    'uptake.bench.queries' AS _topic,
    toUInt32(n % 6) AS _partition,
    n AS _offset
FROM
(
    SELECT
        number AS n,
        cityHash64(number, {seed}) AS h,
        h % 1000 AS roll,
        multiIf(roll < 880, 'api_call', roll < 940, 'deploy', roll < 960, 'model_training',
                roll < 975, 'incident', 'feedback') AS kind,
        -- squared: the first capabilities and teams carry most of the traffic
        toUInt32(intDiv(({b(10)} % 64) * ({b(16)} % 64), 64)) AS skew,
        multiIf(
            kind = 'api_call' OR kind = 'feedback', {pick(api, "skew")},
            kind = 'deploy', {pick(deploy, b(10))},
            kind = 'model_training', {pick(training, b(10))},
            {pick(incident, b(10))}) AS cap_i,
        toUInt32(intDiv(({b(20)} % 1000) * ({b(30)} % 1000), 1000000 / {teams})) % {teams}
            AS team_i,
        concat('team-', leftPad(toString(team_i), 3, '0')) AS team,
        concat(team, '-svc', toString({b(50)} % 3)) AS service,
        concat('cap-', leftPad(toString(cap_i), 2, '0')) AS capability,
        cityHash64(team_i, cap_i, {seed}) % 1000 AS adopted_permille,
        toInt64(least(adopted_permille, 900) * {window_ms} / 1000) AS adopted_ms,
        fromUnixTimestamp64Milli(toInt64({first_ms}) + adopted_ms
            + toInt64(({b(44)} % 1000000) * ({window_ms} - adopted_ms) / 1000000), 'UTC') AS at
    FROM numbers({first}, {count})
)
"""


def _milestones_sql() -> list[str]:
    """What the worker's lifecycle agent would have written for the filled use days."""
    return [
        """
        INSERT INTO adoption_milestones
            (team, capability, milestone, occurred_at, episode, retracted, detected_at)
        SELECT team, capability, m.1, m.2, 1, 0, now64(3)
        FROM
        (
            SELECT team, capability, min(day) AS first, count() AS days
            FROM capability_use_days GROUP BY team, capability
        )
        ARRAY JOIN arrayFilter(x -> x.2 != toDate(0),
            [('first_use', first), ('activated', if(days >= 7, first + 7, toDate(0)))]) AS m
        """,
        """
        INSERT INTO adoption_lifecycle
            (team, capability, state, state_since, first_use, activated_at, churned_at,
             last_active, episode, active_days, updated_at)
        SELECT team, capability, if(days >= 7, 'activated', 'first_use'),
               if(days >= 7, first + 7, first), first, if(days >= 7, first + 7, toDate(0)),
               toDate(0), last, 1, days, now64(3)
        FROM
        (
            SELECT team, capability, min(day) AS first, max(day) AS last, count() AS days
            FROM capability_use_days GROUP BY team, capability
        )
        """,
    ]


def fill(
    warehouse: Warehouse,
    config: QueryBenchConfig,
    end: datetime,
    progress: Callable[[str], None] = _say,
) -> float:
    """Catalogs, `config.events` events ending at `end`, milestones; returns the seconds taken."""
    start = end - timedelta(days=config.days)
    started = time.perf_counter()
    _fill_catalogs(warehouse, config, start)
    start_ms = int(start.timestamp() * 1000)
    for first in range(0, config.events, config.chunk):
        count = min(config.chunk, config.events - first)
        warehouse.command(events_sql(config, start_ms, first, count))
        done = first + count
        elapsed = time.perf_counter() - started
        progress(
            f"filled {done:,} of {config.events:,} events ({elapsed:.0f}s, "
            f"{done / elapsed:,.0f} events/s)"
        )
    for sql in _milestones_sql():
        warehouse.command(sql)
    return time.perf_counter() - started


def table_sizes(warehouse: Warehouse) -> dict[str, dict[str, int]]:
    """Rows, active parts and bytes on disk of each table of the database that has data."""
    rows = warehouse.rows(
        "SELECT table, sum(rows), count(), sum(bytes_on_disk) FROM system.parts "
        "WHERE database = currentDatabase() AND active GROUP BY table ORDER BY 4 DESC"
    )
    return {t: {"rows": int(r), "parts": int(p), "bytes": int(b)} for t, r, p, b in rows}


# --- the queries -----------------------------------------------------------------------------


def dashboard_queries(warehouse: Warehouse, now: datetime) -> list[PanelQuery]:
    """Every ClickHouse panel query of every shipped dashboard, as Grafana sends it at `now`."""

    def options_of(sql: str) -> list[str] | str:
        try:
            return [str(row[0]) for row in warehouse.rows(sql)]
        except Exception as exc:  # the variable's error is reported, as the panel tests do
            return str(exc).strip()[:500]

    queries = []
    for item in DASHBOARDS:
        dashboard = item.build().to_json()
        if not has_clickhouse_targets(dashboard):
            continue
        time_range = time_range_of(dashboard, now)
        variables, problems = default_variables(dashboard, time_range, options_of)
        if problems:
            raise RuntimeError(f"{item.filename}: {'; '.join(problems)}")
        queries.extend(panel_queries(item.filename, dashboard, time_range, variables))
    return queries


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def time_queries(
    warehouse: Warehouse, queries: list[PanelQuery], runs: int
) -> dict[str, dict[str, Any]]:
    """Each query once to warm up, then `runs` times: p50/p95/max in ms and the rows returned."""
    timings: dict[str, dict[str, Any]] = {}
    for query in queries:
        result = warehouse.client.query(query.sql)
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            warehouse.client.query(query.sql)
            seconds.append(time.perf_counter() - started)
        timings[query.key] = {
            "dashboard": query.dashboard,
            "panel_id": query.panel["id"],
            "ref_id": query.ref_id,
            "p50_ms": round(_percentile(seconds, 0.5) * 1000, 1),
            "p95_ms": round(_percentile(seconds, 0.95) * 1000, 1),
            "max_ms": round(max(seconds) * 1000, 1),
            "rows": len(result.result_rows),
        }
    return timings


def summary(timings: dict[str, dict[str, Any]], limit_ms: float = 100.0) -> dict[str, Any]:
    slowest = max(timings, key=lambda k: timings[k]["p95_ms"])
    return {
        "panel_queries": len(timings),
        "over_limit": sorted(k for k, t in timings.items() if t["p95_ms"] > limit_ms),
        "limit_ms": limit_ms,
        "slowest": {"query": slowest, **timings[slowest]},
    }


def print_table(timings: dict[str, dict[str, Any]]) -> None:
    _say(f"{'p50 ms':>9} {'p95 ms':>9} {'rows':>7}  query")
    for key, t in sorted(timings.items(), key=lambda kv: -kv[1]["p95_ms"]):
        _say(f"{t['p50_ms']:9.1f} {t['p95_ms']:9.1f} {t['rows']:7d}  {key}")


def run_bench_queries(
    config: QueryBenchConfig,
    warehouse_url: str | None = None,
    *,
    migrations: Path = MIGRATIONS_DIR,
) -> dict[str, Any]:
    """Fill a database of this run's own, time every panel query, drop the database.

    As `uptake bench`: the default warehouse is the bench-only folder ($UPTAKE_HOME/bench),
    cleared of earlier runs first; with `warehouse_url` only this run's database is touched.
    """
    run = BenchRun.new()
    settings = Settings.from_env()
    base_url = warehouse_url or f"chdb://{(settings.home / 'bench').resolve()}"
    warehouse = connect(with_database(base_url, run.database), create_database=True)
    try:
        if warehouse_url is None:
            _remove_leftovers(warehouse, settings.kafka.bootstrap)
        migrate(warehouse, migrations, progress=lambda line: None)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        _say(f"run {run.run_id}: filling {config.events:,} events over {config.days} days")
        fill_seconds = fill(warehouse, config, end)
        sizes = table_sizes(warehouse)
        queries = dashboard_queries(warehouse, end)
        _say(f"timing {len(queries)} panel queries, {config.runs} runs each after one warm-up")
        timings = time_queries(warehouse, queries, config.runs)
        print_table(timings)
        return {
            "events": config.events,
            "days": config.days,
            "teams": config.teams,
            "capabilities": config.capabilities,
            "runs": config.runs,
            "fill_s": round(fill_seconds, 1),
            "fill_events_per_s": round(config.events / fill_seconds),
            **summary(timings),
            "queries": timings,
            "tables": sizes,
            "warehouse": warehouse.kind,
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "machine": platform.machine(),
            "python": platform.python_version(),
        }
    finally:
        try:
            warehouse.command(f"DROP DATABASE IF EXISTS {quote_identifier(run.database)} SYNC")
        finally:
            warehouse.close()


def main(config: QueryBenchConfig, warehouse_url: str | None = None) -> int:
    result = run_bench_queries(config, warehouse_url)
    print(json.dumps(result), flush=True)
    return 0
