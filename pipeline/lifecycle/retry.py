"""Retry a blocking write until it succeeds or the worker stops (then the batch is not acked)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from pipeline.worker.sink import RetryPolicy, SinkStopped

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
    policy = policy or RetryPolicy()
    delay = policy.first_delay_s
    while True:
        try:
            return write()
        except Exception as exc:
            if stopping.is_set():
                raise LifecycleStopped(f"{what} failed: {exc}") from exc
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            if stopping.wait(delay):
                raise LifecycleStopped(f"{what} failed: {exc}") from exc
            delay = min(delay * policy.factor, policy.max_delay_s)
