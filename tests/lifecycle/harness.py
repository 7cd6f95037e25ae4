"""A broker-free model of the lifecycle agent: records per partition, a table whose changelog
survives a crash and whose memory does not, outputs folded by key as ClickHouse FINAL and a
compacted topic fold them, and crashes at every step of a batch."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.lifecycle.engine import Change, LifecycleEngine, Record
from pipeline.lifecycle.rules import Rules

# Points of a batch where the model can crash (the agent's steps, pipeline/lifecycle/agent.py).
CRASH_POINTS = ("after_apply", "after_state", "after_emit", "after_confirm", "before_ack")


class CrashingStore:
    """table.data in memory + the changelog: a crash keeps only what was flushed."""

    def __init__(self) -> None:
        self.memory: dict[bytes, bytes] = {}
        self.changelog: dict[bytes, bytes] = {}
        self.queued: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.memory.get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.memory[key] = value
        self.queued[key] = value

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return list(self.memory.items())

    def flush(self) -> None:
        self.changelog.update(self.queued)
        self.queued.clear()

    def crash(self) -> None:
        self.queued.clear()
        self.memory = dict(self.changelog)  # faust recovers the table from its changelog


@dataclass
class Outputs:
    """What readers see: the latest row per milestone identity, and how many rows were written."""

    latest: dict[tuple[str, str, str, int], Change] = field(default_factory=dict)
    rows_written: int = 0

    def live(self) -> set[tuple[str, str, str, int, int]]:
        return {
            (team, cap, kind, day, change.episode)
            for (team, cap, kind, day), change in self.latest.items()
            if not change.retracted
        }


@dataclass
class Model:
    rules: Rules
    lag: int
    partitions: dict[int, list[Record]]
    store: CrashingStore = field(default_factory=CrashingStore)
    outputs: Outputs = field(default_factory=Outputs)
    committed: dict[int, int] = field(default_factory=dict)
    naive: bool = False  # negative control: no outbox, changes emitted from memory only
    crashes: int = 0

    def __post_init__(self) -> None:
        self._restart()

    def _restart(self) -> None:
        self.engine = LifecycleEngine(self.rules, self.lag, self.store)
        self.checked: set[int] = set()

    def run(self, rng: random.Random, crash_rate: float, max_batch: int = 6) -> None:
        """Process every record, crashing at random points, until all are committed."""
        while True:
            pending = [
                p for p, recs in self.partitions.items() if self.committed.get(p, 0) < len(recs)
            ]
            if not pending:
                return
            partition = rng.choice(pending)
            start = self.committed.get(partition, 0)
            batch = self.partitions[partition][start : start + rng.randint(1, max_batch)]
            crash_at = rng.choice(CRASH_POINTS) if rng.random() < crash_rate else None
            if self._batch(partition, batch, crash_at):
                self.committed[partition] = start + len(batch)
            else:
                self.crashes += 1
                self.store.crash()
                self._restart()

    def _batch(self, partition: int, batch: Sequence[Record], crash_at: str | None) -> bool:
        engine = self.engine
        keys: list[bytes] = []
        if partition not in self.checked:
            keys += engine.pending(partition)
            self.checked.add(partition)
        keys += engine.apply(partition, batch)
        if crash_at == "after_apply":
            return False
        if self.naive:
            emission = engine.emission(keys)
            engine.confirm(keys)
            self.store.flush()
            if crash_at == "after_state":
                return False
            self._write(emission)
            return crash_at is None or crash_at not in ("after_emit", "after_confirm", "before_ack")
        self.store.flush()
        if crash_at == "after_state":
            return False
        self._write(engine.emission(keys))
        if crash_at == "after_emit":
            return False
        engine.confirm(keys)
        if crash_at == "after_confirm":
            return False
        self.store.flush()
        return crash_at != "before_ack"

    def _write(self, emission) -> None:  # type: ignore[no-untyped-def]
        for row in emission.milestones:
            change = row.change
            self.outputs.latest[(row.team, row.capability, change.kind, change.day)] = change
            self.outputs.rows_written += 1
