"""A pipeline on a broker of the test's own, and the worker subprocess under supervision."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from pipeline.kafka.topics import ensure_topics
from tests.conftest import Pipeline, env_without_settings, free_port, wait_until
from tests.support.topics import committed_lag

NO_MERGES_SQL = (
    "ALTER TABLE events MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1, "
    "max_bytes_to_merge_at_min_space_in_pool = 1"
)


def make_pipeline(bootstrap: str, root: Path, server_url: str | None) -> Pipeline:
    """Like tests/conftest.py's `pipeline_env`, but on `bootstrap` (our broker); migrated."""
    suffix = uuid.uuid4().hex[:8]
    env = env_without_settings()
    warehouse = (
        f"{server_url}/t_{uuid.uuid4().hex[:12]}" if server_url else f"chdb://{root / 'warehouse'}"
    )
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "UPTAKE_CLICKHOUSE_URL": warehouse,
            "UPTAKE_HOME": str(root / "home"),
            "UPTAKE_EVENTS_TOPIC": f"restart.events.{suffix}",
            "UPTAKE_DLQ_TOPIC": f"restart.events.dlq.{suffix}",
            "UPTAKE_CONSUMER_GROUP": f"restart-worker-{suffix}",
            "UPTAKE_METRICS_PORT": str(free_port()),
            "UPTAKE_FLUSH_INTERVAL_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    home = root / "home"
    home.mkdir(parents=True)
    pipeline = Pipeline(env, home)
    pipeline.run("migrate")
    # No background merges in this test's warehouse: the ReplacingMergeTree would fold a row
    # the pipeline wrote twice, so count() could not show it. Now count() is what was written.
    pipeline.run("query", NO_MERGES_SQL)
    ensure_topics(bootstrap, {env["UPTAKE_EVENTS_TOPIC"]: 4, env["UPTAKE_DLQ_TOPIC"]: 1})
    return pipeline


class SupervisedWorker:
    """The worker subprocess; started again if it exits on its own (each restart counted)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.proc = pipeline.start_worker()
        self.restarts = 0
        self.exit_codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the worker answers /readyz: an outage must meet a running worker, not one
        still starting (that one exits and is counted as a restart)."""
        url = f"http://127.0.0.1:{self.pipeline.env['UPTAKE_METRICS_PORT']}/readyz"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
            assert time.monotonic() < deadline, f"the worker was not ready in {timeout} s"
            time.sleep(0.3)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            code = self.proc.poll()
            if code is not None:
                self.exit_codes.append(code)
                self.restarts += 1
                self.proc = self.pipeline.start_worker()

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (None if it had to be killed)."""
        self._stop.set()
        self._thread.join(5)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None


def wait_caught_up(pipeline: Pipeline, worker: SupervisedWorker, timeout: float = 120) -> None:
    """Until the worker committed the whole topic (it commits only after ClickHouse acked)."""
    env = pipeline.env
    args = (
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["UPTAKE_CONSUMER_GROUP"],
        env["UPTAKE_EVENTS_TOPIC"],
    )
    wait_until(
        lambda: committed_lag(*args) == 0,
        timeout=timeout,
        interval=1.0,
        what=f"the worker to commit the whole topic (restarts {worker.restarts}):\n"
        + pipeline.worker_log()[-3000:],
    )
