"""Fill a warehouse without Kafka: contract events inserted straight into `events`.

The materialized views (0003, 0005) feed the rollups and facts from those rows exactly as they
do behind the worker, so view tests that need no broker can start here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pipeline.warehouse.connection import Warehouse

COLUMNS = [
    "event_id",
    "event_type",
    "occurred_at",
    "team",
    "service",
    "user_key",
    "capability",
    "data",
]
WIRE = ["UUID", "String", "DateTime64(3, 'UTC')", "String", "String", "String", "String", "String"]


def insert_events(
    warehouse: Warehouse, events: Iterable[dict[str, Any]], block: int = 50_000
) -> int:
    """Insert contract events (as the simulator yields them); returns how many."""
    rows: list[tuple[Any, ...]] = []
    written = 0
    for event in events:
        at = datetime.fromisoformat(event["occurred_at"])
        rows.append(
            (
                uuid.UUID(event["event_id"]),
                event["event_type"],
                int(at.timestamp() * 1000),
                event.get("team") or "",
                event.get("service") or "",
                event.get("user") or "",  # the worker writes a pseudonym; tests use the id
                event["capability"],
                json.dumps(event["data"]),
            )
        )
        if len(rows) >= block:
            written += _flush(warehouse, rows)
    return written + _flush(warehouse, rows)


def _flush(warehouse: Warehouse, rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    columns = [list(column) for column in zip(*rows, strict=True)]
    warehouse.insert_columns("events", columns, COLUMNS, wire_types=WIRE)
    count = len(rows)
    rows.clear()
    return count
