"""Fault injection for drills and the reliability suite, as wrappers at the runtime's seam.

`seams_for(settings.faults)` turns the UPTAKE_CHAOS_* settings into `pipeline.ingest.seams.Seams`;
the CLI wires them in only when one of those settings is present (`FaultSettings.present`).

- UPTAKE_CHAOS_FAIL_INSERTS=N / UPTAKE_CHAOS_FAIL_INSERTS_FILE=path: sink inserts raise
  (`FaultyWarehouse`), so the sink retries as it would for a real outage.
- UPTAKE_CHAOS_KILL_AT + UPTAKE_CHAOS_KILL_AFTER_BATCHES=N: after N batches, SIGKILL during
  batch N+1 — before_insert (decoded, nothing written), mid_batch (`events` written, rejects
  not), after_insert (all written, offsets not committed), lifecycle_after_state (changelog
  written, milestones not), lifecycle_after_emit (milestones written, not confirmed).
- UPTAKE_CHAOS_IGNORE_WATERMARKS=true: the negative control — a sink without replay dedup.
- UPTAKE_CHAOS_POISON=step:text: the ingest step `step` (decode, pseudonymise, resolve_teams)
  raises on every message whose bytes hold `text` (`PoisonStep`): a message that always raises.
  `step:text:skip` is its negative control: the step empties the whole batch instead, as faust
  did when the exception escaped (the batch acked, nothing written).
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import msgspec

from pipeline.config.settings import FaultSettings
from pipeline.contract.decode import DecodedBatch
from pipeline.ingest.seams import Seams
from pipeline.lifecycle.engine import Emission
from pipeline.lifecycle.outputs import LifecycleOutputs
from pipeline.sink.clickhouse import ClickHouseSink
from pipeline.warehouse.connection import Warehouse

log = logging.getLogger("uptake.worker")

Fault = Callable[[str], None]  # called with a table name; raises to fail that insert


def seams_for(settings: FaultSettings) -> Seams:
    """The wrappers the fault settings ask for (wire them only when `settings.present`)."""
    before: list[Fault] = []
    after: list[Fault] = []
    if settings.fail_inserts:
        before.append(failing_inserts(settings.fail_inserts))
    if settings.fail_inserts_file:
        before.append(failing_while_exists(settings.fail_inserts_file))
    switch = None
    point = settings.kill_at
    if point in ("before_insert", "mid_batch", "after_insert"):
        switch = KillSwitch(point, settings.kill_after_batches)
        before.append(switch.before_insert)
        after.append(switch.after_insert)
        log.warning(
            "fault injection: SIGKILL %s after %d batches", point, settings.kill_after_batches
        )
    lifecycle_point = point.removeprefix("lifecycle_") if point.startswith("lifecycle_") else ""
    forgetful = settings.ignore_watermarks
    if forgetful:
        log.warning("negative control: the sink ignores its watermarks and will double count")

    def sink_warehouse(warehouse: Warehouse) -> Warehouse:
        if not (before or after):
            return warehouse
        return cast(Warehouse, FaultyWarehouse(warehouse, before, after))

    def batch_sink(sink: Any) -> Any:
        return sink if switch is None else KillAtSink(sink, switch)

    def lifecycle_outputs(outputs: LifecycleOutputs) -> LifecycleOutputs:
        if not lifecycle_point:
            return outputs
        wrapped = KillAtOutputs(outputs, lifecycle_point, settings.kill_after_batches)
        return cast(LifecycleOutputs, wrapped)

    poison_step, _, poison_text = settings.poison.partition(":")
    skip = poison_text.endswith(":skip")
    poison_text = poison_text.removesuffix(":skip")

    def ingest_step(name: str, step: Any) -> Any:
        if not poison_text or name != poison_step:
            return step
        log.warning("fault injection: %s raises on messages holding %r", name, poison_text)
        return PoisonStep(step, poison_text.encode(), skip_batch=skip)

    return Seams(
        sink_warehouse=sink_warehouse,
        ingest_step=ingest_step,
        new_sink=ForgetfulSink if forgetful else ClickHouseSink,
        batch_sink=batch_sink,
        lifecycle_outputs=lifecycle_outputs,
        dedup_replays=not forgetful,
    )


class FaultyWarehouse:
    """The warehouse with `before(table)` run ahead of each insert and `after(table)` after it."""

    def __init__(self, inner: Warehouse, before: Sequence[Fault], after: Sequence[Fault]) -> None:
        self.inner = inner
        self.before = tuple(before)
        self.after = tuple(after)

    def insert_columns(self, table: str, *args: Any, **kwargs: Any) -> int:
        for fault in self.before:
            fault(table)
        count = self.inner.insert_columns(table, *args, **kwargs)
        for hook in self.after:
            hook(table)
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class PoisonStep:
    """An ingest step that raises on a batch holding a message (decode: its bytes) or an event
    (later steps: its encoded form) with `marker`, else runs the step. With `skip_batch` (after
    decode only) it empties that batch instead: the loss the quarantine prevents."""

    def __init__(
        self, inner: Callable[[Any], Any], marker: bytes, skip_batch: bool = False
    ) -> None:
        self.inner = inner
        self.marker = marker
        self.skip_batch = skip_batch

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, list):  # decode: the messages
            poisoned = any(self.marker in (m.value or b"") for m in batch)
        else:
            poisoned = any(self.marker in msgspec.json.encode(e) for e in batch.events)
        if poisoned and self.skip_batch and not isinstance(batch, list):
            log.warning("chaos: the batch of a poison message is skipped (negative control)")
            self.inner(batch)
            for name in ("events", "partitions", "offsets", "topics", "user_keys", "teams"):
                getattr(batch, name).clear()
            batch.rejections.clear()
            return None
        if poisoned:
            raise RuntimeError("chaos: a poison message")
        return self.inner(batch)


class ForgetfulSink(ClickHouseSink):
    """The negative control: no watermarks, no id window, no deduplication tokens, so every
    replay is written again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["recent_ids"] = 0
        super().__init__(*args, **kwargs)

    def _watermarks_of(self, table: str) -> dict[tuple[str, int], int]:
        return {}

    def _insert_settings(self, token: str) -> dict[str, Any]:
        # A fresh token per insert: ClickHouse's block deduplication cannot fold a replay either
        # (`insert_deduplicate = 0` does not switch it off for non-replicated tables on chdb).
        return {"insert_deduplication_token": uuid.uuid4().hex}


class KillSwitch:
    """Counts batches and kills the process when the chosen point of the chosen batch comes."""

    def __init__(self, point: str, after_batches: int) -> None:
        self.point = point
        self.after_batches = after_batches
        self.batches_started = 0

    def batch_started(self) -> None:
        self.batches_started += 1

    @property
    def _armed(self) -> bool:
        return bool(self.point) and self.batches_started > self.after_batches

    def before_insert(self, table: str) -> None:
        if self._armed and self.point == "before_insert":
            self._kill(f"before the insert into {table}")

    def after_insert(self, table: str) -> None:
        if self._armed and self.point == "mid_batch" and table == "events":
            self._kill("between the events insert and the rejects")

    def after_write(self) -> None:
        if self._armed and self.point == "after_insert":
            self._kill("after every insert, before the offset commit")

    def _kill(self, where: str) -> None:
        kill(f"batch {self.batches_started}, {where}")


class KillAtSink:
    """The ingest loop's sink, counting batches for a `KillSwitch` around each write."""

    def __init__(self, inner: Any, switch: KillSwitch) -> None:
        self.inner = inner
        self.switch = switch

    @property
    def dead_letters(self) -> Any:
        return self.inner.dead_letters

    def write(self, batch: DecodedBatch) -> dict[str, int]:
        self.switch.batch_started()
        written: dict[str, int] = self.inner.write(batch)
        self.switch.after_write()
        return written

    def stop(self) -> None:
        self.inner.stop()

    def forget_watermarks(self) -> None:
        self.inner.forget_watermarks()


class KillAtOutputs:
    """Lifecycle outputs that SIGKILL just before (after_state) or after (after_emit) the write
    of batch N+1."""

    def __init__(self, inner: LifecycleOutputs, point: str, after_batches: int) -> None:
        self.inner = inner
        self.point = point
        self.after_batches = after_batches
        self.batches = 0
        self._last: Emission | None = None

    def write(self, emission: Emission) -> None:
        if emission is not self._last:  # a retried write is the same batch
            self._last = emission
            self.batches += 1
        armed = self.batches > self.after_batches
        if armed and self.point == "after_state":
            kill(f"lifecycle batch {self.batches}, after_state")
        self.inner.write(emission)
        if armed and self.point == "after_emit":
            kill(f"lifecycle batch {self.batches}, after_emit")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def kill(where: str) -> None:
    """SIGKILL this process: no cleanup, no commit, as an OOM kill or a lost node would."""
    log.warning("chaos: SIGKILL in %s", where)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def failing_inserts(count: int) -> Fault:
    """A fault that fails the first `count` inserts (every insert when negative)."""
    remaining = [count]

    def fault(table: str) -> None:
        if remaining[0] == 0:
            return
        remaining[0] -= 1
        raise ConnectionError(f"injected failure of the insert into {table} (chaos setting)")

    log.warning("fault injection: failing %s inserts", "all" if count < 0 else count)
    return fault


def failing_while_exists(path: str) -> Fault:
    """A fault that fails every insert while the file `path` exists: a warehouse outage a drill
    or a test switches on and off."""

    def fault(table: str) -> None:
        if os.path.exists(path):
            raise ConnectionError(f"injected failure of the insert into {table} ({path} exists)")

    log.warning("fault injection: inserts fail while %s exists", path)
    return fault


class FailingView:
    """A materialized view on `events` that throws on marker rows while it is armed: a view
    whose target fails after the `events` part was committed (hole 1 of issue #16; on a server,
    a target out of parts, memory or disk). Test-only: `install()` adds it to a warehouse, and
    `warehouse()` wraps the sink's warehouse so that each failed `events` insert uses up one of
    the `failures` (the view disarms after the last).
    """

    VIEW = "chaos_failing_view_mv"
    TARGET = "chaos_failing_view_rows"
    ARMED = "chaos_failing_view_armed"

    def __init__(self, marker_capability: str, failures: int = 1) -> None:
        self.marker = marker_capability
        self.failures = failures
        self.failed = 0

    def install(self, warehouse: Warehouse) -> None:
        marker = self.marker.replace("\\", "\\\\").replace("'", "\\'")
        warehouse.command(f"CREATE TABLE {self.ARMED} (armed UInt8) ENGINE = Memory")
        warehouse.command(
            f"CREATE TABLE {self.TARGET} (event_id UUID, ok UInt8) ENGINE = MergeTree ORDER BY ()"
        )
        warehouse.command(
            f"CREATE MATERIALIZED VIEW {self.VIEW} TO {self.TARGET} AS SELECT event_id, "
            f"toUInt8(throwIf(capability = '{marker}' AND (SELECT count() FROM {self.ARMED}) > 0,"
            f" 'chaos: the test-only view fails on a marker row')) AS ok FROM events"
        )
        warehouse.command(f"INSERT INTO {self.ARMED} VALUES (1)")

    def warehouse(self, inner: Warehouse) -> Warehouse:
        def disarm_after_failures(table: str) -> None:
            if table == "events":
                self.failed += 1
                if self.failed >= self.failures:
                    inner.command(f"TRUNCATE TABLE {self.ARMED}")

        return cast(Warehouse, FailureHook(inner, disarm_after_failures))


class FailureHook:
    """The warehouse with `on_failure(table)` run when an insert raises (the error still raises)."""

    def __init__(self, inner: Warehouse, on_failure: Fault) -> None:
        self.inner = inner
        self.on_failure = on_failure

    def insert_columns(self, table: str, *args: Any, **kwargs: Any) -> int:
        try:
            return self.inner.insert_columns(table, *args, **kwargs)
        except Exception:
            self.on_failure(table)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
