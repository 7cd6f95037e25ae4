"""Per-source token buckets: how many events a source may send, on average and at once.

Each source has a bucket of `size` tokens refilled at `rate` tokens per second; a request of
n events takes n tokens or, if the bucket holds fewer, takes none and is told how long to wait.
Single-threaded (the event loop); the clock is injectable for tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`size` tokens at most, refilled continuously at `rate` per second."""

    rate: float
    size: float
    tokens: float
    updated: float

    def take(self, n: int, now: float) -> float:
        """Take `n` tokens and return 0, or take none and return the seconds until `n` are
        available (`math.inf` when `n` exceeds the bucket size)."""
        self.tokens = min(self.size, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        if n > self.size or self.rate <= 0:
            return math.inf
        return (n - self.tokens) / self.rate


class RateLimiter:
    """One `TokenBucket` per source; `rate` 0 disables limiting. Buckets start full."""

    def __init__(
        self, rate: float, size: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.size = size
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, source: str, n: int) -> float:
        """0 if `source` may send `n` events now (they are counted), else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket(self.rate, self.size, self.size, now)
        return bucket.take(n, now)
