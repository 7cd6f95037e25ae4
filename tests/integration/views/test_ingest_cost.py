"""The ingest cost of the materialized views is measured, and stays within reason."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_materialized_views_cost_is_measured() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.views.ingest_cost", "40000", "10000"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(figures)
    rates = figures["rows_per_s"]
    assert rates["bare"] > rates["rollups"] > 0
    # Before and after the typed columns (0016), each against its own bare table.
    assert rates["bare"] > rates["json_views"] > 0
    assert rates["bare_typed"] > rates["all"] > 0
    # The views parse each body once and aggregate: a fraction of the bare insert rate, not a
    # collapse. The measured ratio is in docs/analysts.md.
    assert figures["rollups_vs_bare"] > 0.05
