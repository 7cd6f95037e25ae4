"""Retry a blocking write until it succeeds or the worker stops (then the batch is not acked)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from pipeline.sink.clickhouse import RetryPolicy, SinkStopped, retry_until_stopped

log = logging.getLogger("uptake.lifecycle")

T = TypeVar("T")


class LifecycleStopped(SinkStopped):
    """Stopped while a lifecycle write still failed: the caller must exit without acking."""


def until_done(
    write: Callable[[], T],
    what: str,
    stopping: threading.Event,
    policy: RetryPolicy | None = None,
) -> T:
    """Call `write` until it returns; back off exponentially between failures.

    Every write retried here is idempotent (same keys, same rows), so a write that failed after
    it partly landed may simply be sent again. Raises LifecycleStopped once `stopping` is set
    and the write still fails.
    """
    return retry_until_stopped(write, what, stopping, policy, stopped=LifecycleStopped, logger=log)
