"""The event ids a worker wrote most recently, so that an event sent twice is written once.

Offset watermarks (pipeline/sink/clickhouse.py) stop a *replay* of the same Kafka records from being
written twice. They cannot see the same event arriving as two different records: an emitter that
re-sends after a timeout, a producer retry after a broker outage. `events` folds those by
`event_id` (ReplacingMergeTree), but its materialized views (rollups, facts) count what is
inserted, so the sink drops an event whose id is among the last `capacity` ids it wrote.

Contract:
- Bounded: at most `capacity` ids (128-bit ints, ~90 bytes each with the set and the queue),
  oldest forgotten first. An id re-sent after that many newer events is not caught here; it still
  folds in `events` and would count twice in the rollups — docs/guarantees.md says so.
- Ids enter only after their insert was acknowledged (`remember`), so a retried insert never
  mistakes its own rows for duplicates.
- Seeded from the warehouse (the newest ids of `events`) when the sink (re)reads its watermarks:
  at start and after a rebalance, when another worker may have written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

DEFAULT_CAPACITY = 1_000_000


class RecentIds:
    """A FIFO-bounded set of 128-bit event ids."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError("capacity must be 0 (off) or positive")
        self.capacity = capacity
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def clear(self) -> None:
        self._ids.clear()
        self._order.clear()

    def remember(self, ids: Iterable[int]) -> None:
        """Add ids (oldest first), forgetting the oldest beyond `capacity`."""
        if not self.capacity:
            return
        known, order = self._ids, self._order
        for event_id in ids:
            if event_id not in known:
                known.add(event_id)
                order.append(event_id)
        while len(order) > self.capacity:
            known.discard(order.popleft())

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
