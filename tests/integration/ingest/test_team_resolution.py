"""Team resolution end to end: real Kafka, the real worker (one run), the real warehouse.

Events go through the broker and the worker; the team catalog files are edited while the worker
runs, and the warehouse shows the resolved team of every event, what it reported, the stored
catalogs, an undeclared capability counted and reported once, and no raw user identifier.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka.producer import make_producer, produce
from tests.conftest import REPO, Pipeline, wait_until
from tests.support.metrics import scrape, total

pytestmark = pytest.mark.integration

OWNER = "  name: payments-api\nspec:\n  type: service\n  lifecycle: production\n  owner: "
UNDECLARED = "shiny-new-thing"


def event(name: str, at: datetime, capability: str = "deploy-pipeline", **attribution: str) -> Any:
    """A deploy whose event_id is derived from `name`, to find it in the warehouse. (Deploys:
    the warehouse deletes api_call rows after 90 days, and some of these are years old.)"""
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_OID, name)),
        "event_type": "deploy",
        "schema_version": 1,
        "occurred_at": at.isoformat(),
        "source": "test",
        "capability": capability,
        "data": {
            "deployment_id": name,
            "service": attribution.get("service", "unknown"),
            "environment": "production",
            "status": "succeeded",
        },
        **attribution,
    }


def send(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    producer = make_producer(pipeline.env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        produce(producer, pipeline.env["UPTAKE_EVENTS_TOPIC"], events, per_message=3)
    finally:
        producer.close()


def test_teams_resolve_by_time_and_a_reload_changes_only_new_events(
    pipeline_env: Pipeline, tmp_path: Path
) -> None:
    catalogs = tmp_path / "catalogs"
    shutil.copytree(REPO / "config" / "teams", catalogs / "teams")
    shutil.copy(REPO / "config" / "capabilities.yaml", catalogs / "capabilities.yaml")
    pipeline_env.env.update(
        {
            "UPTAKE_TEAM_CATALOG": str(catalogs / "teams"),
            "UPTAKE_CAPABILITIES": str(catalogs / "capabilities.yaml"),
            "UPTAKE_CATALOG_RELOAD_S": "0.2",
            "UPTAKE_MAX_LATENESS_S": str(3 * 365 * 86400),  # events from before the 2025 re-org
        }
    )
    pipeline_env.run("migrate")
    now = datetime.now(UTC)
    send(
        pipeline_env,
        [
            event(
                "fraud-before",
                datetime(2024, 6, 1, tzinfo=UTC),
                service="fraud-stream",
                team="payments",
            ),
            event("fraud-after", datetime(2025, 6, 1, tzinfo=UTC), service="fraud-stream"),
            event("service-only", now - timedelta(hours=1), service="payments-api"),
            # Stored before the reload although it happens after it (the decoder allows a few
            # minutes of clock skew): a reload never rewrites a stored event.
            event("stored-future", now + timedelta(minutes=2), service="payments-api"),
            event("team-only", now, team="checkout"),
            event(
                "user-only",  # an unknown service and no team: the user's team back then
                datetime(2024, 12, 1, tzinfo=UTC),
                service="no-such-service",
                user="checkout.eng3",
            ),
            event("nobody", now, service="no-such-service"),
            event("undeclared-1", now, UNDECLARED, team="ledger", user="ledger.eng1"),
            event("undeclared-2", now, UNDECLARED, team="ledger"),
        ],
    )

    # No idle exit: on a busy machine the reload can take longer than any idle limit, and the
    # worker must still be running when the second batch arrives. It is stopped below.
    worker = pipeline_env.start_worker()
    try:
        wait_until(lambda: stored_events(pipeline_env, worker) >= 9, 120, what="the first events")
        path = catalogs / "teams" / "catalog-info.yaml"
        text = path.read_text()
        assert text.count(OWNER + "group:default/payments\n") == 1
        path.write_text(text.replace(OWNER + "group:default/payments", OWNER + "checkout"))
        wait_until(
            lambda: "team catalog reloaded" in pipeline_env.worker_log(), 30, what="the reload"
        )
        after_reload = datetime.now(UTC)
        send(
            pipeline_env,
            [
                event("moved", after_reload, service="payments-api", team="payments"),
                event("late", after_reload - timedelta(hours=2), service="payments-api"),
            ],
        )
        wait_until(lambda: stored_events(pipeline_env, worker) >= 11, 120, what="the moved events")
        worker.terminate()
        assert worker.wait(timeout=180) == 0, pipeline_env.worker_log()
    finally:
        if worker.poll() is None:
            worker.kill()

    log = pipeline_env.worker_log()
    names = {
        str(uuid.uuid5(uuid.NAMESPACE_OID, n)): n
        for n in (
            "fraud-before",
            "fraud-after",
            "service-only",
            "stored-future",
            "team-only",
            "user-only",
            "nobody",
            "undeclared-1",
            "undeclared-2",
            "moved",
            "late",
        )
    }
    rows = pipeline_env.rows("SELECT event_id, team, reported_team, capability FROM events")
    stored = {names[r["event_id"]]: (r["team"], r["reported_team"]) for r in rows}
    assert stored == {
        "fraud-before": ("risk", "payments"),  # owner before the 2025-03-01 re-org
        "fraud-after": ("fraud", ""),
        "service-only": ("payments", ""),
        "stored-future": ("payments", ""),  # the catalog now says checkout for its time
        "team-only": ("checkout", "checkout"),
        "user-only": ("payments", ""),  # checkout.eng3 sat in payments until 2025-01-15
        "nobody": ("unowned", ""),
        "undeclared-1": ("ledger", "ledger"),
        "undeclared-2": ("ledger", "ledger"),
        "moved": ("checkout", "payments"),  # after the reload: the new owner
        "late": ("payments", ""),  # happened before the reload: the owner back then
    }

    # The undeclared capability: counted under its own name, reported once, stored as such.
    assert sum(r["capability"] == UNDECLARED for r in rows) == 2
    assert log.count(f"capability '{UNDECLARED}' is not declared") == 1, log
    declared = pipeline_env.rows(
        f"SELECT declared FROM capability_catalog FINAL WHERE name = '{UNDECLARED}'"
    )
    assert declared == [{"declared": 0}]

    # The catalog history the worker stored: the reload closed one interval and opened one.
    intervals = pipeline_env.rows(
        "SELECT team, toUnixTimestamp64Milli(valid_from) AS start, retracted "
        "FROM team_catalog FINAL WHERE kind = 'service' AND name = 'payments-api' "
        "ORDER BY valid_from"
    )
    assert [(r["team"], r["retracted"]) for r in intervals] == [("payments", 0), ("checkout", 0)]
    reload_ms = int(intervals[1]["start"])
    assert reload_ms <= after_reload.timestamp() * 1000 <= reload_ms + 30_000
    assert reload_ms < (now + timedelta(minutes=2)).timestamp() * 1000

    # No raw user identifier anywhere in the warehouse.
    raw = pipeline_env.rows(
        "SELECT (SELECT count() FROM events WHERE user_key LIKE '%.eng%' OR data LIKE '%.eng%')"
        " + (SELECT count() FROM team_catalog WHERE name LIKE '%.eng%') AS n"
    )
    assert int(raw[0]["n"]) == 0
    users = pipeline_env.rows(
        "SELECT countDistinct(user_key) AS n FROM events WHERE user_key != ''"
    )
    assert int(users[0]["n"]) == 2


def stored_events(pipeline: Pipeline, worker: Any) -> float:
    """Events the worker has written (its counter moves after the insert), 0 before /metrics."""
    if worker.poll() is not None:
        raise AssertionError(f"the worker died:\n{pipeline.worker_log()}")
    try:
        return total(scrape(pipeline.metrics_url), "uptake_events_consumed_total")
    except OSError:
        return 0
