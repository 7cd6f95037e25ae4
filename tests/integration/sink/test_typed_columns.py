"""The typed columns of `events` (migration 0016) hold what their DEFAULTs compute from `data`.

The same events go into three databases of the real engine:
- `worker`: through the sink, which sends every typed column from the decoded structs;
- `data_only`: `INSERT ... SELECT` of the envelope and `data` only, so the DEFAULTs compute them;
- `upgraded`: the same data-only insert into a warehouse at 0015 (the JSON-parsing views of
  0003/0008/0009 aggregate it), then 0016 applied to it (older rows read the DEFAULTs).
Every materialized view's target and the feedback view must hold the same rows in all three.
Negative control: a copy of 0016 with one DEFAULT reading the wrong field must fail the check.
"""

from __future__ import annotations

import math
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.contract.decode import BatchDecoder, DecodedBatch, Limits, SourceMessage
from pipeline.devtools.simulate.org import Organisation, Scenario, generate, with_feedback
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.sink.clickhouse import TYPED_COLUMNS, ClickHouseSink
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import MIGRATIONS_DIR, migrate

pytestmark = pytest.mark.integration

TYPED = [name for name, _ in TYPED_COLUMNS]
ENVELOPE = (
    "event_id, event_type, schema_version, occurred_at, source, team, reported_team, service, "
    "user_key, capability, data, _topic, _partition, _offset"
)
_ROLLUP = """
SELECT event_type, capability, team, bucket, sum(events), uniqExactMerge(users), sum(errors),
       min(first_seen), max(last_seen), quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(latency_ms),
       sum(latency_ms_sum), sumMap(statuses), sum(production_deploys), sum(production_failures),
       sum(models_registered), sum(gpu_hours), sum(durations), sum(duration_s_sum),
       sumMap(outcome_count), sumMap(outcome_value)
FROM {table} GROUP BY event_type, capability, team, bucket ORDER BY ALL
"""
# Every target of a view reading `events` (directly or through a rollup), read in one order.
CONTENT = {
    "usage_minute": _ROLLUP.format(table="usage_minute"),
    "usage_hour": _ROLLUP.format(table="usage_hour"),
    "usage_day": _ROLLUP.format(table="usage_day"),
    "deployments": "SELECT * FROM deployments FINAL ORDER BY event_id",
    "model_trainings": "SELECT * FROM model_trainings FINAL ORDER BY event_id",
    "incidents": "SELECT * FROM incidents FINAL ORDER BY event_id",
    "usage_api_day": "SELECT team, capability, event_type, api, day, sum(events), "
    "min(first_seen), max(last_seen) FROM usage_api_day GROUP BY ALL ORDER BY ALL",
    "usage_user_day": "SELECT DISTINCT * FROM usage_user_day ORDER BY ALL",
    "feedback_responses": "SELECT * FROM feedback_responses ORDER BY event_id",
    "typed columns": f"SELECT event_id, {', '.join(TYPED)} FROM events FINAL ORDER BY event_id",
}
NOW = datetime.now(UTC).replace(microsecond=0)


def _edge_cases() -> list[dict[str, Any]]:
    """What the simulator may not send: offsets other than UTC, microseconds, absent optionals."""

    def event(kind: str, data: dict[str, Any], minutes: int) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "event_type": kind,
            "schema_version": 1,
            "occurred_at": (NOW - timedelta(minutes=minutes)).isoformat(),
            "source": "edge",
            "capability": "edge-cases",
            "team": "edge",
            "service": "edge-svc",
            "user": f"edge-{minutes}",
            "data": data,
        }

    return [
        event(
            "deploy",
            {
                "deployment_id": "d-offset",
                "service": "edge-svc",
                "environment": "production",
                "status": "rolled_back",
                "started_at": "2026-01-02T03:04:05.678901+02:00",
                "commits": [
                    {"sha": "abcdef1", "committed_at": "2026-01-01T23:59:59.999999-05:30"},
                    {"sha": "abcdef2", "committed_at": "2026-01-01T00:00:00Z"},
                ],
            },
            1,
        ),
        event(
            "deploy",
            {
                "deployment_id": "d-bare",
                "service": "edge-svc",
                "environment": "staging",
                "status": "succeeded",
            },
            2,
        ),
        event(
            "incident",
            {
                "incident_id": "i-open",
                "service": "edge-svc",
                "severity": "sev2",
                "status": "opened",
                "opened_at": "2026-01-02T03:04:05.5+01:00",
            },
            3,
        ),
        event(
            "incident",
            {
                "incident_id": "i-done",
                "service": "edge-svc",
                "severity": "sev1",
                "status": "resolved",
                "opened_at": "2026-01-02T03:04:05.0005Z",
                "resolved_at": "2026-01-02T05:00:00.123456Z",
                "caused_by_deployment": "d-offset",
            },
            4,
        ),
        event(
            "api_call",
            {
                "api": "edge.v1",
                "operation": "get",
                "status_code": 503,
                "latency_ms": 0.1,
                "outcome": {"name": "risk", "value": 12.5},
            },
            5,
        ),
        event(
            "model_training",
            {"run_id": "r1", "model": "m", "status": "failed", "duration_s": 1.0005},
            6,
        ),
        event("feedback", {"scale": "nps", "score": 0}, 7),
    ]


def _batch(events: list[dict[str, Any]]) -> DecodedBatch:
    messages = [msgspec.json.encode(e) for e in events]
    decoded = BatchDecoder(Limits(max_lateness=timedelta(days=400))).decode(
        [SourceMessage("events", 0, offset, m) for offset, m in enumerate(messages)]
    )
    assert not decoded.rejections, decoded.rejections[:3]
    decoded.user_keys = Pseudonymizer(b"k" * 32).keys([e.user for e in decoded.events])
    return decoded


@pytest.fixture(scope="module")
def batch() -> DecodedBatch:
    org = Organisation.synthetic(3, teams=8)
    simulated = generate(
        org, 4_000, 5, end=NOW, window=timedelta(days=40), scenario=Scenario(deploy_share=0.2)
    )
    events = [*with_feedback(simulated, 5, every=20), *_edge_cases()]
    kinds = {e["event_type"] for e in events}
    assert kinds == {"api_call", "deploy", "model_training", "incident", "feedback"}, kinds
    return _batch(events)


@pytest.fixture
def databases(inprocess_warehouse_url: str) -> Iterator[dict[str, Warehouse]]:
    opened: dict[str, Warehouse] = {}
    try:
        for name in ("worker", "data_only", "upgraded", "broken"):
            opened[name] = connect(f"{inprocess_warehouse_url}_{name}", create_database=True)
        yield opened
    finally:
        for warehouse in opened.values():
            warehouse.close()


def _migrations(tmp_path: Path, upto: int, break_default: tuple[str, str] | None = None) -> Path:
    folder = tmp_path / f"migrations-{upto}-{bool(break_default)}"
    folder.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) <= upto:
            shutil.copy(path, folder / path.name)
    if break_default is not None:
        typed = folder / "0016_typed_event_columns.sql"
        text = typed.read_text()
        assert text.count(break_default[0]) == 1, break_default
        typed.write_text(text.replace(*break_default))
    return folder


def _copy_data_only(source: Warehouse, target: Warehouse) -> None:
    target.command(
        f"INSERT INTO {target.database}.events ({ENVELOPE}) "
        f"SELECT {ENVELOPE} FROM {source.database}.events ORDER BY _offset"
    )


def _rounded(value: Any) -> Any:
    """Sums of floats depend on the order rows were added in: compare them to 1e-9. NaN (the
    quantiles of no latency) compares equal to itself."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else round(value, 9)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _content(warehouse: Warehouse) -> dict[str, list[Any]]:
    return {name: _rounded(warehouse.rows(sql)) for name, sql in CONTENT.items()}


def _differences(expected: dict[str, list[Any]], got: dict[str, list[Any]]) -> list[str]:
    return [name for name in CONTENT if expected[name] != got[name]]


def test_worker_columns_and_defaults_feed_identical_views(
    databases: dict[str, Warehouse], batch: DecodedBatch, tmp_path: Path
) -> None:
    worker, data_only, upgraded = databases["worker"], databases["data_only"], databases["upgraded"]
    for warehouse in (worker, data_only):
        migrate(warehouse, progress=lambda _: None)
    migrate(upgraded, _migrations(tmp_path, 15), progress=lambda _: None)

    assert ClickHouseSink(worker).write(batch) == {"events": len(batch.events)}
    _copy_data_only(worker, data_only)
    _copy_data_only(worker, upgraded)  # aggregated by the views that parse `data`
    migrate(upgraded, progress=lambda _: None)  # 0016 on a warehouse holding rows

    views = worker.rows(
        "SELECT create_table_query FROM system.tables "
        f"WHERE database = '{worker.database}' AND engine = 'MaterializedView'"
    )
    targets = {re.search(r" TO \S+?\.(\w+) ", row[0])[1] for row in views}  # type: ignore[index]
    assert targets and targets <= set(CONTENT), f"a view's target is not compared: {targets}"
    expected = _content(worker)
    for name, rows in expected.items():
        assert rows, f"{name} is empty: the comparison would prove nothing"
    # The typed columns hold values, not only defaults, for every type.
    [(outcomes, commits, resolved, comments, gpu)] = worker.rows(
        "SELECT countIf(outcome_name != ''), countIf(notEmpty(commit_times)), "
        "countIf(resolved_at IS NOT NULL), countIf(comment != ''), sum(gpu_hours) FROM events"
    )
    assert min(outcomes, commits, resolved, comments) > 0 and gpu > 0
    assert _differences(expected, _content(data_only)) == []
    assert _differences(expected, _content(upgraded)) == []


@pytest.mark.parametrize(
    ("broken", "caught_in"),
    [
        (
            ("toUInt16(JSONExtractInt(data, 'status_code'))", "toUInt16(0)"),
            {"usage_minute", "usage_hour", "usage_day", "typed columns"},
        ),
        (
            ("JSONExtractString(data, 'resolved_at')", "JSONExtractString(data, 'opened_at')"),
            {"usage_minute", "usage_hour", "usage_day", "incidents", "typed columns"},
        ),
    ],
    ids=["status_code", "resolved_at"],
)
def test_a_wrong_default_is_caught(
    databases: dict[str, Warehouse],
    batch: DecodedBatch,
    tmp_path: Path,
    broken: tuple[str, str],
    caught_in: set[str],
) -> None:
    """Negative control: the same check finds a DEFAULT that reads the wrong value."""
    worker, wrong = databases["worker"], databases["broken"]
    migrate(worker, progress=lambda _: None)
    migrate(wrong, _migrations(tmp_path, 9999, broken), progress=lambda _: None)
    ClickHouseSink(worker).write(batch)
    _copy_data_only(worker, wrong)
    assert set(_differences(_content(worker), _content(wrong))) == caught_in
