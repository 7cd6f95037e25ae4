"""Comparing stored events with a ground truth per (team, event_type): lost, extra, double
counted — and the SQL that gives the rows it compares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tests.support.topics import Cell

CELLS_SQL = (
    "SELECT team, event_type, count() AS n, uniqExact(event_id) AS ids, "
    "uniqExact(_partition, _offset, event_id) AS copies FROM events GROUP BY team, event_type"
)
IDS_SQL = "SELECT DISTINCT toString(event_id) AS id FROM events"
DOUBLED_SQL = (  # Kafka messages whose events were stored more than once
    "SELECT _partition AS partition, _offset AS offset, count() AS n, "
    "uniqExact(event_id) AS ids, groupUniqArray(toString(ingested_at)) AS written_at "
    "FROM events GROUP BY _partition, _offset HAVING n > ids ORDER BY partition, offset"
)


def diff_with_truth(
    rows: Sequence[Mapping[str, Any]], truth: Mapping[Cell, int]
) -> dict[str, dict[Cell, int]]:
    """What differs between stored events and the ground truth; `{}` when they agree.

    `rows` has one row per (team, event_type) with `n` (rows stored), `ids` (distinct
    event ids) and `copies` (distinct (partition, offset, event_id): Kafka records stored), as
    CELLS_SQL or `topic_cells` give them. `truth` counts distinct events per (team, event_type).
    Keys of the result, each only when non-empty:

    - `missing`: events of the truth not stored (per cell, truth minus distinct ids);
    - `extra`: more distinct events stored than the truth has;
    - `double_counted`: rows beyond one per Kafka record, i.e. the pipeline wrote a record twice.

    One event_id in two Kafka records (an emitter re-send after an ambiguous failure) is not a
    difference: `events` folds it by event_id (see `emitter_resends`).
    """
    ids: Counter[Cell] = Counter()
    double: Counter[Cell] = Counter()
    for row in rows:
        cell = (str(row["team"]), str(row["event_type"]))
        ids[cell] += int(row["ids"])
        double[cell] += int(row["n"]) - int(row["copies"])
    expected = Counter({cell: n for cell, n in truth.items() if n})
    diff: dict[str, dict[Cell, int]] = {}
    if expected - ids:
        diff["missing"] = dict(expected - ids)
    if ids - expected:
        diff["extra"] = dict(ids - expected)
    if +double:
        diff["double_counted"] = dict(+double)
    return diff


def emitter_resends(rows: Sequence[Mapping[str, Any]]) -> int:
    """Kafka records that repeat an event_id already stored from another record."""
    return sum(int(r["copies"]) - int(r["ids"]) for r in rows)


def cells(events: Iterable[Cell]) -> Counter[Cell]:
    return Counter(events)
