"""The catalogs in the warehouse: the catalog a process puts in force, team_catalog and
capability_catalog written idempotently, history read back, and the worker's catalog step
(load, reload without restart, undeclared capabilities) against the real embedded engine."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.catalog.capabilities import load_capabilities
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.sources import read_files
from pipeline.catalog.store import CatalogStore, TeamCatalogBuilder
from pipeline.catalog.teams import OPEN_END, UNOWNED, TeamCatalog
from pipeline.cli import main as uptake
from pipeline.config.settings import Settings, SettingsError
from pipeline.contract.decode import BatchDecoder, Limits, SourceMessage
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.ingest.catalogs import WorkerCatalogs
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.catalog import CONFIG, EXAMPLES, t

PSEUDONYMS = Pseudonymizer(b"s" * 32)
WEEK = timedelta(days=7)
OWNER = "  name: payments-api\nspec:\n  type: service\n  lifecycle: production\n  owner: "


def builder(history: TeamCatalog | None = None, lookback: timedelta = WEEK) -> TeamCatalogBuilder:
    return TeamCatalogBuilder(history or TeamCatalog.empty(), PSEUDONYMS.key_of, lookback)


def files(owner_of_payments_api: str = "group:default/payments") -> dict[Path, bytes]:
    contents = read_files([CONFIG / "teams"])
    path = CONFIG / "teams" / "catalog-info.yaml"
    text = contents[path].decode()
    assert text.count(OWNER + "group:default/payments\n") == 1
    contents[path] = text.replace(
        OWNER + "group:default/payments", OWNER + owner_of_payments_api
    ).encode()
    return contents


# -- the catalog in force (no warehouse) ---------------------------------------------------------


def test_a_first_load_holds_since_the_lookback_without_overriding_dated_history() -> None:
    now = t("2026-11-01")
    catalog = builder(lookback=timedelta(days=3 * 365))(files(), now, None)

    assert catalog.owner_at("payments-api", now - timedelta(days=3 * 365)) == "payments"
    assert catalog.owner_at("payments-api", now - timedelta(days=3 * 366)) == UNOWNED
    assert catalog.owner_at("fraud-stream", t("2025-02-28")) == "risk"  # the CSV's dates win
    assert catalog.owner_at("fraud-stream", t("2025-03-01")) == "fraud"
    assert catalog.parent_of("ml-research", t("2024-06-01")) == "platform"
    assert catalog.parent_of("ml-research", now) == "data"


def test_with_stored_history_a_change_holds_from_the_reload_on() -> None:
    first = builder()(files(), t("2026-11-01"), None)
    stored = TeamCatalog.from_rows(first.rows_for_clickhouse())

    reloaded = builder(stored)(files("checkout"), t("2026-11-10"), None)

    assert reloaded.owner_at("payments-api", t("2026-11-09")) == "payments"
    assert reloaded.owner_at("payments-api", t("2026-11-10")) == "checkout"
    assert reloaded.history("service", "payments-api")[0].valid_from == t("2026-11-01") - WEEK


def test_users_are_known_by_their_key_and_errors_name_them_as_written(tmp_path: Path) -> None:
    catalog = builder()(files(), t("2026-11-01"), None)
    assert catalog.team_of_user_at(PSEUDONYMS.key_of("checkout.eng3"), t("2026-11-01")) == (
        "checkout"
    )
    assert not [u for u in catalog.names("user") if "." in u], "a raw user id is in the catalog"

    broken = files()
    broken[CONFIG / "teams" / "zz.csv"] = (
        b"kind,name,team,valid_from,valid_to\nuser,risk.eng0,fraud,2020-01-01,\n"
    )
    with pytest.raises(CatalogError, match=r"user 'risk\.eng0'"):
        builder()(broken, t("2026-11-01"), None)


# -- the tables ----------------------------------------------------------------------------------


@pytest.fixture
def warehouse(inprocess_warehouse_url: str) -> Iterator[Warehouse]:
    with connect(inprocess_warehouse_url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        yield wh


def stored(warehouse: Warehouse, kind: str, name: str) -> list[tuple[Any, ...]]:
    """(team, valid_from, valid_to, retracted) of a name, oldest first, times in UTC."""
    rows = warehouse.rows(
        "SELECT team, valid_from, valid_to, retracted FROM team_catalog FINAL "
        "WHERE kind = {k:String} AND name = {n:String} ORDER BY valid_from",
        {"k": kind, "n": name},
    )
    return [(team, utc(start), utc(end), retracted) for team, start, end, retracted in rows]


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def owner_on(warehouse: Warehouse, service: str, day: str) -> str:
    """The docs' example: who owned a service on a date."""
    rows = warehouse.rows(
        "SELECT team FROM team_catalog FINAL WHERE kind = 'service' AND name = {s:String} "
        "AND retracted = 0 AND valid_from <= {d:DateTime64(3, 'UTC')} "
        "AND {d:DateTime64(3, 'UTC')} < valid_to",
        {"s": service, "d": t(day)},
    )
    return str(rows[0][0]) if rows else UNOWNED


@pytest.mark.integration
def test_writing_is_idempotent_and_history_reads_back(warehouse: Warehouse) -> None:
    catalog = builder()(files(), t("2026-11-01"), None)
    store = CatalogStore(warehouse)
    store.write(catalog, load_capabilities(CONFIG / "capabilities.yaml"))
    final = warehouse.rows("SELECT * EXCEPT loaded_at FROM team_catalog FINAL ORDER BY ALL")
    again = CatalogStore(warehouse)
    again.write(again.read_team_history(), load_capabilities(CONFIG / "capabilities.yaml"))

    assert warehouse.rows("SELECT * EXCEPT loaded_at FROM team_catalog FINAL ORDER BY ALL") == final
    assert len(final) == len(catalog.rows_for_clickhouse())
    history = CatalogStore(warehouse).read_team_history()
    assert history.rows_for_clickhouse() == catalog.rows_for_clickhouse()
    assert stored(warehouse, "service", "fraud-stream") == [
        ("risk", t("2024-01-15"), t("2025-03-01"), 0),
        ("fraud", t("2025-03-01"), OPEN_END, 0),
    ]
    raw = warehouse.rows("SELECT count() FROM team_catalog WHERE name LIKE '%.eng%'")[0][0]
    assert raw == 0, "a raw user id reached ClickHouse"
    key = PSEUDONYMS.key_of("checkout.eng3")
    assert [r[0] for r in stored(warehouse, "user", key)] == ["payments", "checkout"]


@pytest.mark.integration
def test_a_reload_closes_the_old_owner_and_a_correction_is_retracted(
    warehouse: Warehouse,
) -> None:
    store = CatalogStore(warehouse)
    capabilities = load_capabilities(CONFIG / "capabilities.yaml")
    first = builder()(files(), t("2026-11-01"), None)
    store.write(first, capabilities)
    moved = builder()(files("checkout"), t("2026-11-10"), first)
    store.write(moved, capabilities)

    assert owner_on(warehouse, "payments-api", "2026-11-09") == "payments"
    assert owner_on(warehouse, "payments-api", "2026-11-10") == "checkout"
    assert owner_on(warehouse, "payments-api", "2026-10-01") == UNOWNED

    # A file that corrects the past on purpose: checkout owned it since 2026-11-05.
    correction = files("checkout")
    correction[CONFIG / "teams" / "zz.csv"] = (
        b"kind,name,team,valid_from,valid_to\nservice,payments-api,checkout,2026-11-05,\n"
    )
    corrected = builder()(correction, t("2026-11-12"), moved)
    summary = store.write(corrected, capabilities)

    assert summary.retracted_rows == 1
    assert stored(warehouse, "service", "payments-api") == [
        ("payments", t("2026-11-01") - WEEK, t("2026-11-05"), 0),
        ("checkout", t("2026-11-05"), OPEN_END, 0),
        ("checkout", t("2026-11-10"), OPEN_END, 1),
    ]
    history = CatalogStore(warehouse).read_team_history()
    assert history.rows_for_clickhouse() == corrected.rows_for_clickhouse()


@pytest.mark.integration
def test_overlapping_stored_intervals_are_cut_where_the_next_begins(warehouse: Warehouse) -> None:
    """Two processes that closed an interval at different moments leave overlaps behind."""
    rows = [
        ("service", "s", "a", "", t("2026-01-01"), t("2026-02-02"), 0, t("2026-02-02")),
        ("service", "s", "b", "", t("2026-02-01"), OPEN_END, 0, t("2026-02-01")),
        ("service", "s", "b", "", t("2026-02-02"), OPEN_END, 0, t("2026-02-02")),
    ]
    warehouse.insert_columns(
        "team_catalog",
        [list(c) for c in zip(*rows, strict=True)],
        ["kind", "name", "team", "parent", "valid_from", "valid_to", "retracted", "loaded_at"],
    )
    history = CatalogStore(warehouse).read_team_history()

    assert [(a.team, a.valid_from, a.valid_to) for a in history.history("service", "s")] == [
        ("a", t("2026-01-01"), t("2026-02-01")),
        ("b", t("2026-02-01"), t("2026-02-02")),
        ("b", t("2026-02-02"), None),
    ]


@pytest.mark.integration
def test_capability_rows_declared_undeclared_and_no_longer_declared(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    teams = builder()(files(), datetime.now(UTC), None)
    store = CatalogStore(warehouse)
    capabilities = load_capabilities(CONFIG / "capabilities.yaml")
    capabilities.resolve("shiny-new-thing")
    store.write(teams, capabilities)
    # The file drops risk-scoring: events still name it, so it is stored as undeclared.
    text = (CONFIG / "capabilities.yaml").read_text()
    start = text.index("  - name: risk-scoring")
    end = text.index("  - name: deploy-pipeline")
    (tmp_path / "capabilities.yaml").write_text(text[:start] + text[end:])
    fewer = load_capabilities(tmp_path / "capabilities.yaml", undeclared=capabilities.undeclared)
    store.write(teams, fewer)

    rows = {
        r[0]: r[1:]
        for r in warehouse.rows(
            "SELECT name, declared, platform, owner, target_teams, north_star_measure "
            "FROM capability_catalog FINAL"
        )
    }
    product = sorted(teams.teams_under("product", datetime.now(UTC)))
    assert len(product) == 20
    assert rows["api-gateway"] == (1, "developer-infrastructure", "platform-infra", product, "")
    assert rows["shiny-new-thing"] == (0, "", "", [], "")
    assert rows["risk-scoring"] == (0, "", "", [], "")
    assert set(rows) == fewer.names() | {"shiny-new-thing", "risk-scoring"}


@pytest.mark.integration
def test_catalog_teams_are_the_leaf_groups_now(warehouse: Warehouse) -> None:
    teams = builder()(files(), datetime.now(UTC), None)
    CatalogStore(warehouse).write(teams, load_capabilities(CONFIG / "capabilities.yaml"))

    rows = dict(warehouse.rows("SELECT team, parent FROM catalog_teams"))

    assert set(rows) == teams.teams_at(datetime.now(UTC))
    assert rows["payments"] == "commerce"
    assert rows["ml-research"] == "data"
    assert "product" not in rows and "engineering" not in rows


# -- the worker's catalog step -------------------------------------------------------------------


def run_here(job: Callable[[], None]) -> Future[Any]:
    """A `submit` that runs the job at once (the sink's thread, in the worker)."""
    done: Future[Any] = Future()
    job()
    done.set_result(None)
    return done


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    shutil.copytree(CONFIG / "teams", tmp_path / "teams")
    shutil.copy(CONFIG / "capabilities.yaml", tmp_path / "capabilities.yaml")
    return tmp_path


def settings_for(catalog_dir: Path, **overrides: object) -> Settings:
    return Settings.from_env(
        {},
        team_catalog=str(catalog_dir / "teams"),
        capabilities=str(catalog_dir / "capabilities.yaml"),
        **overrides,
    )


def batch_of(*events: dict[str, Any]) -> Any:
    now = datetime.now(UTC)
    base = {
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": now.isoformat(),
        "source": "test",
        "capability": "api-gateway",
        "data": {"api": "orders", "operation": "GET /x", "status_code": 200, "latency_ms": 1.0},
    }
    messages = [
        SourceMessage("t", 0, i, msgspec.json.encode({**base, "event_id": str(uuid.uuid4()), **e}))
        for i, e in enumerate(events)
    ]
    batch = BatchDecoder(Limits(max_lateness=timedelta(days=3650))).decode(messages)
    assert not batch.rejections, batch.rejections
    batch.user_keys = PSEUDONYMS.keys([e.user for e in batch.events])
    return batch


@pytest.mark.integration
def test_a_broken_catalog_stops_the_worker_with_file_and_line(
    warehouse: Warehouse, catalog_dir: Path
) -> None:
    path = catalog_dir / "teams" / "ownership.csv"
    path.write_text(path.read_text() + "service,fraud-stream,risk,2025-13-01,\n")
    line = len(path.read_text().splitlines())

    with pytest.raises(SettingsError) as caught:
        WorkerCatalogs.load(settings_for(catalog_dir), CatalogStore(warehouse), PSEUDONYMS.key_of)

    message = str(caught.value)
    assert message.startswith("UPTAKE_TEAM_CATALOG: the catalog cannot be used: ")
    assert f"{path}:{line}: service 'fraud-stream': field 'valid_from'" in message
    assert not warehouse.rows("SELECT * FROM team_catalog"), "nothing stored from a broken file"

    (catalog_dir / "capabilities.yaml").write_text("capabilities: []\n")
    path.write_text(path.read_text().replace("2025-13-01", "2025-12-01").rsplit("\n", 2)[0])
    with pytest.raises(SettingsError, match=r"UPTAKE_CAPABILITIES: .*capabilities\.yaml:1"):
        WorkerCatalogs.load(settings_for(catalog_dir), CatalogStore(warehouse), PSEUDONYMS.key_of)


@pytest.mark.integration
def test_reload_without_restart_and_undeclared_capabilities(
    warehouse: Warehouse, catalog_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalogs = WorkerCatalogs.load(
        settings_for(catalog_dir, reload_s=0.0), CatalogStore(warehouse), PSEUDONYMS.key_of
    )
    catalogs.start(run_here)
    before = batch_of(
        {"service": "payments-api", "user": "risk.eng0"},
        {"team": "ledger", "capability": "shiny-new-thing"},
        {"service": "no-such-service", "user": "checkout.eng3", "capability": "shiny-new-thing"},
    )
    with caplog.at_level(logging.WARNING, logger="uptake.catalog"):
        catalogs.enrich(before)
        catalogs.enrich(batch_of({"team": "ledger", "capability": "shiny-new-thing"}))
    assert before.teams == ["payments", "ledger", "checkout"]
    assert [r.getMessage() for r in caplog.records].count(
        f"capability 'shiny-new-thing' is not declared in {catalog_dir / 'capabilities.yaml'}: "
        "its events are counted under that name; declare it to give it an owner and target teams"
    ) == 1
    assert catalogs.capabilities.undeclared.counts() == {"shiny-new-thing": 3}
    assert warehouse.rows(
        "SELECT declared FROM capability_catalog FINAL WHERE name = 'shiny-new-thing'"
    ) == [(0,)]

    path = catalog_dir / "teams" / "catalog-info.yaml"
    path.write_text(path.read_text().replace(OWNER + "group:default/payments", OWNER + "checkout"))
    reloaded_at = datetime.now(UTC)
    assert catalogs.reload_now()

    after = batch_of({"service": "payments-api"})
    catalogs.enrich(after)
    assert after.teams == ["checkout"]
    assert before.teams[0] == "payments", "a resolved batch is not touched by a reload"
    rows = stored(warehouse, "service", "payments-api")
    assert [(r[0], r[3]) for r in rows] == [("payments", 0), ("checkout", 0)]
    assert abs(rows[1][1] - reloaded_at) < timedelta(seconds=5)
    assert not catalogs.reload_now(), "unchanged files are not reloaded"


# -- uptake catalog ------------------------------------------------------------------------------


@pytest.mark.integration
def test_uptake_catalog_sync_and_show(
    warehouse: Warehouse,
    inprocess_warehouse_url: str,
    catalog_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("UPTAKE_CLICKHOUSE_URL", inprocess_warehouse_url)
    monkeypatch.setenv("UPTAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("UPTAKE_TEAM_CATALOG", str(catalog_dir / "teams"))
    summary = (
        "team_catalog: 22 teams (30 groups), 105 services, 184 users (322 rows, 0 retracted); "
        "capability_catalog: 6 capabilities\n"
    )

    assert uptake(["catalog", "sync"]) == 0
    assert capsys.readouterr().out.endswith(summary)
    assert uptake(["catalog", "sync"]) == 0
    assert capsys.readouterr().out.endswith(summary), "a second sync changes nothing"
    assert warehouse.rows("SELECT count() FROM team_catalog FINAL") == [(322,)]

    assert uptake(["catalog", "show", "--at", "2025-02-01", "--team", "risk"]) == 0
    out = capsys.readouterr().out
    assert "risk | engineering > product > " in out
    assert "fraud-stream" in out  # risk owned it until the 2025-03-01 re-org
    assert uptake(["catalog", "show", "--team", "risk"]) == 0
    assert "fraud-stream" not in capsys.readouterr().out

    path = catalog_dir / "teams" / "ownership.csv"
    path.write_text(path.read_text() + "service,fraud-stream,risk,2025-13-01,\n")
    assert uptake(["catalog", "sync"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: UPTAKE_TEAM_CATALOG: the catalog cannot be used: {path}:")


ACME_CAPABILITIES = """\
capabilities:
  - name: api-gateway
    platform: developer-infrastructure
    owner: team-a
    usage:
      event_types: [api_call]
    target_teams: [infrastructure]
"""


@pytest.mark.integration
def test_uptake_catalog_sync_reads_backstages_multi_file_example_with_warnings(
    warehouse: Warehouse,
    inprocess_warehouse_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Backstage's own layout: org, department, sub-departments and teams in separate files
    # tied by parent/children and a Location; components behind two more Locations.
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)
    (tmp_path / "capabilities.yaml").write_text(ACME_CAPABILITIES)
    monkeypatch.setenv("UPTAKE_CLICKHOUSE_URL", inprocess_warehouse_url)
    monkeypatch.setenv("UPTAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(
        "UPTAKE_TEAM_CATALOG", f"{examples / 'acme' / 'org.yaml'}:{examples / 'all.yaml'}"
    )
    monkeypatch.setenv("UPTAKE_CAPABILITIES", str(tmp_path / "capabilities.yaml"))

    assert uptake(["catalog", "sync"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[2] == (
        "team_catalog: 5 teams (9 groups), 12 services, 17 users (38 rows, 0 retracted); "
        "capability_catalog: 1 capabilities"
    )
    warnings = [line for line in out if line.startswith("warning: ")]
    assert len(warnings) == 6
    assert (
        f"warning: {examples / 'components' / 'playback-order-component.yaml'}:12: "
        "Component 'playback-order': field 'spec.owner': group:default/guest is not in the "
        "catalog: ignored"
    ) in warnings
    assert sum("does not exist: not followed" in w for w in warnings) == 5
    assert owner_on(warehouse, "searcher", datetime.now(UTC).date().isoformat()) == "team-a"
    assert warehouse.rows(
        "SELECT target_teams FROM capability_catalog FINAL WHERE name = 'api-gateway'"
    ) == [(["team-a", "team-b", "team-c", "team-d", "team-e"],)]


@pytest.mark.integration
def test_the_worker_loads_a_catalog_with_warnings_logs_and_counts_them(
    warehouse: Warehouse, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.observability.metrics import REGISTRY

    def count() -> float:
        labels = {"kind": "location_target_missing"}
        return REGISTRY.get_sample_value("uptake_catalog_warnings_total", labels) or 0.0

    (tmp_path / "capabilities.yaml").write_text(ACME_CAPABILITIES)
    settings = Settings.from_env(
        {},
        team_catalog=str(EXAMPLES / "acme" / "org.yaml") + ":" + str(EXAMPLES / "all.yaml"),
        capabilities=str(tmp_path / "capabilities.yaml"),
        reload_s=0.0,
    )
    before = count()

    with caplog.at_level(logging.WARNING, logger="uptake.catalog"):
        catalogs = WorkerCatalogs.load(settings, CatalogStore(warehouse), PSEUDONYMS.key_of)

    assert catalogs.teams.owner_at("shuffle-api", datetime.now(UTC)) == "team-a"
    assert count() == before + 5
    assert sum(m.startswith("team catalog: ") for m in caplog.messages) == 6
