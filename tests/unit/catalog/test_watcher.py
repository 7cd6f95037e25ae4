"""CatalogWatcher: reloads on change without a restart, keeps history, survives broken files."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline.catalog.capabilities import CapabilityCatalog, UndeclaredCapabilities
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.teams import UNOWNED, TeamCatalog
from pipeline.catalog.watcher import CatalogWatcher
from tests.support.catalog import org, t

T1 = t("2025-01-01")
T2 = t("2025-03-01")
WAIT_S = 5.0  # upper bound for the threaded tests; they finish in milliseconds


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """Collects published catalogs and errors; `wait` blocks until one more arrives."""

    def __init__(self) -> None:
        self.catalogs: list[TeamCatalog] = []
        self.errors: list[BaseException] = []
        self._seen = 0
        self._changed = threading.Condition()

    def changed(self, catalog: TeamCatalog) -> None:
        with self._changed:
            self.catalogs.append(catalog)
            self._changed.notify_all()

    def failed(self, exc: BaseException) -> None:
        with self._changed:
            self.errors.append(exc)
            self._changed.notify_all()

    def wait(self) -> None:
        """Until a catalog or error arrives that no earlier `wait` returned for."""
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: len(self.catalogs) + len(self.errors) > self._seen, timeout=WAIT_S
            )
            assert arrived, "the watcher did not react in time"
            self._seen = len(self.catalogs) + len(self.errors)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "catalog-info.yaml").write_text(org("payments"), encoding="utf-8")
    return tmp_path


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def watcher(files: Path, recorder: Recorder) -> Iterator[CatalogWatcher[TeamCatalog]]:
    w = CatalogWatcher.for_teams(
        [files], recorder.changed, on_error=recorder.failed, clock=Clock(T1), interval_s=0.01
    )
    yield w
    w.stop()


def edit(path: Path, text: str) -> None:
    """Write `text` and move the mtime forward, as an editor saving later would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_poll_loads_first_then_only_on_content_change(
    watcher: CatalogWatcher[TeamCatalog], files: Path, recorder: Recorder
) -> None:
    assert watcher.current is None
    assert watcher.poll() is True
    assert watcher.poll() is False
    first = watcher.current
    assert first is not None and first.owner_at("payments-api", T1) == "payments"

    # touching without changing the content rebuilds nothing
    path = files / "catalog-info.yaml"
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert watcher.poll() is False
    assert recorder.catalogs == [first]


def test_a_reload_merges_into_history(
    watcher: CatalogWatcher[TeamCatalog], files: Path, recorder: Recorder
) -> None:
    clock = Clock(T1)
    watcher._clock = clock  # the fixture's watcher, with a clock this test moves
    watcher.poll()

    clock.now = T2
    edit(files / "catalog-info.yaml", org("checkout"))
    assert watcher.poll() is True

    latest = recorder.catalogs[-1]
    assert latest is watcher.current
    assert latest.owner_at("payments-api", T1) == "payments"
    assert latest.owner_at("payments-api", T2) == "checkout"


def test_the_first_load_merges_into_stored_history(files: Path, recorder: Recorder) -> None:
    stored = TeamCatalog.from_rows(
        [("service", "old-service", "payments", "", t("2024-01-01"), t("2024-06-01"))]
    )
    w = CatalogWatcher.for_teams([files], recorder.changed, history=stored, clock=Clock(T1))

    w.poll()

    assert recorder.catalogs[0].owner_at("old-service", t("2024-02-01")) == "payments"
    assert recorder.catalogs[0].owner_at("payments-api", T1) == "payments"


def test_watcher_thread_reloads_without_restart(
    watcher: CatalogWatcher[TeamCatalog], files: Path, recorder: Recorder
) -> None:
    with watcher:
        assert len(recorder.catalogs) == 1  # start() loaded on this thread
        recorder.wait()
        edit(files / "catalog-info.yaml", org("checkout"))
        recorder.wait()
        assert recorder.catalogs[-1].owner_at("payments-api", T1) == "checkout"

        # a new file in the watched folder is noticed too
        edit(
            files / "ownership.csv",
            "kind,name,team,valid_from,valid_to\nservice,ledger-db,payments,2024-01-01,\n",
        )
        recorder.wait()
        assert recorder.catalogs[-1].owner_at("ledger-db", t("2024-06-01")) == "payments"
    assert recorder.errors == []


def test_a_broken_file_keeps_the_last_good_catalog_and_is_reported_once(
    watcher: CatalogWatcher[TeamCatalog], files: Path, recorder: Recorder
) -> None:
    with watcher:
        recorder.wait()  # the load by start()
        good = watcher.current
        edit(files / "catalog-info.yaml", org("checkout") + "---\nkind: [unclosed\n")
        recorder.wait()
        assert watcher.current is good
        assert len(recorder.errors) == 1
        assert isinstance(recorder.errors[0], CatalogError)
        assert "not valid YAML" in str(recorder.errors[0])

        edit(files / "catalog-info.yaml", org("checkout"))
        recorder.wait()
        assert recorder.catalogs[-1].owner_at("payments-api", T1) == "checkout"
    assert len(recorder.errors) == 1  # the broken content was not reported on every poll


def test_a_deleted_file_is_reported_and_the_catalog_kept(files: Path, recorder: Recorder) -> None:
    path = files / "catalog-info.yaml"
    w = CatalogWatcher.for_teams([path], recorder.changed, clock=Clock(T1))
    w.poll()

    path.unlink()
    with pytest.raises(CatalogError, match="file not found"):
        w.poll()
    assert w.poll() is False  # reported once
    assert w.current is recorder.catalogs[0]

    edit(path, org("payments"))
    assert w.poll() is False  # same content as before the deletion: nothing new


def test_start_refuses_broken_files(files: Path, recorder: Recorder) -> None:
    (files / "catalog-info.yaml").write_text(org() + "---\n: [unclosed", encoding="utf-8")
    w = CatalogWatcher.for_teams([files], recorder.changed)

    with pytest.raises(CatalogError, match="not valid YAML"):
        w.start()
    w.stop()
    assert recorder.catalogs == []


def test_an_edit_within_one_timestamp_tick_is_not_missed(
    watcher: CatalogWatcher[TeamCatalog], files: Path, recorder: Recorder
) -> None:
    path = files / "catalog-info.yaml"
    watcher.poll()
    stat = path.stat()
    # same size and mtime, different content: what a coarse file clock can produce
    same_size = org("payments").replace("payments-api", "payments-apj")
    path.write_text(same_size, encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    assert watcher.poll() is True
    assert recorder.catalogs[-1].owner_at("payments-apj", T1) == "payments"


def test_interval_must_be_positive(files: Path) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        CatalogWatcher.for_teams([files], lambda c: None, interval_s=0)


def test_start_twice_is_an_error(watcher: CatalogWatcher[TeamCatalog]) -> None:
    watcher.start()
    with pytest.raises(RuntimeError, match="already started"):
        watcher.start()


def test_capability_watcher_keeps_the_undeclared_record(tmp_path: Path) -> None:
    path = tmp_path / "capabilities.yaml"
    text = (
        "capabilities:\n  - name: api-gateway\n    platform: developer-infrastructure\n"
        "    owner: platform-infra\n    usage:\n      event_types: [api_call]\n"
    )
    path.write_text(text, encoding="utf-8")
    published: list[CapabilityCatalog] = []
    record = UndeclaredCapabilities()
    w = CatalogWatcher.for_capabilities(path, published.append, undeclared=record)

    w.poll()
    published[-1].resolve("chaos-monkey")
    edit(path, text.replace("api-gateway", "gateway"))
    w.poll()

    assert published[-1].names() == {"gateway"}
    published[-1].resolve("api-gateway")
    assert published[-1].undeclared_seen() == {"chaos-monkey", "api-gateway"}
    assert record.seen() == {"chaos-monkey", "api-gateway"}


def test_on_change_runs_after_the_catalog_is_current(files: Path) -> None:
    seen: list[bool] = []
    w: CatalogWatcher[TeamCatalog]

    def check(catalog: TeamCatalog) -> None:
        seen.append(w.current is catalog)

    w = CatalogWatcher.for_teams([files], check, clock=Clock(T1))
    w.poll()

    assert seen == [True]
    assert w.current is not None
    assert w.current.owner_at("payments-api", T1 - timedelta(days=1)) == UNOWNED
