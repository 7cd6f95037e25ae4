"""Run many SQL statements against a warehouse in one process; JSON in on stdin, JSON out.

The embedded engine opens a data folder in one process at a time, and the pytest process may
already hold another one, so the dashboard tests run their queries here, in a subprocess:

    python -m tests.support.run_queries <warehouse url> < [{"id": ..., "sql": ...}, ...]

Out: [{"id", "columns", "types", "rows" (values as text), "error"}], in input order.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pipeline.warehouse.connection import connect


def _text(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def main(url: str) -> int:
    statements = json.load(sys.stdin)
    out = []
    with connect(url) as warehouse:
        for statement in statements:
            try:
                result = warehouse.client.query(statement["sql"])
            except Exception as exc:
                out.append({"id": statement["id"], "error": str(exc).strip()[:2000]})
                continue
            out.append(
                {
                    "id": statement["id"],
                    "columns": list(result.column_names),
                    "types": [t.name for t in result.column_types],
                    "rows": [[_text(v) for v in row] for row in result.result_rows],
                    "error": None,
                }
            )
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
