"""One warehouse loaded through the real pipeline, shared by every view test of the session.

Simulated weeks of a scenario organisation (devtools/simulate/org.py) go to a private topic of
the session's real Kafka broker; the real worker (`uptake worker`, with UPTAKE_MAX_LATENESS_S
raised so the whole history is accepted) writes them to a real warehouse (chdb, or the server of
UPTAKE_CLICKHOUSE_URL); the tests read it through one query process (query_server.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.devtools.simulate.catalog import write_team_catalog
from pipeline.devtools.simulate.org import GroundTruth, Organisation, Scenario, generate
from pipeline.kafka.producer import make_producer, produce
from tests.conftest import REPO, Pipeline, env_without_settings, free_port

SEED = 11
TEAMS = 20
EVENTS = int(os.environ.get("UPTAKE_VIEWS_EVENTS", "80000"))
WINDOW = timedelta(weeks=10)
# The default scenario, plus what the analyst views must see through (all in the truth):
# api-gateway calls of an API its catalog entry does not list (no use), a team that stops
# using api-gateway a little before mid-window (its active rate falls, its adoption does not),
# and growth moving from discovery to experience mid-window. A change failure rate of 0.4
# before adoption and 15 % deploys give test_views' change-failure test the data its bound
# needs (see there; with 0.3 and 10 % it was ±0.27 in log against the 0.255 it needs).
SCENARIO = Scenario(
    change_failure_rate=0.4,
    deploy_share=0.15,
    uncounted_api_share=0.03,
    churn_capability="api-gateway",
    churn_at=0.4,
    moved_team="growth",
    moved_to="experience",
    moved_at=0.5,
)


class QueryError(AssertionError):
    pass


class Warehouse:
    """Queries through a process of its own that keeps the warehouse open."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.views.query_server", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(msgspec.json.encode(request).decode() + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = msgspec.json.decode(self.process.stdout.readline())
        if "error" in answer:
            raise QueryError(f"{answer['error']}\nSQL: {request['sql']}")
        return answer

    def rows(self, sql: str, database: str = "", migrate: bool = False) -> list[dict[str, Any]]:
        answer = self._ask({"sql": sql, "database": database, "migrate": migrate})
        return [dict(zip(answer["names"], row, strict=True)) for row in answer["rows"]]

    def command(self, sql: str, database: str = "", migrate: bool = False) -> None:
        self._ask({"sql": sql, "database": database, "migrate": migrate, "command": True})

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


@dataclass
class Loaded:
    truth: GroundTruth
    events: list[dict[str, Any]]
    warehouse: Warehouse
    pipeline: Pipeline
    loaded_at: datetime  # about when the worker wrote the rows (TTLs count from real time)


@pytest.fixture(scope="session")
def loaded(
    kafka_bootstrap: str,
    clickhouse_server_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Loaded]:
    root = tmp_path_factory.mktemp("views")
    suffix = uuid.uuid4().hex[:8]
    url = (
        f"{clickhouse_server_url}/views_{suffix}"
        if clickhouse_server_url
        else f"chdb://{root / 'warehouse'}"
    )
    env = env_without_settings()
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "UPTAKE_CLICKHOUSE_URL": url,
            "UPTAKE_HOME": str(root / "home"),
            "UPTAKE_EVENTS_TOPIC": f"test.views.{suffix}",
            "UPTAKE_DLQ_TOPIC": f"test.views.dlq.{suffix}",
            "UPTAKE_CONSUMER_GROUP": f"test-views-{suffix}",
            "UPTAKE_METRICS_PORT": str(free_port()),
            "UPTAKE_FLUSH_INTERVAL_S": "0.5",
            "UPTAKE_MAX_LATENESS_S": str(int((WINDOW + timedelta(days=2)).total_seconds())),
            "PYTHONUNBUFFERED": "1",
        }
    )
    (root / "home").mkdir()
    truth = GroundTruth(detailed=True)
    org = Organisation.synthetic(SEED, teams=TEAMS)
    end = datetime.now(UTC) - timedelta(minutes=1)
    events = list(
        generate(org, EVENTS, SEED, end=end, window=WINDOW, truth=truth, scenario=SCENARIO)
    )
    ((moved, (group, at)),) = truth.moves.items()
    write_team_catalog(REPO / "config" / "teams", root / "teams", moved, group, at)
    env["UPTAKE_TEAM_CATALOG"] = str(root / "teams")
    pipeline = Pipeline(env, root / "home")
    pipeline.run("migrate")
    producer = make_producer(kafka_bootstrap)
    try:
        produce(producer, env["UPTAKE_EVENTS_TOPIC"], events, per_message=100)
    finally:
        producer.close()
    worker = pipeline.start_worker("--exit-when-idle", "5")
    assert worker.wait(timeout=900) == 0, pipeline.worker_log()[-5000:]
    accepted = f"consumed {len(events):,} events ({len(events):,} accepted, 0 rejected)"
    assert accepted in pipeline.worker_log(), pipeline.worker_log()[-3000:]
    pipeline.run("impact")  # impact_estimates for the documented examples

    warehouse = Warehouse(url)
    try:
        yield Loaded(truth, events, warehouse, pipeline, datetime.now(UTC))
    finally:
        warehouse.close()


@pytest.fixture(scope="session")
def warehouse(loaded: Loaded) -> Warehouse:
    return loaded.warehouse


@pytest.fixture(scope="session")
def truth(loaded: Loaded) -> GroundTruth:
    return loaded.truth


def repo_file(*parts: str) -> Path:
    return REPO.joinpath(*parts)
