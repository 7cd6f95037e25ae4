"""The compact recent-id window (`RecentIds`): the same answers as a plain FIFO set, in a fixed
number of bytes an id. Its sink-level tests: tests/integration/sink/test_dedup_horizon.py and
test_clickhouse.py."""

from __future__ import annotations

import random
import tracemalloc
from collections import OrderedDict, deque

import pytest

from pipeline.sink.dedup import BYTES_PER_ID, RecentIds
from tests.unit.ingest.test_health import Clock


class FifoSet:
    """The reference: a FIFO-bounded set kept in an OrderedDict (what RecentIds must answer)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ids: OrderedDict[int, None] = OrderedDict()

    def remember(self, ids: list[int]) -> None:
        for event_id in ids:
            if event_id not in self.ids:
                self.ids[event_id] = None
        while len(self.ids) > self.capacity:
            self.ids.popitem(last=False)

    def first_sightings(self, ids: list[int]) -> list[int] | None:
        seen: set[int] = set()
        keep = []
        for i, event_id in enumerate(ids):
            if event_id not in self.ids and event_id not in seen:
                seen.add(event_id)
                keep.append(i)
        return None if len(keep) == len(ids) else keep


def mismatches(window: RecentIds, reference: FifoSet, pool: list[int]) -> list[str]:
    found = []
    if len(window) != len(reference.ids):
        found.append(f"len {len(window)} != {len(reference.ids)}")
    found += [f"{e:#x} in: {e in window}" for e in pool if (e in window) != (e in reference.ids)]
    return found


def id_pool(rng: random.Random) -> list[int]:
    """Ids that collide in the table: counting up, differing only in the high 64 bits, random,
    and the extremes."""
    counting = [(7 << 64) + i for i in range(40)]
    high_only = [(i << 64) + 5 for i in range(1, 20)]
    randoms = [rng.getrandbits(128) for _ in range(40)]
    return [*counting, *high_only, *randoms, 0, (1 << 128) - 1]


def drive(window: RecentIds, reference: FifoSet, rng: random.Random, pool: list[int]) -> None:
    batch = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
    assert window.first_sightings(batch) == reference.first_sightings(batch)
    window.remember(batch)
    reference.remember(batch)


@pytest.mark.parametrize("capacity", [1, 3, 8, 50])
def test_answers_like_a_fifo_set_through_eviction_and_collisions(capacity: int) -> None:
    rng = random.Random(capacity)
    pool = id_pool(rng)
    window, reference = RecentIds(capacity), FifoSet(capacity)
    for step in range(3000):
        drive(window, reference, rng, pool)
        assert not mismatches(window, reference, pool), f"step {step}"
        if step % 997 == 996:
            window.clear()
            reference.ids.clear()


def test_negative_control_a_deletion_that_leaves_a_hole_is_caught() -> None:
    """Emptying a table position in the middle of a probe run (deletion without the backward
    shift) hides the ids after it: the comparison above must see that."""
    rng = random.Random(1)
    pool = id_pool(rng)
    window, reference = RecentIds(8), FifoSet(8)
    while True:
        drive(window, reference, rng, pool)
        table = window._table
        runs = [p for p in range(len(table)) if table[p] and table[(p + 1) % len(table)]]
        if len(window) == 8 and runs:
            break
    assert not mismatches(window, reference, pool)
    table[runs[0]] = 0
    assert mismatches(window, reference, pool), "a hole in a probe run must lose an id"


def test_a_batch_larger_than_the_window_keeps_its_newest_ids() -> None:
    clock = Clock()
    window = RecentIds(3, clock=clock)
    window.remember([1, 2])
    clock.now += 10
    window.remember([3, 4, 4, 5, 6, 7])
    assert [e for e in range(1, 8) if e in window] == [5, 6, 7]
    assert len(window) == 3
    assert window.horizon_s() == 0, "full, the oldest id from the second batch (now)"
    window.remember(iter([8]))  # any iterable, as the sink's seeding passes a generator
    assert 5 not in window and 8 in window


def test_a_known_id_forgotten_by_the_same_batch_is_not_added_again() -> None:
    """As a set + deque: ids are checked against the window before the batch evicts anything."""
    window, reference = RecentIds(2), FifoSet(2)
    for ids in ([1, 2], [1, 3]):
        window.remember(ids)
        reference.remember(ids)
    assert not mismatches(window, reference, [1, 2, 3])
    assert 1 not in window and 2 in window and 3 in window, "1 was not moved to the newest end"


def test_ids_outside_128_bits_are_refused_and_never_found() -> None:
    window = RecentIds(4)
    for wrong in (-1, 1 << 128):
        with pytest.raises(ValueError, match="2\\*\\*128"):
            window.remember([1, wrong])
        assert wrong not in window
    assert len(window) == 0, "a refused batch adds nothing"
    assert "1" not in window and None not in window


def test_off_remembers_nothing() -> None:
    window = RecentIds(0)
    window.remember([1, 2])
    assert len(window) == 0 and 1 not in window
    assert window.first_sightings([1, 1]) is None


def allocated_per_id(make: type, capacity: int) -> float:
    ids = [(9 << 64) + i for i in range(capacity)]
    tracemalloc.start()
    try:
        window = make(capacity)
        window.remember(ids)
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(window) == capacity
    return size / capacity


class SetAndDeque:
    """The window before it was compact (a set and a deque of Python ints): the negative control
    of the measurement below."""

    def __init__(self, capacity: int) -> None:
        self.ids: set[int] = set()
        self.order: deque[int] = deque()

    def __len__(self) -> int:
        return len(self.ids)

    def remember(self, ids: list[int]) -> None:
        for event_id in ids:
            if event_id not in self.ids:
                self.ids.add(event_id)
                self.order.append(event_id)


def test_a_full_window_holds_about_28_bytes_an_id() -> None:
    assert BYTES_PER_ID == 28
    # allocated before the ids are counted (the batch's ints are created outside the trace)
    # 120,000 ids: a table of 2**18 positions, 2.2 per id (a power of two, at least 2)
    assert allocated_per_id(RecentIds, 120_000) <= BYTES_PER_ID + 4
    # the same bound fails for the set and deque (its ints, ~48 bytes each, are not counted)
    assert allocated_per_id(SetAndDeque, 120_000) > BYTES_PER_ID + 4, "negative control"
