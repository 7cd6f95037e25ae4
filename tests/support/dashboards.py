"""Shared by the dashboard and report tests: the committed dashboards, and a warehouse to query.

`filled_warehouse` (the fixture of tests/integration/dashboards/conftest.py, with the
`FilledWarehouse` here) is one warehouse for the whole session, filled the way production fills it:
the simulator's organisation (with its adoption scenario: teams deploy and have incidents all
window long and adopt the platform's capabilities at planned moments) produces nine weeks of
events (with developers' ratings, `with_feedback`) to a private topic of the session's real
Kafka broker, and the real worker (`uptake worker`, subprocess) validates, enriches and
writes them, with its materialized views and lifecycle milestones. Queries run in one
subprocess per call (`run_queries`), because the embedded engine opens a folder in one process
at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.dashboards.panel_queries import panels_of  # noqa: F401 - re-exported to the tests
from tests.conftest import REPO

DASHBOARDS = REPO / "dashboards"
SEED = 20250601
TEAMS = 12
EVENTS = 60_000
WINDOW = timedelta(days=63)


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


@dataclass(frozen=True)
class Result:
    """One query's result: column names, ClickHouse type names, rows (non-numbers as text)."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


@dataclass
class FilledWarehouse:
    """The session's warehouse and the environment that reaches it."""

    url: str
    env: dict[str, str]
    start: datetime
    end: datetime
    teams: tuple[str, ...]
    worker_log: str = field(repr=False, default="")

    def python(
        self, *args: str, timeout: float = 600, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `python ARGS` with this warehouse's environment; `check`: assert it exited 0."""
        done = subprocess.run(
            [sys.executable, *args],
            input=stdin,
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert not check or done.returncode == 0, (
            f"python {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done

    def uptake(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `uptake ARGS` on this warehouse; `check`: assert it exited 0."""
        return self.python("-m", "pipeline.cli", *args, timeout=timeout, check=check)

    def query_many(self, statements: dict[str, str]) -> dict[str, Result | str]:
        """Run every statement (id -> SQL); a failed one maps to its error message."""
        done = self.python(
            "-m",
            "tests.support.run_queries",
            self.url,
            stdin=json.dumps([{"id": k, "sql": v} for k, v in statements.items()]),
            timeout=900,
        )
        out: dict[str, Result | str] = {}
        for item in json.loads(done.stdout):
            out[item["id"]] = (
                item["error"]
                if item["error"]
                else Result(item["columns"], item["types"], item["rows"])
            )
        return out
