"""Reading a topic back in tests: its records, (key, value) pairs, every event with the
coordinates of its record, and what a consumer group has not committed yet."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

Cell = tuple[str, str]
"""(team, event_type)."""


@dataclass(frozen=True)
class Landed:
    """One event on the topic, with the coordinates of its Kafka record."""

    partition: int
    offset: int
    event_id: str
    cell: Cell


def records(bootstrap: str, topic: str, timeout: float = 15.0, **options: Any) -> list[Any]:
    """Every record on `topic`, all partitions, from the beginning to the end offsets it has
    when called (kafka-python ConsumerRecords); `options` go to the KafkaConsumer."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 15.0) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on `topic` up to its current end offsets, all partitions."""
    return [(r.key, r.value) for r in records(bootstrap, topic, timeout)]


def landed_events(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Landed]:
    """Every event of every message on `topic`, read to the end offsets."""
    return [
        Landed(r.partition, r.offset, e["event_id"], (e["team"], e["event_type"]))
        for r in records(bootstrap, topic, timeout, client_id="reliability-reader")
        for e in msgspec.json.decode(r.value)
    ]


def topic_cells(landed: Sequence[Landed]) -> list[dict[str, Any]]:
    """The per-cell aggregates of CELLS_SQL, computed from the topic itself."""
    n: Counter[Cell] = Counter()
    ids: dict[Cell, set[str]] = {}
    for item in landed:
        n[item.cell] += 1
        ids.setdefault(item.cell, set()).add(item.event_id)
    return [
        {"team": c[0], "event_type": c[1], "n": n[c], "ids": len(ids[c]), "copies": n[c]} for c in n
    ]


def committed_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Messages on `topic` not yet committed by `group`; None when Kafka does not answer."""
    consumer = None
    try:
        # Never subscribes, so it does not join the group: it only reads the committed offsets.
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        end = consumer.end_offsets(partitions)
        return sum(max(0, end[tp] - (consumer.committed(tp) or 0)) for tp in partitions)
    except KafkaError:
        return None
    finally:
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()
