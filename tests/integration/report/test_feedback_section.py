"""The report's "Developer feedback" part: the adoption dashboard's feedback row, drawn from the
hand-computed warehouse of tests/integration/views/test_feedback.py, shows the numbers computed
by hand."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pipeline.report import build_sections
from pipeline.warehouse.connection import Warehouse
from tests.integration.views.test_feedback import warehouse  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def _figure(blocks: tuple[str, ...], title: str) -> str:
    [block] = [b for b in blocks if f"<strong>{title}</strong>" in b]
    return block


def test_the_report_shows_csat_nps_and_response_rate(warehouse: Warehouse) -> None:  # noqa: F811
    wh = warehouse
    # Only fs is declared in this case: the adoption dashboard shows declared capabilities.
    sections, _ = build_sections(
        wh, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    )
    adoption = next(s for s in sections if "adoption" in s.title.lower())
    assert "<h3>Developer feedback</h3>" in adoption.blocks
    csat = _figure(adoption.blocks, "CSAT by month")
    assert re.findall(r'data-value="([^"]+)"', csat) == ["0.4", "0"], "Nov 40 %, Dec 0 %"
    nps = _figure(adoption.blocks, "NPS by month")
    assert "<td>2026-11</td>" in nps and '<td class="num" data-value="25">25</td>' in nps
    rates = _figure(adoption.blocks, "Feedback responses and response rate")
    rows = re.findall(r"<tr>(.*?)</tr>", rates)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows[1:]]
    assert cells == [
        ["fs", "2026-11", "csat", "5", "4", "4", "75%"],
        ["fs", "2026-11", "nps", "4", "3", "4", "75%"],
        ["fs", "2026-12", "csat", "1", "1", "1", "100%"],
    ]
    assert "legacy" not in rates, "an undeclared capability is not the platform's"
