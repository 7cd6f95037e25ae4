"""`uptake report` on a simulator-filled warehouse, opened in headless Chromium: the charts render.

Chromium (Debian's `chromium`, which `make test` installs) loads a small page that frames the
report and, once it has loaded and been laid out, measures every chart: its box on the page, its
data points and how many of them the browser drew with a non-empty box. `--dump-dom` prints that
page after its script ran. Network access is refused to Chromium (every host resolves to
nothing), so a report that needed anything from outside would show it.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pipeline.dashboards import adoption, impact, ml_platform
from pipeline.dashboards.board import CLICKHOUSE_UID
from tests.support.chromium import chromium, needs_chromium
from tests.support.dashboards import FilledWarehouse, panels_of

pytestmark = pytest.mark.integration


MEASURE = """<!DOCTYPE html>
<html><body><pre id="out">pending</pre>
<iframe id="report" src="report.html" style="width:1400px;height:3000px"></iframe>
<script>
document.getElementById('report').addEventListener('load', () => {
  const doc = document.getElementById('report').contentDocument;
  const charts = [...doc.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    const points = [...svg.querySelectorAll('.point')];
    const drawn = points.filter(
      p => { const b = p.getBBox(); return b.width > 0 && b.height > 0; });
    return {
      panel: svg.closest('figure').querySelector('strong').textContent,
      width: box.width, height: box.height, points: points.length, drawn: drawn.length,
    };
  });
  const stats = [...doc.querySelectorAll('.stat')].map(s => s.textContent);
  const tables = [...doc.querySelectorAll('table.data')].map(t => t.rows.length);
  const nodata = [...doc.querySelectorAll('.nodata')].map(
    n => n.closest('figure').querySelector('strong').textContent);
  document.getElementById('out').textContent = JSON.stringify(
    {charts, stats, tables, nodata, scripts: doc.scripts.length});
});
</script></body></html>
"""


def expected_panels() -> dict[str, int]:
    """Panels per kind the report must draw: the ClickHouse panels of the three dashboards."""
    counts: dict[str, int] = {}
    for build in (adoption.build, impact.build, ml_platform.build):
        for panel in panels_of(build().to_json()):
            if any(t["datasource"]["uid"] == CLICKHOUSE_UID for t in panel.get("targets", [])):
                counts[panel["type"]] = counts.get(panel["type"], 0) + 1
    return counts


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.external.append(f"{tag} {name}={value}")


@pytest.fixture(scope="module")
def report(filled_warehouse: FilledWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    output = folder / "report.html"
    start = filled_warehouse.start.date().isoformat()
    end = filled_warehouse.end.date().isoformat()
    done = filled_warehouse.uptake(
        "report", "--from", start, "--to", end, "--output", str(output), timeout=300
    )
    assert f"wrote {output}" in done.stdout
    return output


def test_the_report_is_one_self_contained_file(report: Path) -> None:
    text = report.read_text()
    links = _Links()
    links.feed(text)
    assert links.external == [], "the report must not load anything"
    assert "<script" not in text  # charts are plain SVG: readable with scripts off, and printed
    assert not re.search(r"url\(|@import", text)


@needs_chromium
def test_every_chart_renders_in_chromium(report: Path) -> None:
    page = report.parent / "measure.html"
    page.write_text(MEASURE)
    done = chromium("--virtual-time-budget=15000", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-3000:]
    dumped = done.stdout.decode()
    found = re.search(r'<pre id="out">(.*?)</pre>', dumped, re.S)
    assert found and found[1] != "pending", f"the measuring script did not run:\n{dumped}"
    measured: dict[str, Any] = json.loads(html.unescape(found[1]))

    assert measured["nodata"] == [], f"panels without data: {measured['nodata']}"
    assert measured["scripts"] == 0
    expected = expected_panels()
    charts = measured["charts"]
    assert len(charts) == sum(expected.get(k, 0) for k in ("timeseries", "barchart", "heatmap"))
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 100, chart
        assert chart["points"] > 0 and chart["drawn"] == chart["points"], chart
    assert len(measured["stats"]) == expected.get("stat", 0)
    assert all(re.search(r"\d", text) for text in measured["stats"]), measured["stats"]
    assert len(measured["tables"]) == expected.get("table", 0)
    assert all(rows > 1 for rows in measured["tables"]), measured["tables"]


def test_the_cli_writes_a_csv_per_panel_and_refuses_an_unknown_name(
    filled_warehouse: FilledWarehouse, tmp_path: Path
) -> None:
    output, folder = tmp_path / "report.html", tmp_path / "csv"
    start = filled_warehouse.start.date().isoformat()
    end = filled_warehouse.end.date().isoformat()
    done = filled_warehouse.uptake(
        "report",
        "--from",
        start,
        "--to",
        end,
        "--output",
        str(output),
        "--csv-dir",
        str(folder),
        timeout=300,
    )
    written = sorted(p.name for p in folder.iterdir())
    assert f"wrote {len(written)} CSV files in {folder}" in done.stdout
    links = sorted(re.findall(r'<a class="csv" href="csv/([^"]+)"', output.read_text()))
    assert links == written and len(written) > 20

    refused = tmp_path / "refused.html"
    wrong = filled_warehouse.uptake(
        "report", "--capability", "zzzz-nope", "--output", str(refused), check=False
    )
    assert wrong.returncode == 2, wrong.stderr
    assert "error: --capability 'zzzz-nope' is not a capability in the warehouse" in wrong.stderr
    assert not refused.exists()
