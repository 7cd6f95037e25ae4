"""Replay protection for webhooks: the delivery ids already handled, for a bounded time.

GitHub (`X-GitHub-Delivery`), GitLab (`Idempotency-Key`, else `X-Gitlab-Event-UUID`) and the
generic adapter (`X-Uptake-Delivery`) name each delivery; a redelivery, manual or automatic,
carries the same id. The collector remembers an id once the delivery was handled (its events
acknowledged by Kafka, or nothing to record) and answers the same id again with 200 without
producing: the first answer's work is done, nothing new is queued. A delivery that failed
(401, 413, 503 ...) is not remembered, so its retry is handled in full.

Bounds (docs/webhooks.md#replays): per collector process and in memory (a restart, or another
replica behind the load balancer, handles a replay again; the event ids are deterministic, so
the warehouse folds it within its dedup window); at most `entries` ids, each for `ttl_s`; when
full, the oldest id is forgotten first. A delivery without an id is handled every time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class DeliveryCache:
    """Delivery ids -> when they were handled; not thread-safe (one event loop uses it)."""

    def __init__(
        self, ttl_s: float, entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_s <= 0 or entries < 1:
            raise ValueError("the replay cache needs ttl_s > 0 and entries >= 1")
        self.ttl_s = ttl_s
        self.entries = entries
        self._clock = clock
        self._handled: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._handled)

    def handled_at(self, delivery: str) -> float | None:
        """When `delivery` was handled (clock seconds), or None when it was not (or expired)."""
        self._expire()
        return self._handled.get(delivery)

    def remember(self, delivery: str) -> None:
        """Record `delivery` as handled now; forget the oldest id beyond `entries`."""
        self._handled[delivery] = self._clock()
        self._handled.move_to_end(delivery)
        while len(self._handled) > self.entries:
            self._handled.popitem(last=False)

    def _expire(self) -> None:
        oldest = self._clock() - self.ttl_s
        while self._handled:
            delivery, at = next(iter(self._handled.items()))
            if at > oldest:
                return
            del self._handled[delivery]
