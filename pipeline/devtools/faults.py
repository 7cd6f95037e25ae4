"""Fault injection for drills and the reliability suite: kill the worker at a chosen point.

Set UPTAKE_CHAOS_KILL_AT (before_insert | mid_batch | after_insert) and
UPTAKE_CHAOS_KILL_AFTER_BATCHES=N: the worker finishes N batches, then SIGKILLs itself during
batch N+1 at that point — no cleanup, no commit, no goodbye, as an OOM kill or a lost node would.

- before_insert: the batch was decoded, nothing of it written;
- mid_batch: `events` written, the rejects (DLQ and `rejected_events`) not yet;
- after_insert: every table written, the offsets not yet committed.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("uptake.worker")


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
        log.warning("chaos: SIGKILL in batch %d, %s", self.batches_started, where)
        for handler in logging.getLogger("uptake").handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
