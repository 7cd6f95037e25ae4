"""A broker-free model of the lifecycle agent: records per partition, a table whose changelog
survives a crash and whose memory does not, outputs folded by key as ClickHouse FINAL and a
compacted topic fold them, crashes at every step of a batch, and rebalances in the middle of a
batch (faust reloads the table from its changelog under it; the agent applies the batch again)."""

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
        self.queued: set[bytes] = set()

    def get(self, key: bytes) -> bytes | None:
        return self.memory.get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.memory[key] = value
        self.queued.add(key)

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return list(self.memory.items())

    def flush(self) -> None:
        """Send the current value of every key written since (as agent.TableStore does)."""
        self.changelog.update({k: self.memory[k] for k in self.queued if k in self.memory})
        self.queued.clear()

    def recover(self) -> None:
        """A rebalance: faust reloads the table from the changelog; queued keys stay queued."""
        self.memory = dict(self.changelog)

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
    rebalances: int = 0

    def __post_init__(self) -> None:
        self._restart()

    def _restart(self) -> None:
        self.engine = LifecycleEngine(self.rules, self.lag, self.store)
        self.checked: set[int] = set()

    def run(
        self,
        rng: random.Random,
        crash_rate: float,
        max_batch: int = 6,
        rebalance_rate: float = 0.0,
        redo_after_rebalance: bool = True,
    ) -> None:
        """Process every record, crashing at random points, until all are committed.

        `redo_after_rebalance=False` is the negative control: the batch in flight during a
        rebalance is acked as it went."""
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
            if rng.random() < rebalance_rate:
                # recovery under the batch in flight, then the agent applies the batch again
                self.rebalances += 1
                done = self._batch(partition, batch, None, recover_at=rng.choice(CRASH_POINTS))
                self.checked.clear()
                if done and not redo_after_rebalance:
                    self.committed[partition] = start + len(batch)
                    continue
            if self._batch(partition, batch, crash_at):
                self.committed[partition] = start + len(batch)
            else:
                self.crashes += 1
                self.store.crash()
                self._restart()

    def _batch(
        self,
        partition: int,
        batch: Sequence[Record],
        crash_at: str | None,
        recover_at: str | None = None,
    ) -> bool:
        """One batch as agent.LifecycleRunner runs it; False when it crashed (not acked).

        `recover_at`: faust reloads the table from its changelog at that point (a rebalance).
        """

        def stop(point: str) -> bool:
            if recover_at == point:
                self.store.recover()
            return crash_at == point

        engine = self.engine
        keys: list[bytes] = []
        if partition not in self.checked:
            keys += engine.pending(partition)
            self.checked.add(partition)
        keys += engine.apply(partition, batch)
        if stop("after_apply"):
            return False
        if self.naive:  # changes taken from memory, state saved, then written
            emission = engine.emission(keys)
            engine.confirm(keys)
            self.store.flush()
            if stop("after_state"):
                return False
            self._write(emission)
            return not (stop("after_emit") or stop("after_confirm") or stop("before_ack"))
        self.store.flush()
        if stop("after_state"):
            return False
        self._write(engine.emission(keys))
        if stop("after_emit"):
            return False
        engine.confirm(keys)
        if stop("after_confirm"):
            return False
        self.store.flush()
        return not stop("before_ack")

    def _write(self, emission) -> None:  # type: ignore[no-untyped-def]
        for row in emission.milestones:
            change = row.change
            self.outputs.latest[(row.team, row.capability, change.kind, change.day)] = change
            self.outputs.rows_written += 1
