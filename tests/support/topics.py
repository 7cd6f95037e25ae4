"""Reading a topic back in tests: every event of every record, with its coordinates, and what
a consumer group has not committed yet."""

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


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Landed]:
    """Every event of every message on `topic`, read to the end offsets."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="reliability-reader"
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[Landed] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                for r in records:
                    for e in msgspec.json.decode(r.value):
                        cell = (e["team"], e["event_type"])
                        out.append(Landed(r.partition, r.offset, e["event_id"], cell))
        return out
    finally:
        consumer.close()


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
