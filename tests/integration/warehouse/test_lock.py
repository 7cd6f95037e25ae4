"""The embedded warehouse lock, across real processes.

One process holds a chdb folder open; a second `uptake` process must get a clear message naming
the holder instead of the engine's opaque error, and once the holder is gone the folder opens
again. Every chdb open here happens in a subprocess: the pytest process opens none.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, env_without_settings

pytestmark = pytest.mark.integration

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pipeline.warehouse.connection import connect
    warehouse = connect(sys.argv[1], create_database=True)
    print("ready", flush=True)
    while True:
        time.sleep(60)
    """
)


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = env_without_settings()
    env.update({"UPTAKE_HOME": str(tmp_path / "home"), "UPTAKE_CLICKHOUSE_URL": url})
    return env


def _uptake(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "wh"


@pytest.fixture
def holder(folder: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that opened the folder (and its database) and keeps it until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"chdb://{folder}"],
        env=_env(tmp_path, f"chdb://{folder}"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"the holder did not open the warehouse: {line!r}\n{err}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _assert_locked_message(done: subprocess.CompletedProcess[str], pid: int, folder: Path) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    message = done.stderr
    assert f"process {pid}" in message  # who holds it
    assert str(folder.resolve()) in message  # which folder
    assert "one process open a data folder at a time" in message  # why
    assert f"kill {pid}" in message  # what to do ...
    assert "try again" in message
    assert "UPTAKE_CLICKHOUSE_URL=http://" in message  # ... or use a server
    # The engine's own error never reaches the user.
    assert "EmbeddedServer" not in message


def test_a_second_process_is_told_who_holds_the_warehouse_and_can_open_it_afterwards(
    holder: subprocess.Popen[str], folder: Path, tmp_path: Path
) -> None:
    env = _env(tmp_path, f"chdb://{folder}")

    # The lock file records the holder for the message.
    recorded = json.loads((folder / ".uptake.lock").read_text())
    assert recorded["pid"] == holder.pid

    done = _uptake(env, "query", "SELECT 1")
    _assert_locked_message(done, holder.pid, folder)

    # migrate is refused the same way and changes nothing while the holder runs.
    done = _uptake(env, "migrate")
    _assert_locked_message(done, holder.pid, folder)

    holder.kill()
    holder.wait(timeout=30)

    # The lock died with its process: no stale lock file blocks the next one.
    done = _uptake(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.startswith(f"migrated chdb://{folder} to version ")
    done = _uptake(env, "query", "--format", "tsv", "SELECT count() AS n FROM events")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "n\n0\n"
