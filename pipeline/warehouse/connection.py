"""ClickHouse by URL: the embedded engine (`chdb:///path`) or a server (`http(s)://`).

clickhouse-connect is the only client. The SQL is the same for both kinds.

One chdb data folder can be opened by one process at a time, and one process can open one chdb
folder. Uptake takes an advisory lock file in the folder before chdb opens it, so a second
process gets `WarehouseLocked` naming the process that holds it and what to do, instead of
the engine's opaque "Error initializing EmbeddedServer". Inside a process, connections to the
same folder share the lock (and the engine).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.config.settings import redact_url

DEFAULT_DATABASE = "uptake"
LOCK_FILE = ".uptake.lock"


class WarehouseError(RuntimeError):
    """The warehouse cannot be used; the message says why and what to do."""


class WarehouseLocked(WarehouseError):
    """Another process holds the embedded warehouse folder."""


@dataclass(frozen=True)
class Target:
    """Where a warehouse URL points."""

    kind: str  # "chdb" or "server"
    database: str
    path: Path | None = None
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = ""
    secure: bool = False
    url: str = ""

    def __repr__(self) -> str:
        return f"Target({self.kind}, {redact_url(self.url)!r}, database={self.database!r})"


def parse_url(url: str) -> Target:
    """Parse a warehouse URL; raise WarehouseError with the accepted forms when it is wrong."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "chdb":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise WarehouseError(
                f"{redact_url(url)} is not an embedded warehouse URL: use chdb:///absolute/folder "
                "(three slashes)"
            )
        database = query.get("database", DEFAULT_DATABASE)
        return Target("chdb", database, path=Path(unquote(parts.path)), url=url)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise WarehouseError(f"{redact_url(url)} names no host: use http://host:8123/database")
        database = unquote(parts.path.strip("/")) or query.get("database", DEFAULT_DATABASE)
        secure = parts.scheme == "https"
        try:
            port = parts.port
        except ValueError:
            raise WarehouseError(
                f"{redact_url(url)} has an invalid port (a '/' or ':' in the password must be "
                "percent-encoded)"
            ) from None
        return Target(
            "server",
            database,
            host=parts.hostname,
            port=port or (8443 if secure else 8123),
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            secure=secure,
            url=url,
        )
    raise WarehouseError(
        f"unsupported warehouse URL {redact_url(url)!r}: use chdb:///folder (embedded) or "
        "http(s)://user:password@host:port/database (ClickHouse server)"
    )


def with_database(url: str, database: str) -> str:
    """The warehouse URL `url` with its database replaced by `database` (same engine/server)."""
    target = parse_url(url)  # raises for a URL that is not a warehouse URL
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items() if k != "database"}
    if target.kind == "chdb":
        query["database"] = database
        return f"chdb://{parts.path}?{urlencode(query)}"  # urlunsplit would drop the "//"
    path = "/" + quote(database, safe="")
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


class _FolderLock:
    """An flock on `<folder>/.uptake.lock`, shared by every connection of this process."""

    _held: dict[Path, tuple[int, int]] = {}  # folder -> (fd, refcount)
    _mutex = threading.Lock()

    @classmethod
    def acquire(cls, folder: Path) -> None:
        with cls._mutex:
            if folder in cls._held:
                fd, count = cls._held[folder]
                cls._held[folder] = (fd, count + 1)
                return
            if cls._held:
                other = next(iter(cls._held))
                raise WarehouseError(
                    f"this process already opened the embedded warehouse {other}; chdb opens "
                    f"one folder per process, so {folder} cannot be opened too"
                )
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise WarehouseLocked(_locked_message(folder, holder)) from None
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(_holder_info()).encode())
            cls._held[folder] = (fd, 1)

    @classmethod
    def release(cls, folder: Path) -> None:
        with cls._mutex:
            if folder not in cls._held:
                return
            fd, count = cls._held[folder]
            # At zero the fd stays open: chdb keeps its engine for the life of the process, so
            # no other process may open the folder before this one ends.
            cls._held[folder] = (fd, max(count - 1, 0))


def _holder_info() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:3]),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data or b"{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _locked_message(folder: Path, holder: dict[str, Any]) -> str:
    who = f"process {holder.get('pid', '?')}"
    if holder.get("command"):
        who += f" ({holder['command']}, since {holder.get('since', '?')})"
    return (
        f"the embedded warehouse {folder} is in use by {who}. The embedded ClickHouse engine "
        f"lets one process open a data folder at a time. Wait for that process to finish or stop "
        f"it (kill {holder.get('pid', '<pid>')}), then try again; to query while a worker runs, "
        "use a ClickHouse server (UPTAKE_CLICKHOUSE_URL=http://...)."
    )


class Warehouse:
    """A connection to the warehouse's database. Close it (or use `with`) when done.

    Thread-safety: one Warehouse per thread; the sink uses its own.
    """

    def __init__(self, target: Target, client: Client) -> None:
        self.target = target
        self.client = client
        self._closed = False

    @property
    def kind(self) -> str:
        return self.target.kind

    @property
    def database(self) -> str:
        return self.target.database

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.client.command(sql, parameters=parameters)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.client.query(sql, parameters=parameters).result_rows]

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = self.client.query(sql, parameters=parameters)
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: dict[str, Any] | None = None,
        wire_types: Sequence[str] | None = None,
    ) -> int:
        """Insert one column-oriented block; returns rows written. Atomic for one block.

        `wire_types` send columns as other types than the table's (ClickHouse converts).
        """
        summary = self.client.insert(
            table,
            columns,
            column_names=list(column_names),
            column_type_names=list(wire_types) if wire_types else None,
            column_oriented=True,
            settings=settings,
        )
        return int(summary.written_rows)

    def table_exists(self, table: str) -> bool:
        return bool(
            self.client.command(
                "SELECT count() FROM system.tables "
                "WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": self.database, "t": table},
            )
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.client.close()
        if self.target.path is not None:
            _FolderLock.release(self.target.path)

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    url: str, *, create_database: bool = False, engine_options: Mapping[str, int] | None = None
) -> Warehouse:
    """Open the warehouse at `url` and select its database.

    `engine_options` (ClickHouse setting names, e.g. WarehouseSettings.engine_options()) bound
    the embedded engine; a server ignores them. Server-level ones take effect when the engine
    starts, that is with the process's first connection: a later connection asking for other
    values gets WarehouseError instead of silently running without them.

    Raises WarehouseLocked when another process holds an embedded folder, and WarehouseError
    when the database does not exist (unless `create_database`), the server does not answer or
    the engine refuses a setting.
    """
    target = parse_url(url)
    if target.kind == "chdb":
        assert target.path is not None
        folder = target.path.resolve()
        target = Target("chdb", target.database, path=folder, url=url)
        _FolderLock.acquire(folder)
        options = {name: str(value) for name, value in (engine_options or {}).items()}
        try:
            client = clickhouse_connect.get_client(
                interface="chdb", path=str(folder), chdb_options=options or None
            )
            _check_engine(client, engine_options or {})
        except Exception as exc:
            _FolderLock.release(folder)
            if isinstance(exc, WarehouseError):
                raise
            what = f" with the settings {options}" if options else ""
            raise WarehouseError(
                f"cannot open the embedded warehouse {folder}{what}: {exc}"
            ) from exc
    else:
        try:
            client = clickhouse_connect.get_client(
                host=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                secure=target.secure,
                connect_timeout=10,
                send_receive_timeout=300,
            )
        except Exception as exc:
            raise WarehouseError(
                f"cannot reach the ClickHouse server at {redact_url(url)}: {exc}"
            ) from exc
    warehouse = Warehouse(target, client)
    try:
        _use_database(warehouse, create_database)
    except BaseException:
        warehouse.close()
        raise
    return warehouse


def engine_settings(client: Client, names: Iterable[str]) -> dict[str, int]:
    """The values in effect of the named engine settings: server-level ones from
    system.server_settings, the session's from system.settings."""
    wanted = sorted(set(names))
    found: dict[str, int] = {}
    for table in ("system.settings", "system.server_settings"):  # the server's value wins
        result = client.query(
            f"SELECT name, value FROM {table} WHERE name IN {{names:Array(String)}}",
            parameters={"names": wanted},
        )
        found.update((str(name), int(value)) for name, value in result.result_rows)
    return found


def _check_engine(client: Client, options: Mapping[str, int]) -> None:
    if not options:
        return
    found = engine_settings(client, options)
    unknown = sorted(set(options) - set(found))
    if unknown:
        raise WarehouseError(f"the embedded engine has no setting {', '.join(unknown)}")
    differ = {name: found[name] for name, value in options.items() if found[name] != int(value)}
    if differ:
        raise WarehouseError(
            f"the embedded engine of this process runs with {differ}, not the requested "
            f"{ {name: options[name] for name in differ} }: it was started by an earlier "
            "connection with other settings (server settings apply when the engine starts)"
        )


def _use_database(warehouse: Warehouse, create: bool) -> None:
    db = warehouse.database
    exists = warehouse.client.command(
        "SELECT count() FROM system.databases WHERE name = {db:String}", parameters={"db": db}
    )
    if not exists:
        if not create:
            raise WarehouseError(
                f"the warehouse has no database {db!r} yet: run `uptake migrate` first"
            )
        warehouse.client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(db)}")
    warehouse.client.database = db


def quote_identifier(name: str) -> str:
    """Quote a ClickHouse identifier (database, table or column name) with backticks."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@contextmanager
def opened(url: str, *, create_database: bool = False) -> Iterator[Warehouse]:
    warehouse = connect(url, create_database=create_database)
    try:
        yield warehouse
    finally:
        warehouse.close()
