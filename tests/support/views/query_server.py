"""A warehouse session in a process of its own, driven over stdin/stdout with JSON lines.

The embedded engine opens one folder per process, and the test process may already hold another
one; this process opens the loaded warehouse once and answers many queries, which is much
faster than one `uptake query` process per query. Request: {"sql": ..., "database": ...}
(database optional: another database of the same warehouse, created on first use and migrated
when "migrate" is true). Answer: {"names": [...], "rows": [[...], ...]} or {"error": "..."}.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        return urlunsplit(parts._replace(query=f"database={database}"))
    return urlunsplit(parts._replace(path=f"/{database}"))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def main(url: str) -> None:
    sessions: dict[str, Warehouse] = {"": connect(url)}
    for line in sys.stdin:
        request = msgspec.json.decode(line)
        try:
            database = request.get("database") or ""
            if database not in sessions:
                sessions[database] = connect(_with_database(url, database), create_database=True)
                if request.get("migrate"):
                    migrate(sessions[database], progress=lambda _: None)
            warehouse = sessions[database]
            if request.get("command"):
                warehouse.command(request["sql"])
                answer: dict[str, Any] = {"names": [], "rows": []}
            else:
                names, rows = warehouse.query(request["sql"])
                answer = {"names": names, "rows": _plain(rows)}
        except Exception as exc:  # the test reads the message
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
