"""The lifecycle state: a dict per owned partition, kept in a compacted changelog topic.

`put()` changes the dict and queues the key; `take_queued()` hands over the values to send to the
changelog, acknowledged before the records that caused them are acked. `read_changelog` (blocking,
kafka-python) loads a partition before its first batch; a lost partition is forgotten. Not
thread-safe: the event loop only. Why not a faust Table:
docs/lifecycle.md#why-the-state-is-not-a-faust-table.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition


class ChangelogState:
    """The engine's StateStore; see the module docstring."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.partition_of: dict[bytes, int] = {}
        self.loaded: set[int] = set()
        self._queued: dict[bytes, int] = {}  # key -> partition, written since the last take

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self.partition_of[key] = partition
        self._queued[key] = partition

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return list(self.data.items())

    def take_queued(self) -> list[tuple[int, bytes, bytes]]:
        """(partition, key, value) of every key written since the last call."""
        queued, self._queued = self._queued, {}
        return [(p, key, self.data[key]) for key, p in queued.items() if key in self.data]

    def load(self, partitions: Iterable[int], records: dict[bytes, tuple[int, bytes]]) -> None:
        """Take the changelog's contents (key -> (partition, value)) for these partitions."""
        for key, (partition, value) in records.items():
            self.data[key] = value
            self.partition_of[key] = partition
        self.loaded.update(partitions)

    def forget(self) -> None:
        """Drop everything (the assignment changed): partitions are read again when needed."""
        self.data.clear()
        self.partition_of.clear()
        self.loaded.clear()
        self._queued.clear()


def read_changelog(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    timeout_s: float = 60.0,
    security: Mapping[str, Any] | None = None,
) -> dict[bytes, tuple[int, bytes]]:
    """The newest value of every key in these changelog partitions (blocking).

    Reads from the beginning to the end offsets taken at the start; raises TimeoutError when
    that takes longer than `timeout_s` (the caller retries).
    """
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        client_id="uptake-lifecycle-recovery",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **(security or {}),
    )
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        found: dict[bytes, tuple[int, bytes]] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took more than {timeout_s:.0f}s")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:
                        found.pop(record.key, None)
                    else:
                        found[record.key] = (tp.partition, record.value)
        return found
    finally:
        consumer.close()
