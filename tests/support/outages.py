"""Taking a LocalBroker down and up again on purpose, and what the producers saw of it."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from pipeline.devtools.broker import LocalBroker
from tests.conftest import wait_until

DOWN_S = 5.0  # the broker stays down this long, plus the time it takes to start
HANG_S = 1.0  # "hang-kill": the JVM is stopped (SIGSTOP) this long before its SIGKILL


@dataclass(frozen=True)
class Window:
    """One outage: the broker surely acknowledged nothing from `down_from` to `down_until`
    (when start() was called) and answered again at `back_at` (monotonic seconds)."""

    kind: str
    down_from: float
    down_until: float
    back_at: float

    @property
    def seconds(self) -> float:
        return self.back_at - self.down_from


@dataclass
class Outages:
    """What the main thread tells the load threads about the broker."""

    index: int = -1  # the current or last outage
    back_at: float | None = 0.0  # monotonic time the broker answered again; None while down
    windows: list[Window] = field(default_factory=list)


def outage(broker: LocalBroker, kind: str, state: Outages) -> Window:
    """Take the broker down, hold it down DOWN_S, start it again on the same home and storage.

    "stop": graceful (SIGTERM, controlled shutdown). "hang-kill": the JVM stalls (SIGSTOP) for
    HANG_S, so requests sent meanwhile are in flight, unanswered, when it is SIGKILLed.
    """
    state.index += 1
    state.back_at = None
    if kind == "stop":
        assert broker.stop(timeout=30)
        down_from = time.monotonic()
    else:
        pid = broker.status(timeout=1).pid
        assert pid is not None, "the broker is not running"
        os.kill(pid, signal.SIGSTOP)
        down_from = time.monotonic()
        time.sleep(HANG_S)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not broker.status(timeout=0.5).running, 10, what="the JVM to die")
    time.sleep(DOWN_S)
    down_until = time.monotonic()
    broker.start(timeout=120, progress=lambda _: None)
    state.back_at = time.monotonic()
    window = Window(kind, down_from, down_until, state.back_at)
    state.windows.append(window)
    return window


@dataclass
class Recovery:
    """How a producer came back after outage number `outage`."""

    outage: int
    by_itself: bool  # it worked again without being replaced (SDK client) or restarted
    after_s: float | None  # seconds after the broker answered again
