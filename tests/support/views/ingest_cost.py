"""What the materialized views cost on ingest: rows/s into `events` with and without them.

One fresh embedded warehouse, databases migrated differently, the same simulated events inserted
into each, batch by batch in turn (so they share the machine's ups and downs):
- `bare`: 0001 and 0002 only (the events table, no materialized view), envelope and `data`;
- `bare_typed`: the same plus the typed columns of 0016, sent as the sink sends them;
- `rollups`: up to 0004 (the rollups and facts of 0003, whose views parse `data`);
- `json_views`: up to 0015, every view as it was before the typed columns, envelope and `data`
  (what the sink sent before 0016);
- `all`: every migration (the views read the typed columns), every column the sink sends.
The blocks are built by the sink itself (pipeline/sink/clickhouse.py EVENTS) from decoded
events; `build_us_per_event` is that step's Python time, `typed_build_us_per_event` the
share of it that builds the typed columns. Prints one JSON line.
The events are spread over WINDOW_MINUTES ending now (default 10 weeks, a backfill of history,
where nearly every event opens a minute bucket of its own; a few minutes is what a live worker
sees, where a batch's events share their buckets).
Run: python -m tests.support.views.ingest_cost [EVENTS] [BATCH] [WINDOW_MINUTES]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from pipeline.contract.decode import BatchDecoder, DecodedBatch, Limits, SourceMessage
from pipeline.devtools.simulate.org import Organisation, Scenario, generate
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.sink.clickhouse import EVENTS, TYPED_COLUMNS, _typed_columns
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import MIGRATIONS_DIR, Migration, available, migrate

TYPED = 16  # the migration that adds the typed columns
# name -> (newest migration applied, typed columns sent)
SETUPS = {
    "bare": (2, False),
    "bare_typed": (2, True),
    "rollups": (4, False),
    "json_views": (TYPED - 1, False),
    "all": (9999, True),
}
WEEKS_10 = 10 * 7 * 24 * 60
UNTYPED = len(EVENTS.columns) - len(TYPED_COLUMNS)  # the sink's columns before 0016


def _decoded(events: list[dict[str, Any]], first_offset: int) -> DecodedBatch:
    decoded = BatchDecoder(Limits(max_lateness=timedelta(days=400))).decode(
        [
            SourceMessage("uptake.events", 0, first_offset + i, msgspec.json.encode(e))
            for i, e in enumerate(events)
        ]
    )
    assert not decoded.rejections, decoded.rejections[:3]
    decoded.user_keys = Pseudonymizer(b"k" * 32).keys([e.user for e in decoded.events])
    return decoded


def _add_typed_columns(warehouse: Warehouse) -> None:
    """Only the ALTER of 0016 (its views need the rollups' tables)."""
    [typed] = [m for m in available() if m.version == TYPED]
    assert isinstance(typed, Migration)
    for statement in typed.statements():
        if statement.startswith("ALTER TABLE events"):
            warehouse.command(statement)


def measure(
    events: int = 200_000, batch: int = 20_000, window_minutes: int = WEEKS_10
) -> dict[str, Any]:
    org = Organisation.synthetic(3, teams=20)
    window = timedelta(minutes=window_minutes)
    generated = list(
        generate(org, events, 3, window=window, scenario=Scenario(), end=datetime.now(UTC))
    )
    folder = Path(tempfile.mkdtemp(prefix="uptake-ingest-cost-"))
    seconds = dict.fromkeys(SETUPS, 0.0)
    build_s = typed_build_s = 0.0
    try:
        warehouses = {}
        for name, (newest, typed) in SETUPS.items():
            subset = folder / f"migrations-{name}"
            subset.mkdir()
            for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                if int(path.name[:4]) <= newest:
                    shutil.copy(path, subset / path.name)
            url = f"chdb://{folder / 'warehouse'}?database={name}"
            warehouses[name] = connect(url, create_database=True)
            migrate(warehouses[name], subset, progress=lambda _: None)
            if typed and newest < TYPED:
                _add_typed_columns(warehouses[name])
        for start in range(0, len(generated), batch):
            decoded = _decoded(generated[start : start + batch], start)
            began = time.perf_counter()
            columns = EVENTS.build(decoded).columns
            build_s += time.perf_counter() - began
            began = time.perf_counter()
            _typed_columns(decoded.events)
            typed_build_s += time.perf_counter() - began
            for name, warehouse in warehouses.items():
                width = len(columns) if SETUPS[name][1] else UNTYPED
                began = time.perf_counter()
                warehouse.insert_columns(
                    "events",
                    columns[:width],
                    EVENTS.column_names[:width],
                    wire_types=EVENTS.wire_types[:width],
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
        "window_minutes": window_minutes,
        "rows_per_s": rates,
        "rollups_vs_bare": round(rates["rollups"] / rates["bare"], 3),
        "json_views_vs_bare": round(rates["json_views"] / rates["bare"], 3),
        "all_vs_bare": round(rates["all"] / rates["bare"], 3),
        "all_vs_json_views": round(rates["all"] / rates["json_views"], 3),
        "build_us_per_event": round(build_s / events * 1e6, 2),
        "typed_build_us_per_event": round(typed_build_s / events * 1e6, 2),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(measure(*args)))
