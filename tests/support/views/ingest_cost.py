"""What the materialized views cost on ingest: rows/s into `events` with and without them.

One fresh embedded warehouse, three databases migrated differently, the same simulated events
inserted into each, batch by batch in turn (so the three share the machine's ups and downs):
- `bare`: 0001 and 0002 only (the events table, no materialized view);
- `rollups`: up to 0004 (the rollups and facts of 0003 and their views);
- `all`: every migration (also the lifecycle tables of 0005 and whatever comes later).
Columns are sent as the sink sends them (pipeline/sink/clickhouse.py EVENTS). Prints one JSON line.
Run: python -m tests.support.views.ingest_cost [EVENTS] [BATCH]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from pipeline.devtools.simulate.org import Organisation, Scenario, generate
from pipeline.sink.clickhouse import EVENTS
from pipeline.warehouse.connection import connect
from pipeline.warehouse.migrations import MIGRATIONS_DIR, migrate

SETUPS = {"bare": 2, "rollups": 4, "all": 9999}  # newest migration version applied


def _columns(events: list[dict[str, Any]], first_offset: int) -> list[list[Any]]:
    """The block the sink would send, column by column in EVENTS' order."""
    encode = msgspec.json.encode
    by_name: dict[str, list[Any]] = {
        "event_id": [uuid.UUID(e["event_id"]) for e in events],
        "event_type": [e["event_type"] for e in events],
        "schema_version": [1] * len(events),
        "occurred_at": [
            int(datetime.fromisoformat(e["occurred_at"]).timestamp() * 1000) for e in events
        ],
        "source": [e["source"] for e in events],
        "team": [e["team"] for e in events],
        "reported_team": [e["team"] for e in events],
        "service": [e.get("service") or "" for e in events],
        "user_key": [e.get("user") or "" for e in events],
        "capability": [e["capability"] for e in events],
        "data": [encode(e["data"]) for e in events],
        "_topic": ["uptake.events"] * len(events),
        "_partition": [0] * len(events),
        "_offset": list(range(first_offset, first_offset + len(events))),
    }
    return [by_name[name] for name in EVENTS.column_names]


def measure(events: int = 200_000, batch: int = 20_000) -> dict[str, Any]:
    org = Organisation.synthetic(3, teams=20)
    generated = list(
        generate(
            org, events, 3, window=timedelta(weeks=10), scenario=Scenario(), end=datetime.now(UTC)
        )
    )
    folder = Path(tempfile.mkdtemp(prefix="uptake-ingest-cost-"))
    seconds = dict.fromkeys(SETUPS, 0.0)
    try:
        warehouses = {}
        for name, newest in SETUPS.items():
            subset = folder / f"migrations-{name}"
            subset.mkdir()
            for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                if int(path.name[:4]) <= newest:
                    shutil.copy(path, subset / path.name)
            url = f"chdb://{folder / 'warehouse'}?database={name}"
            warehouses[name] = connect(url, create_database=True)
            migrate(warehouses[name], subset, progress=lambda _: None)
        for start in range(0, len(generated), batch):
            columns = _columns(generated[start : start + batch], start)
            for name, warehouse in warehouses.items():
                began = time.perf_counter()
                warehouse.insert_columns(
                    "events", columns, EVENTS.column_names, wire_types=EVENTS.wire_types
                )
                seconds[name] += time.perf_counter() - began
        for warehouse in warehouses.values():
            warehouse.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rates = {name: round(events / s) for name, s in seconds.items()}
    return {
        "events": events,
        "batch": batch,
        "rows_per_s": rates,
        "rollups_vs_bare": round(rates["rollups"] / rates["bare"], 3),
        "all_vs_bare": round(rates["all"] / rates["bare"], 3),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(measure(*args)))
