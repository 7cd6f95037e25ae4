"""The one seam of the runtime: wrappers a caller above it may put around its parts.

Each field is called once, when the part is built; the default leaves the part as it is. The
runtime never asks what a wrapper does. Fault injection (`pipeline.devtools.faults`, wired by
the CLI only when a UPTAKE_CHAOS_* setting is present) is the one user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.lifecycle.outputs import LifecycleOutputs
from pipeline.sink.clickhouse import ClickHouseSink
from pipeline.warehouse.connection import Warehouse


def _same(part: Any) -> Any:
    return part


def _same_step(name: str, step: Any) -> Any:
    return step


@dataclass(frozen=True)
class Seams:
    """Wrappers for the parts of a worker or writer process (identity by default)."""

    sink_warehouse: Callable[[Warehouse], Warehouse] = _same  # the sink's inserts
    new_sink: Callable[..., ClickHouseSink] = ClickHouseSink  # the sink itself
    batch_sink: Callable[[Any], Any] = _same  # what the ingest loop hands each batch to
    # the ingest chain's steps before the write, by name: decode, pseudonymise, resolve_teams
    ingest_step: Callable[[str, Any], Any] = _same_step
    lifecycle_outputs: Callable[[LifecycleOutputs], LifecycleOutputs] = _same
    dedup_replays: bool = True  # `uptake writer` skips records it already wrote


NONE = Seams()
