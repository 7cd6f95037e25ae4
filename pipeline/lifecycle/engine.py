"""The incremental lifecycle processor: activity records in, state and milestone changes out.

Synchronous, no I/O of its own (the agent in agent.py drives it). `apply(partition, records)`
puts the touched keys' new state, with an outbox of unwritten milestone changes, into the store;
the caller makes those puts durable, writes `emission(keys)`, then calls `confirm(keys)` before
acking the records. Applying records again is a no-op, and a crash at any point re-emits the
same rows. Why this order, and the store layout: docs/lifecycle.md#guarantee.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from pipeline.lifecycle.rules import (
    NO_DAY,
    Milestone,
    Rules,
    Summary,
    milestones,
    summarize,
    walk,
)


class Activity(msgspec.Struct, frozen=True, array_like=True, tag="a"):
    """A team used a capability on a day (one record per team x capability x day per batch)."""

    team: str
    capability: str
    day: int


class Watermark(msgspec.Struct, frozen=True, array_like=True, tag="w"):
    """The newest day the ingest has seen; sent to every partition after a batch's activity."""

    day: int


Record = Activity | Watermark

_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(Record).decode


def encode_record(record: Record) -> bytes:
    return _encode(record)


def decode_record(value: bytes) -> Record:
    return _decode_record(value)


def key_of(team: str, capability: str) -> bytes:
    """The Kafka key of activity (and the table key): routes a key's records to one partition."""
    return _encode((team, capability))


class Change(msgspec.Struct, frozen=True, array_like=True):
    """A milestone to (re)publish, or to retract when it no longer holds."""

    kind: str
    day: int
    episode: int
    retracted: bool = False


class KeyState(msgspec.Struct, omit_defaults=True):
    """What the table holds for one team x capability."""

    team: str
    capability: str
    partition: int
    days: list[int] = msgspec.field(default_factory=list)  # distinct, ascending
    watermark: int = NO_DAY  # the watermark the published milestones were computed at
    churn_due: int = NO_DAY  # the day of the churn waiting for the watermark (NO_DAY: none)
    outbox: list[Change] = msgspec.field(default_factory=list)  # changes not yet confirmed written
    dirty: bool = False  # the lifecycle row is not yet confirmed written


class _ScanView(msgspec.Struct):
    """The few fields the watermark scan needs; decoding skips the rest."""

    partition: int = -1
    churn_due: int = NO_DAY
    watermark: int = NO_DAY


class PartitionState(msgspec.Struct):
    newest_day: int = NO_DAY


_decode_state = msgspec.json.Decoder(KeyState).decode
_decode_scan = msgspec.json.Decoder(_ScanView).decode
_decode_partition = msgspec.json.Decoder(PartitionState).decode
_PARTITION_PREFIX = b"~partition:"


def partition_key(partition: int) -> bytes:
    return _PARTITION_PREFIX + str(partition).encode()


class StateStore(Protocol):
    """The key-value state: state.ChangelogState in the worker, a model in tests."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, partition: int, key: bytes, value: bytes) -> None: ...

    def items(self) -> Iterable[tuple[bytes, bytes]]: ...


@dataclass(frozen=True)
class MilestoneRow:
    team: str
    capability: str
    change: Change


@dataclass(frozen=True)
class LifecycleRow:
    team: str
    capability: str
    summary: Summary


@dataclass
class Emission:
    """What `emission()` asks the caller to write: milestone changes and lifecycle rows."""

    milestones: list[MilestoneRow] = field(default_factory=list)
    lifecycles: list[LifecycleRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.milestones or self.lifecycles)


def diff(old: Sequence[Milestone], new: Sequence[Milestone]) -> list[Change]:
    """Changes that turn the published `old` milestones into `new`."""
    before = {m.identity: m for m in old}
    after = {m.identity: m for m in new}
    changes = [
        Change(m.kind, m.day, m.episode) for ident, m in after.items() if before.get(ident) != m
    ]
    changes += [
        Change(m.kind, m.day, m.episode, retracted=True)
        for ident, m in before.items()
        if ident not in after
    ]
    return changes


class LifecycleEngine:
    """Applies activity to the lifecycle state; see the module docstring for the contract."""

    def __init__(self, rules: Rules, watermark_lag_days: int, store: StateStore) -> None:
        self.rules = rules
        self.watermark_lag_days = watermark_lag_days
        self.store = store

    def watermark(self, newest_day: int) -> int:
        """The newest complete day: activity may still arrive `watermark_lag_days` late, so a day
        is complete once the newest day seen is more than that many days after it."""
        return newest_day - self.watermark_lag_days - 1

    # -- step 1 ---------------------------------------------------------------------------------
    def apply(self, partition: int, records: Sequence[Record]) -> list[bytes]:
        """Fold one partition's records in; returns the keys whose state changed."""
        pkey = partition_key(partition)
        raw = self.store.get(pkey)
        pstate = _decode_partition(raw) if raw else PartitionState()
        newest = pstate.newest_day
        by_key: dict[bytes, tuple[str, str, set[int]]] = {}
        for record in records:
            if isinstance(record, Activity):
                key = key_of(record.team, record.capability)
                entry = by_key.get(key)
                if entry is None:
                    entry = by_key[key] = (record.team, record.capability, set())
                entry[2].add(record.day)
            newest = max(newest, record.day)
        old_watermark = self.watermark(pstate.newest_day)
        watermark = self.watermark(newest)
        changed: list[bytes] = []
        for key, (team, capability, days) in by_key.items():
            state = self._load(key) or KeyState(team, capability, partition)
            merged = sorted(days.union(state.days)) if not days.issubset(state.days) else None
            if self._update(state, merged, watermark):
                self._put(partition, key, state)
                changed.append(key)
        if newest > pstate.newest_day:
            if watermark > old_watermark:
                changed += self._churn_scan(partition, watermark, skip=by_key.keys())
            self.store.put(partition, pkey, _encode(PartitionState(newest)))
        return changed

    def _churn_scan(self, partition: int, watermark: int, skip: Iterable[bytes]) -> list[bytes]:
        """Touch the keys of this partition whose waiting churn the watermark now reaches."""
        skipped = set(skip)
        due = []
        for key, value in self._keys():
            if key in skipped:
                continue
            view = _decode_scan(value)
            if view.partition == partition and view.watermark < view.churn_due <= watermark:
                due.append(key)
        for key in due:
            state = self._load(key)
            if state is not None and self._update(state, None, watermark):
                self._put(partition, key, state)
        return due

    def _update(self, state: KeyState, days: list[int] | None, watermark: int) -> bool:
        """Recompute milestones with new days (None: unchanged) at `watermark`; True if changed."""
        new_days = state.days if days is None else days
        if days is None and not (state.watermark < state.churn_due <= watermark):
            return False  # only the churn waiting for the watermark depends on it
        old = milestones(state.days, state.watermark, self.rules)
        new, due = walk(new_days, watermark, self.rules)
        if days is None and old == new:
            return False
        changes = diff(old, new)
        if changes:
            pending = {(c.kind, c.day): c for c in state.outbox}
            pending.update({(c.kind, c.day): c for c in changes})
            state.outbox = list(pending.values())
        state.days = new_days
        state.watermark = watermark
        state.churn_due = NO_DAY if due is None else due
        state.dirty = True
        return True

    # -- step 2 ---------------------------------------------------------------------------------
    def pending(self, partition: int) -> list[bytes]:
        """Keys of the partition with unconfirmed changes (left by a crash): emit them again."""
        return [
            key
            for key, value in self._keys()
            if (state := _decode_state(value)).partition == partition
            and (state.outbox or state.dirty)
        ]

    def emission(self, keys: Iterable[bytes]) -> Emission:
        """The rows to write for these keys: their outboxes and their current lifecycle."""
        out = Emission()
        for key in dict.fromkeys(keys):
            state = self._load(key)
            if state is None:
                continue
            for change in state.outbox:
                out.milestones.append(MilestoneRow(state.team, state.capability, change))
            if state.dirty:
                found = milestones(state.days, state.watermark, self.rules)
                summary = summarize(state.days, found)
                out.lifecycles.append(LifecycleRow(state.team, state.capability, summary))
        return out

    # -- step 3 ---------------------------------------------------------------------------------
    def confirm(self, keys: Iterable[bytes]) -> None:
        """The emission of these keys is written: empty their outboxes."""
        for key in dict.fromkeys(keys):
            state = self._load(key)
            if state is not None and (state.outbox or state.dirty):
                state.outbox = []
                state.dirty = False
                self._put(state.partition, key, state)

    # -- helpers --------------------------------------------------------------------------------
    def published(self, key: bytes) -> list[Milestone]:
        """The milestones of a key as published (tests and inspection)."""
        state = self._load(key)
        return [] if state is None else milestones(state.days, state.watermark, self.rules)

    def _keys(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in list(self.store.items()):
            if value and not key.startswith(_PARTITION_PREFIX):
                yield key, value

    def _load(self, key: bytes) -> KeyState | None:
        raw = self.store.get(key)
        return _decode_state(raw) if raw else None

    def _put(self, partition: int, key: bytes, state: KeyState) -> None:
        self.store.put(partition, key, _encode(state))
