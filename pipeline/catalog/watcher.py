"""Reloading catalogs without a restart: poll files, rebuild on change, hand over the result.

`CatalogWatcher.start()` loads once on the caller's thread and raises if the files are broken;
then a daemon thread polls every `interval_s`, rebuilds only when the content hash changed and
passes the new catalog to `on_change` on that thread (it must not block). Later failures go to
`on_error`, once per broken content, and the last good catalog stays in force. `stop()` ends the
thread; `poll()` checks once, synchronously. Details: docs/catalogs.md#reloading-without-a-restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

from pipeline.catalog.capabilities import (
    CapabilityCatalog,
    UndeclaredCapabilities,
    parse_capabilities,
)
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.sources import TeamSources, expand_paths, parse_team_files
from pipeline.catalog.teams import TeamCatalog

log = logging.getLogger(__name__)

_SETTLE_NS = 2_000_000_000  # an mtime this close to the last read may hide a later write

T = TypeVar("T")
Build = Callable[[Mapping[Path, bytes], datetime, T | None], T]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _log_error(exc: BaseException) -> None:
    log.error("catalog reload failed, keeping the last good catalog: %s", exc)


class CatalogWatcher(Generic[T]):
    """Polls catalog files and publishes a rebuilt catalog when their content changes."""

    def __init__(
        self,
        paths: Iterable[Path],
        build: Build[T],
        on_change: Callable[[T], None],
        *,
        interval_s: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
        on_error: Callable[[BaseException], None] = _log_error,
        name: str = "uptake-catalog-watcher",
        read: Callable[[], Mapping[Path, bytes]] | None = None,
        live: bool = False,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be greater than 0")
        self._paths = tuple(Path(p) for p in paths)
        self._build = build
        self._on_change = on_change
        self._interval_s = interval_s
        self._clock = clock
        self._on_error = on_error
        self._name = name
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats: tuple[tuple[str, int, int] | tuple[str], ...] | None = None
        self._read_ns = 0
        self._digest: bytes | None = None
        self._current: T | None = None
        self._read = read or self._read_paths
        self._live = live
        self._followed: tuple[Path, ...] = ()  # files the last read found beyond the paths

    @classmethod
    def for_teams(
        cls,
        paths: Iterable[Path],
        on_change: Callable[[TeamCatalog], None],
        *,
        history: TeamCatalog | None = None,
        interval_s: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
        on_error: Callable[[BaseException], None] = _log_error,
        sources: TeamSources | None = None,
    ) -> CatalogWatcher[TeamCatalog]:
        """A watcher of team files (Backstage YAML, ownership CSV, folders of them), or of
        `sources` (files and a Backstage API) when given.

        Each change is merged into the previous catalog at the clock's time; the first load is
        merged into `history` (e.g. rows read back from the warehouse), default empty.
        """
        start = history or TeamCatalog.empty()
        team_sources = sources or TeamSources(tuple(paths))

        def build(
            contents: Mapping[Path, bytes], at: datetime, previous: TeamCatalog | None
        ) -> TeamCatalog:
            return (previous or start).merge_snapshot(parse_team_files(contents), at)

        return CatalogWatcher(
            team_sources.paths,
            build,
            on_change,
            interval_s=interval_s,
            clock=clock,
            on_error=on_error,
            name="uptake-team-catalog-watcher",
            read=team_sources.read,
            live=team_sources.live,
        )

    @classmethod
    def for_capabilities(
        cls,
        path: Path,
        on_change: Callable[[CapabilityCatalog], None],
        *,
        undeclared: UndeclaredCapabilities | None = None,
        interval_s: float = 30.0,
        on_error: Callable[[BaseException], None] = _log_error,
    ) -> CatalogWatcher[CapabilityCatalog]:
        """A watcher of the capability catalog; every reload shares one undeclared-name record."""
        record = undeclared if undeclared is not None else UndeclaredCapabilities()

        def build(
            contents: Mapping[Path, bytes], at: datetime, previous: CapabilityCatalog | None
        ) -> CapabilityCatalog:
            [(file, raw)] = contents.items()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CatalogError(f"not UTF-8: {exc}", source=str(file)) from None
            return parse_capabilities(text, str(file), undeclared=record)

        return CatalogWatcher(
            [path],
            build,
            on_change,
            interval_s=interval_s,
            on_error=on_error,
            name="uptake-capability-catalog-watcher",
        )

    @property
    def current(self) -> T | None:
        """The last catalog published, None before the first load."""
        return self._current

    def poll(self) -> bool:
        """Check the files once; rebuild and publish if their content changed.

        Returns True when a new catalog was published. Raises CatalogError (or what `build` or
        `on_change` raise); the content that failed is not retried until it changes again.
        """
        with self._lock:
            paths = expand_paths(self._paths)
            stats = tuple(_stat(p) for p in [*paths, *self._followed])
            settled = all(len(s) == 1 or s[1] < self._read_ns - _SETTLE_NS for s in stats)
            if stats == self._stats and settled and not self._live:
                return False
            self._stats = stats  # before reading: a missing file is reported once per change
            self._read_ns = time.time_ns()
            contents = self._read()
            listed = set(paths)
            self._followed = tuple(p for p in contents if p not in listed)
            digest = _digest(contents)
            if digest == self._digest:
                return False
            self._digest = digest
            catalog = self._build(contents, self._clock(), self._current)
            self._current = catalog
        self._on_change(catalog)
        return True

    def _read_paths(self) -> dict[Path, bytes]:
        contents: dict[Path, bytes] = {}
        for path in expand_paths(self._paths):
            try:
                contents[path] = path.read_bytes()
            except FileNotFoundError:
                raise CatalogError("file not found", source=str(path)) from None
            except OSError as exc:
                raise CatalogError(f"cannot read: {exc}", source=str(path)) from None
        return contents

    def start(self) -> CatalogWatcher[T]:
        """Load once now (raising on broken files), then poll on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the watcher is already started")
        self.poll()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop polling and wait up to `timeout` seconds for the thread to end."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> CatalogWatcher[T]:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.poll()
            except Exception as exc:  # a reload must never kill the watcher
                self._on_error(exc)


def _stat(path: Path) -> tuple[str, int, int] | tuple[str]:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path),)
    return str(path), st.st_mtime_ns, st.st_size


def _digest(contents: Mapping[Path, bytes]) -> bytes:
    h = hashlib.sha256()
    for path in sorted(contents):
        h.update(str(path).encode())
        h.update(len(contents[path]).to_bytes(8, "big"))
        h.update(contents[path])
    return h.digest()
