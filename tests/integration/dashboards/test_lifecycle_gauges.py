"""The lifecycle-stage gauges (`uptake_adoption_teams{capability,stage}`,
`uptake_adoption_stalled_teams{capability}`) equal the lifecycle rules read literally.

The simulated organisation of the session's warehouse went through the real worker (its
lifecycle agent wrote `adoption_lifecycle`). The gauges are read from it as the worker reads them
(`read_figures`, in a subprocess: the embedded engine opens a folder in one process) and compared
with the brute force of tests/support/lifecycle_brute.py, walked day by day over each (team,
capability)'s days of use (`capability_use_days`, the catalog's definition of use) with the
worker's default rules and lateness.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest

from pipeline.lifecycle.rules import as_date, summarize
from pipeline.observability.adoption import STAGES, STALLED_AFTER_DAYS
from tests.support.dashboards import FilledWarehouse, Result
from tests.support.lifecycle_brute import RULES, brute_force

pytestmark = pytest.mark.integration

LATENESS_DAYS = 7  # UPTAKE_LIFECYCLE_ALLOWED_LATENESS_DAYS's default: the fixture's worker

READ = """
import json, sys
from pipeline.observability.adoption import read_figures
from pipeline.warehouse.connection import connect
with connect(sys.argv[1]) as warehouse:
    figures = read_figures(warehouse, float(sys.argv[2]), per_team=False)
print(json.dumps({"stages": figures.stages, "stalled": figures.stalled}))
"""


def test_stage_gauges_equal_the_brute_force_lifecycle(filled_warehouse: FilledWarehouse) -> None:
    now = filled_warehouse.end
    done = filled_warehouse.python("-c", READ, filled_warehouse.url, str(now.timestamp()))
    gauges = json.loads(done.stdout)

    used = filled_warehouse.query_many(
        {
            "days": "SELECT team, capability, "
            "arrayStringConcat(groupArray(toString(toUInt32(day))), ',') FROM capability_use_days "
            "WHERE team NOT IN ('', 'unowned') GROUP BY team, capability"
        }
    )["days"]
    assert isinstance(used, Result), used
    days = {(t, c): [int(d) for d in found.split(",")] for t, c, found in used.rows}
    watermark = max(max(d) for d in days.values()) - LATENESS_DAYS - 1
    stalled_before = (now - timedelta(days=STALLED_AFTER_DAYS)).date()
    stage_of = {state: stage for stage, states in STAGES.items() for state in states}
    expected: dict[str, Counter[str]] = {}
    expected_stalled: Counter[str] = Counter()
    for (_, capability), active in days.items():
        lifecycle = summarize(sorted(active), brute_force(active, watermark, RULES))
        expected.setdefault(capability, Counter())[stage_of[lifecycle.state]] += 1
        if lifecycle.state == "first_use" and as_date(lifecycle.first_use) < stalled_before:
            expected_stalled[capability] += 1

    assert {c: {s: n for s, n in by.items() if n} for c, by in gauges["stages"].items()} == {
        c: dict(by) for c, by in expected.items()
    }
    assert {c: n for c, n in gauges["stalled"].items() if n} == dict(expected_stalled)
    # The comparison is not of empty counters. The simulated organisation has no team trying a
    # capability now (nor stalled): tests/integration/observability/test_adoption.py has them.
    every: Counter[str] = Counter()
    for by in expected.values():
        every.update(by)
    assert every["activated"] > 0 and every["churned"] > 0, every
