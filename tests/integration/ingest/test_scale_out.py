"""Scale-out on the embedded warehouse: several workers, one writer, rebalances — and the
warehouse ends identical to what one worker makes of the same topic.

One 4-partition topic holds simulated events (and garbage, so rejects flow too), produced in
three waves while the scale-out run consumes it:

- scale-out (UPTAKE_WRITER=kafka, warehouse B): `uptake writer` and worker 1; worker 2 joins,
  takes half the partitions and SIGKILLs itself right after publishing a batch, before
  committing it (so those offsets are published again by the next owner: overlapping batches on
  the writer topic); worker 3 joins and takes over; worker 1 leaves with SIGTERM. Every join and
  leave is a rebalance. (faust's assignor is sticky: a worker that joins a group whose members
  are not over capacity gets no partition, so the joins are placed where they take some.)
- baseline (UPTAKE_WRITER=direct, warehouse A): one worker in its own consumer group reads the
  whole topic.
- every table of B equals A: events row by row (resolved team, pseudonyms, source offsets),
  rejects, rollups, facts, catalogs; no event id twice; per team x type counts equal the ground
  truth. The writer must have dropped replayed rows (else the test did not exercise overlap).
- negative control (warehouse C): the same crash with the writer's watermarks off double counts,
  and the comparison catches it.

The adoption lifecycle is off in every run: workers of the kafka mode do not run it (docs).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import CoordinatorNotAvailableError, NotCoordinatorError

from pipeline.devtools.simulate.org import GroundTruth, Organisation, generate
from pipeline.kafka.producer import make_producer
from pipeline.kafka.topics import ensure_topics
from tests.conftest import REPO, env_without_settings, free_port

pytestmark = pytest.mark.integration

PARTITIONS = 4
EVENTS = 12_000
PER_MESSAGE = 10
BAD_EVERY = 9

SNAPSHOT_QUERIES = {
    "events": "SELECT * EXCEPT (ingested_at) FROM events ORDER BY event_id, _partition, _offset",
    "rejected_events": (
        "SELECT * EXCEPT (rejected_at) FROM rejected_events ORDER BY _partition, _offset, _index"
    ),
    # float sums are rounded: their last bits depend on the order blocks were merged in
    **{
        rollup: (
            "SELECT event_type, capability, team, bucket, sum(events), uniqExactMerge(users), "
            "sum(errors), min(first_seen), max(last_seen), round(sum(gpu_hours), 6), "
            "sum(durations) "
            f"FROM {rollup} GROUP BY ALL ORDER BY ALL"
        )
        for rollup in ("usage_minute", "usage_hour", "usage_day")
    },
    **{
        fact: f"SELECT * FROM {fact} FINAL ORDER BY ALL"
        for fact in ("deployments", "model_trainings", "incidents")
    },
    # valid_from of an assignment first read from a file is the load time minus the lookback:
    # it differs between any two warehouses, so it is left out
    "team_catalog": (
        "SELECT * EXCEPT (loaded_at, valid_from) FROM team_catalog FINAL ORDER BY ALL"
    ),
    "capability_catalog": "SELECT * EXCEPT (loaded_at) FROM capability_catalog FINAL ORDER BY ALL",
}


def snapshot_main(url: str) -> None:
    """Print every table's content as JSON (run in a subprocess: chdb is one process)."""
    from pipeline.warehouse.connection import opened

    out: dict[str, Any] = {}
    with opened(url) as warehouse:
        for table, sql in SNAPSHOT_QUERIES.items():
            if warehouse.table_exists(table):
                out[table] = [list(row) for row in warehouse.rows(sql)]
    print(json.dumps(out, default=str))


class Run:
    """One warehouse and consumer group: its processes share the events topic."""

    def __init__(self, name: str, base: dict[str, str], folder: Path, writer: str) -> None:
        self.name, self.folder = name, folder
        folder.mkdir(parents=True)
        self.url = f"chdb://{folder / 'warehouse'}"
        self.group = f"scale-{name}-{uuid.uuid4().hex[:6]}"
        self.env = dict(base)
        self.env.update(
            UPTAKE_CLICKHOUSE_URL=self.url,
            UPTAKE_HOME=str(folder / "home"),
            UPTAKE_CONSUMER_GROUP=self.group,
            UPTAKE_WRITER=writer,
            UPTAKE_WRITER_TOPIC=f"test.enriched.{self.group}",
        )
        self.processes: list[tuple[str, subprocess.Popen[str]]] = []

    def uptake(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self, label: str, *args: str, **env: str) -> subprocess.Popen[str]:
        log = open(self.folder / f"{label}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            env={
                **self.env,
                "UPTAKE_HOME": str(self.folder / f"home-{label}"),  # one per process, as in pods
                "UPTAKE_METRICS_PORT": str(free_port()),
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        self.processes.append((label, process))
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {label}\n{(self.folder / f'{label}.log').read_text()[-2500:]}"
            for label, _ in self.processes
        )

    def snapshot(self) -> dict[str, list[list[Any]]]:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from tests.integration.ingest.test_scale_out import snapshot_main; "
                f"snapshot_main({self.url!r})",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def stop_all(self) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def _group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Committed offsets of `group` on `topic` (read with the admin API: never joins it)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except (CoordinatorNotAvailableError, NotCoordinatorError):  # no coordinator elected yet
        return {}
    finally:
        admin.close()
    return {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}


def caught_up(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    """The group committed every partition of `topic` up to its end."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        ends = admin.list_partition_offsets(
            {TopicPartition(topic, p): OffsetSpec.LATEST for p in range(partitions)}
        )
    finally:
        admin.close()
    done = _group_offsets(bootstrap, group, topic)
    return all(done.get(tp.partition, 0) >= end.offset for tp, end in ends.items())


def committed_any(bootstrap: str, group: str, topic: str) -> bool:
    return any(offset > 0 for offset in _group_offsets(bootstrap, group, topic).values())


def wait_for(condition: Any, timeout: float, what: str, run: Run) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{run.logs()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def scenario(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Topic, ground truth and the base environment shared by every run of this module."""
    suffix = uuid.uuid4().hex[:8]
    topic = f"test.scale.{suffix}"
    ensure_topics(kafka_bootstrap, {topic: PARTITIONS})
    truth = GroundTruth()
    events = list(generate(Organisation.synthetic(31, teams=8), EVENTS, 31, truth=truth))
    messages: list[tuple[bytes, bytes]] = []
    for n, start in enumerate(range(0, len(events), PER_MESSAGE)):
        chunk = events[start : start + PER_MESSAGE]
        messages.append((chunk[0]["team"].encode(), msgspec.json.encode(chunk)))
        if n % BAD_EVERY == 0:
            messages.append((b"garbage-%d" % (n % PARTITIONS), b"not json %d" % n))
    base = env_without_settings()
    base.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        UPTAKE_EVENTS_TOPIC=topic,
        UPTAKE_DLQ_TOPIC=f"test.scale.dlq.{suffix}",
        UPTAKE_TOPIC_PARTITIONS=str(PARTITIONS),
        UPTAKE_PSEUDONYM_KEY="scale-out-test-key",
        UPTAKE_LIFECYCLE="false",
        UPTAKE_BATCH_MAX_MESSAGES="25",
        UPTAKE_FLUSH_INTERVAL_S="0.2",
        UPTAKE_ADOPTION_GAUGES_REFRESH_S="0",
        PYTHONUNBUFFERED="1",
    )
    bad = sum(1 for key, _ in messages if key.startswith(b"garbage"))
    return {
        "topic": topic,
        "truth": truth,
        "messages": messages,
        "bad": bad,
        "base": base,
        "root": tmp_path_factory.mktemp("scale-out"),
        "bootstrap": kafka_bootstrap,
        "produced": 0,
    }


def produce_wave(scenario: dict[str, Any], waves: int, wave: int) -> None:
    messages = scenario["messages"]
    share = -(-len(messages) // waves)
    producer = make_producer(scenario["bootstrap"])
    try:
        for key, value in messages[wave * share : (wave + 1) * share]:
            producer.send(scenario["topic"], key=key, value=value)
        producer.flush()
    finally:
        producer.close()
    scenario["produced"] = min(len(messages), (wave + 1) * share)


def owns_partitions(port: int) -> bool:
    """The worker reports consumer lag for a partition: the group assigned it some."""
    try:
        return 'uptake_consumer_lag_messages{partition="' in _page(port)
    except OSError:
        return False


def _page(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def metric(port: int, name: str) -> float:
    text = _page(port)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def differences(got: dict[str, list[Any]], want: dict[str, list[Any]]) -> dict[str, str]:
    diff = {}
    for table in sorted(set(got) | set(want)):
        a, b = got.get(table), want.get(table)
        if a != b:
            only_a = [row for row in a or [] if row not in (b or [])][:2]
            only_b = [row for row in b or [] if row not in (a or [])][:2]
            diff[table] = (
                f"{len(a or [])} rows vs {len(b or [])} in the baseline; "
                f"e.g. {only_a} instead of {only_b}"
            )
    return diff


def check_counts(snapshot: dict[str, list[list[Any]]], truth: GroundTruth, bad: int) -> None:
    rows = snapshot["events"]
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "an event id was written twice"
    events = len(rows)
    assert events == truth.total, f"{events} event rows for {truth.total}: lost or written twice"
    rejects = len(snapshot["rejected_events"])
    assert rejects == bad, f"{rejects} reject rows for {bad}: lost or written twice"
    # events is a ReplacingMergeTree: a merge may already have folded a row written twice, but
    # the rollups fed by its materialized view keep the double count
    counted = sum(int(row[4]) for row in snapshot["usage_minute"])
    assert counted == truth.total, f"the rollup counts {counted} events, not {truth.total}"


def by_team_and_type(snapshot: dict[str, list[list[Any]]]) -> Counter[tuple[str, str]]:
    # events columns: event_id, event_type, schema_version, occurred_at, source, team, ...
    return Counter((str(row[5]), str(row[1])) for row in snapshot["events"])


def test_workers_joining_crashing_and_leaving_leave_the_warehouse_as_one_worker_does(
    scenario: dict[str, Any],
) -> None:
    bootstrap, topic = scenario["bootstrap"], scenario["topic"]
    started = time.monotonic()
    scale = Run("scale", scenario["base"], scenario["root"] / "scale", writer="kafka")
    try:
        scale.uptake("migrate")
        writer_port = free_port()
        writer = scale.start("writer", "writer", UPTAKE_METRICS_PORT=str(writer_port))
        produce_wave(scenario, 3, 0)
        w1 = scale.start("worker1", "worker")
        wait_for(
            lambda: committed_any(bootstrap, scale.group, topic),
            90,
            "the first commit of worker 1",
            scale,
        )
        # worker 2 joins (rebalance: it takes half the partitions), publishes two batches and
        # dies by SIGKILL right after publishing the third, before committing it
        w2_port = free_port()
        w2 = scale.start(
            "worker2",
            "worker",
            UPTAKE_METRICS_PORT=str(w2_port),
            UPTAKE_CHAOS_KILL_AT="after_insert",
            UPTAKE_CHAOS_KILL_AFTER_BATCHES="2",
        )
        wait_for(lambda: owns_partitions(w2_port), 90, "worker 2 to get partitions", scale)
        produce_wave(scenario, 3, 1)
        assert w2.wait(timeout=120) == -signal.SIGKILL, scale.logs()
        # worker 3 joins; once worker 2's session expires it takes over its partitions
        w3_port = free_port()
        scale.start("worker3", "worker", UPTAKE_METRICS_PORT=str(w3_port))
        wait_for(lambda: owns_partitions(w3_port), 90, "worker 3 to get partitions", scale)
        w1.send_signal(signal.SIGTERM)  # worker 1 leaves (rebalance)
        assert w1.wait(timeout=60) == 0, scale.logs()
        produce_wave(scenario, 3, 2)
        wait_for(
            lambda: caught_up(bootstrap, scale.group, topic, PARTITIONS),
            120,
            "worker 3 to drain the topic",
            scale,
        )
        writer_topic = scale.env["UPTAKE_WRITER_TOPIC"]
        wait_for(
            lambda: caught_up(bootstrap, f"{scale.group}-writer", writer_topic, 1),
            60,
            "the writer to write every batch",
            scale,
        )
        replays = metric(writer_port, "uptake_sink_replayed_rows_skipped_total")
        for _, process in scale.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=60) == 0, scale.logs()
        scale.stop_all()
        assert replays > 0, "no overlapping batch reached the writer: the test proved nothing"
        scaled = scale.snapshot()
    finally:
        scale.stop_all()
    scale_seconds = time.monotonic() - started

    baseline = Run("single", scenario["base"], scenario["root"] / "single", writer="direct")
    try:
        baseline.uptake("migrate")
        worker = baseline.start("worker", "worker", "--exit-when-idle", "5")
        assert worker.wait(timeout=180) == 0, baseline.logs()
        single = baseline.snapshot()
    finally:
        baseline.stop_all()

    check_counts(single, scenario["truth"], scenario["bad"])
    check_counts(scaled, scenario["truth"], scenario["bad"])
    assert by_team_and_type(scaled) == by_team_and_type(single)
    assert {"events", "rejected_events", "usage_minute", "deployments"} <= set(single)
    assert differences(scaled, single) == {}
    print(
        f"\nscale-out: {scenario['truth'].total} events + {scenario['bad']} rejects, 3 workers "
        f"(two joined, one crashed after publishing, one left), {replays:.0f} replayed rows "
        f"dropped by the writer, {len(single)} tables identical to one worker's; "
        f"scale-out run {scale_seconds:.0f}s"
    )


def test_negative_control_without_watermarks_the_writer_double_counts(
    scenario: dict[str, Any],
) -> None:
    if scenario["produced"] < len(scenario["messages"]):
        for wave in range(3):
            produce_wave(scenario, 3, wave)
    bootstrap, topic = scenario["bootstrap"], scenario["topic"]
    control = Run("control", scenario["base"], scenario["root"] / "control", writer="kafka")
    try:
        control.uptake("migrate")
        writer = control.start("writer", "writer", UPTAKE_CHAOS_IGNORE_WATERMARKS="true")
        crashing = control.start(
            "worker1",
            "worker",
            UPTAKE_CHAOS_KILL_AT="after_insert",
            UPTAKE_CHAOS_KILL_AFTER_BATCHES="1",
        )
        assert crashing.wait(timeout=120) == -signal.SIGKILL, control.logs()
        control.start("worker2", "worker")
        wait_for(
            lambda: caught_up(bootstrap, control.group, topic, PARTITIONS),
            120,
            "the second worker to drain the topic",
            control,
        )
        writer_topic = control.env["UPTAKE_WRITER_TOPIC"]
        wait_for(
            lambda: caught_up(bootstrap, f"{control.group}-writer", writer_topic, 1),
            60,
            "the writer to write every batch",
            control,
        )
        for _, process in control.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=60) == 0, control.logs()
        control.stop_all()
        snapshot = control.snapshot()
    finally:
        control.stop_all()
    counted = sum(int(row[4]) for row in snapshot["usage_minute"])
    assert counted > scenario["truth"].total, "without watermarks a replayed batch counts twice"
    with pytest.raises(AssertionError, match=r"written twice|the rollup counts"):
        check_counts(snapshot, scenario["truth"], scenario["bad"])  # the check above catches it
