"""The event ids a worker wrote most recently, so that an event sent twice is written once.

Bounded: at most `capacity` ids (about 90 bytes each), oldest forgotten first; `horizon_s()` is
how old a re-send can be and still be caught. Ids enter only after their insert was acknowledged
(`remember`); the sink seeds the set from the newest ids of `events` when it (re)reads its
watermarks. In memory: never blocks. Why offsets are not enough, and the bound:
docs/guarantees.md, "How" (point 4) and "Re-sends and the id window".
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

DEFAULT_CAPACITY = 1_000_000


class RecentIds:
    """A FIFO-bounded set of 128-bit event ids."""

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.time
    ) -> None:
        if capacity < 0:
            raise ValueError("capacity must be 0 (off) or positive")
        self.capacity = capacity
        self.clock = clock
        self._ids: set[int] = set()
        self._order: deque[int] = deque()
        # [when remembered, how many of those ids are still in the window], oldest first
        self._since: deque[list[float]] = deque()
        self._started = clock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def clear(self) -> None:
        self._ids.clear()
        self._order.clear()
        self._since.clear()
        self._started = self.clock()

    def horizon_s(self) -> float:
        """How old a re-send can be and still be caught: the age of the oldest id remembered
        (ids seeded from the warehouse count from when they were seeded), or the time since the
        window was (re)started while it has never been full."""
        now = self.clock()
        if len(self._order) < self.capacity or not self._since:
            return now - self._started
        return now - self._since[0][0]

    def remember(self, ids: Iterable[int]) -> None:
        """Add ids (oldest first), forgetting the oldest beyond `capacity`."""
        if not self.capacity:
            return
        known, order = self._ids, self._order
        added = 0
        for event_id in ids:
            if event_id not in known:
                known.add(event_id)
                order.append(event_id)
                added += 1
        if added:
            self._since.append([self.clock(), added])
        since = self._since
        while len(order) > self.capacity:
            known.discard(order.popleft())
            since[0][1] -= 1
            if not since[0][1]:
                since.popleft()

    def first_sightings(self, ids: list[int]) -> list[int] | None:
        """Indices of ids neither remembered nor earlier in `ids`; None when that is all of them."""
        if not self.capacity:
            return None
        known = self._ids
        seen: set[int] = set()
        keep: list[int] = []
        for i, event_id in enumerate(ids):
            if event_id in known or event_id in seen:
                continue
            seen.add(event_id)
            keep.append(i)
        return None if len(keep) == len(ids) else keep
