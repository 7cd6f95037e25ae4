"""The event ids a worker wrote most recently, so that an event sent twice is written once.

Bounded: at most `capacity` ids, oldest forgotten first; `horizon_s()` is how old a re-send can
be and still be caught. Ids enter only after their insert was acknowledged (`remember`); the sink
seeds the set from the newest ids of `events` when it (re)reads its watermarks. In memory: never
blocks. Why offsets are not enough, and the bound: docs/guarantees.md, "How" (point 4) and
"Re-sends and the id window".

Compact: the ids live in flat arrays allocated once for `capacity` (`BYTES_PER_ID`, 28 bytes an
id: 28 MB for the default million, where a set and a deque of Python ints took ~90): a ring of
the ids' high and low 64 bits in FIFO order, and an open-addressing table (linear probing, at
most half full, deletion by backward shift) from a hash of the id to its ring slot.
Measurements: docs/benchmarks.md, "Batch size and memory".
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable

DEFAULT_CAPACITY = 1_000_000

# an id's two 64-bit halves and its slot's table position, and two 4-byte table entries
BYTES_PER_ID = 8 + 8 + 4 + 2 * 4

_LOW = (1 << 64) - 1
_ID_LIMIT = 1 << 128
_FIBONACCI = 0x9E3779B97F4A7C15  # spreads hash(id) over the table (ids often count up)


class RecentIds:
    """A FIFO-bounded set of 128-bit event ids (ints from 0 to 2**128 - 1)."""

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.time
    ) -> None:
        if capacity < 0:
            raise ValueError("capacity must be 0 (off) or positive")
        self.capacity = capacity
        self.clock = clock
        # the table has 2**bits positions, more than twice the capacity: probe runs stay short
        bits = max(3, (2 * capacity).bit_length())
        self._mask = (1 << bits) - 1
        self._shift = 64 - bits
        self._high = array("Q", bytes(8 * capacity))
        self._low = array("Q", bytes(8 * capacity))
        self._home = array("I", bytes(4 * capacity))  # where each slot's id starts probing
        self._table = array("I")  # ring slot + 1 at each position, 0 where empty
        self._oldest = 0  # ring slot of the oldest id
        self._size = 0
        # [when remembered, how many of those ids are still in the window], oldest first
        self._since: deque[list[float]] = deque()
        self.clear()

    def __len__(self) -> int:
        return self._size

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, int) or not 0 <= event_id < _ID_LIMIT:
            return False
        return not self._unknown([event_id])

    def clear(self) -> None:
        self._table = array("I", bytes(4 * (self._mask + 1))) if self.capacity else array("I")
        self._oldest = 0
        self._size = 0
        self._since.clear()
        self._started = self.clock()

    def horizon_s(self) -> float:
        """How old a re-send can be and still be caught: the age of the oldest id remembered
        (ids seeded from the warehouse count from when they were seeded), or the time since the
        window was (re)started while it has never been full."""
        now = self.clock()
        if self._size < self.capacity or not self._since:
            return now - self._started
        return now - self._since[0][0]

    def remember(self, ids: Iterable[int]) -> None:
        """Add ids (oldest first), forgetting the oldest beyond `capacity`."""
        if not self.capacity:
            return
        listed = ids if isinstance(ids, list) else list(ids)
        fresh = [listed[i] for i in self._unknown(listed)]
        if not fresh:
            return
        if min(fresh) < 0 or max(fresh) >= _ID_LIMIT:
            raise ValueError("an event id is an int from 0 to 2**128 - 1")
        self._since.append([self.clock(), len(fresh)])
        table, high, low, home = self._table, self._high, self._low, self._home
        mask, shift, capacity, since = self._mask, self._shift, self.capacity, self._since
        oldest, size = self._oldest, self._size
        for event_id in fresh:
            if size == capacity:  # forget the oldest: find its entry, then close the gap
                gap = home[oldest]
                while table[gap] != oldest + 1:
                    gap = (gap + 1) & mask
                # backward shift: a later entry of the probe run moves into the gap unless it
                # starts probing cyclically after the gap and up to where it is
                at = gap
                while other := table[(at := (at + 1) & mask)]:
                    start = home[other - 1]
                    if (gap < start <= at) if gap <= at else (start > gap or start <= at):
                        continue
                    table[gap] = other
                    gap = at
                table[gap] = 0
                oldest = (oldest + 1) % capacity
                size -= 1
                since[0][1] -= 1
                if not since[0][1]:
                    since.popleft()
            slot = (oldest + size) % capacity
            high[slot] = event_id >> 64
            low[slot] = event_id & _LOW
            at = home[slot] = ((hash(event_id) * _FIBONACCI) & _LOW) >> shift
            while table[at]:
                at = (at + 1) & mask
            table[at] = slot + 1
            size += 1
        self._oldest, self._size = oldest, size

    def first_sightings(self, ids: list[int]) -> list[int] | None:
        """Indices of ids neither remembered nor earlier in `ids`; None when that is all of them."""
        if not self.capacity:
            return None
        keep = self._unknown(ids)
        return None if len(keep) == len(ids) else keep

    def _unknown(self, ids: list[int]) -> list[int]:
        """Indices of ids neither in the window nor earlier in `ids` (this runs for every event:
        one hash, one table read, and two array reads when the position is taken)."""
        table, high, low, mask, shift = self._table, self._high, self._low, self._mask, self._shift
        empty = not self._size
        seen: set[int] = set()
        keep: list[int] = []
        for i, event_id in enumerate(ids):
            if event_id in seen:
                continue
            if not empty:
                at = ((hash(event_id) * _FIBONACCI) & _LOW) >> shift
                if slot := table[at]:
                    down = event_id & _LOW
                    while slot:
                        if low[slot - 1] == down and high[slot - 1] == event_id >> 64:
                            break
                        at = (at + 1) & mask
                        slot = table[at]
                    if slot:
                        continue
            seen.add(event_id)
            keep.append(i)
        return keep
