"""`uptake report` on a small hand-filled warehouse: display names, exact counts, filters,
the previous period, CSV export, and the page as headless Chromium renders it.

The case (no Kafka: contract events inserted into `events`, tests/support/views/direct.py):
teams t1, t2 under group payments, t3 under search; capabilities fs and fx (and o'brien, a
name with a quote, declared and unused).
- November (the previous period of December): t1 calls fs once; t1 trains once.
- December 1-31 (the report's period): t1 calls fs, t2 calls fs 1,234 times, t3 calls fx;
  t1 trains twice (one failed), t3 once.
So teams using the platform: 3 in December against 1 in November (+2); with --capability fs:
2 against 1; with --team t1: 1 against 1; with --org-unit payments (t1, t2): 2 against 1. ML
training runs: 3 against 1, with --team t1 or --org-unit payments: 2 against 1. New adopters
(first uses in December): t2 of fs and t3 of fx, so 2; none for t1 (its first use of fs was in
November); 1 for payments. Production deploys (capability dp, not declared: no adoption): t1
once in November; t1 twice and t3 once (rolled back) in December, plus a staging deploy of t1.
Deploys per week: 3 over the 30 days of December (the panel's dateDiff) = 0.7, against 1 over
the previous 31 days = 7/31; with --team t1: 2 / (30 / 7), against the same 7/31.
"""

from __future__ import annotations

import csv
import html
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.report import Export, FilterError, Filters, build_report
from pipeline.warehouse.connection import Warehouse, connect
from pipeline.warehouse.migrations import migrate
from tests.support.chromium import chromium, needs_chromium, png_size_and_colours
from tests.support.views.direct import insert_events

pytestmark = pytest.mark.integration

START = datetime(2026, 12, 1, tzinfo=UTC)
END = datetime(2026, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
NOV, DEC = date(2026, 11, 10), date(2026, 12, 8)


def _event(kind: str, day: date, team: str, capability: str, data: dict[str, Any]) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": kind,
        "occurred_at": f"{day.isoformat()}T10:00:00.000Z",
        "team": team,
        "service": f"{team}-svc",
        "user": f"{team}-dev",
        "capability": capability,
        "data": data,
    }


def _call(day: date, team: str, capability: str) -> dict[str, Any]:
    data = {"api": "x", "operation": "GET /x", "status_code": 200, "latency_ms": 1}
    return _event("api_call", day, team, capability, data)


def _training(day: date, team: str, status: str) -> dict[str, Any]:
    data = {
        "run_id": f"run-{uuid.uuid4().hex[:8]}",
        "model": "m",
        "status": status,
        "duration_s": 3_600.0,
        "gpu_hours": 2.0,
        "registered_model": "m" if status == "succeeded" else "",
    }
    return _event("model_training", day, team, "ml-training", data)


def _deploy(day: date, team: str, environment: str, status: str) -> dict[str, Any]:
    data = {
        "deployment_id": f"{team}-{uuid.uuid4().hex[:8]}",
        "service": f"{team}-svc",
        "environment": environment,
        "status": status,
        "commits": [{"sha": "a" * 40, "committed_at": f"{day.isoformat()}T08:00:00.000Z"}],
    }
    return _event("deploy", day, team, "dp", data)


EVENTS = [
    _call(NOV, "t1", "fs"),
    _deploy(NOV, "t1", "production", "succeeded"),
    _deploy(DEC, "t1", "production", "succeeded"),
    _deploy(date(2026, 12, 9), "t1", "production", "succeeded"),
    _deploy(DEC, "t1", "staging", "succeeded"),
    _deploy(DEC, "t3", "production", "rolled_back"),
    _training(NOV, "t1", "succeeded"),
    _call(DEC, "t1", "fs"),
    *(_call(DEC, "t2", "fs") for _ in range(1_234)),
    _call(DEC, "t3", "fx"),
    _training(DEC, "t1", "succeeded"),
    _training(DEC, "t1", "failed"),
    _training(DEC, "t3", "succeeded"),
]
TREE = [("t1", "payments"), ("t2", "payments"), ("t3", "search"), ("payments", "eng")]


@pytest.fixture(scope="module")
def warehouse(inprocess_chdb_folder: Path) -> Iterator[Warehouse]:
    url = f"chdb://{inprocess_chdb_folder}?database=t_{uuid.uuid4().hex[:12]}"
    with connect(url, create_database=True) as wh:
        migrate(wh, progress=lambda line: None)
        insert_events(wh, EVENTS)
        since = datetime(2026, 1, 1, tzinfo=UTC)
        wh.insert_columns(
            "team_catalog",
            [
                ["team"] * 4,
                [t for t, _ in TREE],
                [t for t, _ in TREE],
                [p for _, p in TREE],
                [since] * 4,
            ],
            ["kind", "name", "team", "parent", "valid_from"],
        )
        names = ["fs", "fx", "o'brien"]
        wh.insert_columns(
            "capability_catalog",
            [names, [["api_call"], ["api_call"], ["deploy"]], [[]] * 3, [[]] * 3, [1] * 3],
            ["name", "event_types", "apis", "target_teams", "declared"],
        )
        yield wh


def _build(wh: Warehouse, **filters: str) -> tuple[str, list[Export]]:
    return build_report(
        wh,
        START,
        END,
        "Test report",
        filters=Filters(**filters),
        settings={"UPTAKE_ACTIVATION_DAYS": 3, "UPTAKE_ACTIVATION_WINDOW_DAYS": 14},
        csv_href="csv",
    )


def _figure(page: str, title: str) -> str:
    found = re.findall(
        rf"<figure[^>]*><figcaption><strong>{re.escape(title)}</strong>.*?</figure>", page
    )
    assert found, f"no panel {title!r}"
    return found[0]


def _stat(page: str, title: str) -> tuple[str, str, str]:
    figure = _figure(page, title)
    value = re.search(r'class="stat" data-value="([^"]*)"', figure)
    change = re.search(r'data-previous="([^"]*)" data-delta="([^"]*)"', figure)
    assert value and change, figure
    return value[1], change[1], change[2]


def test_headline_figures_show_the_previous_period_and_the_change(warehouse: Warehouse) -> None:
    page, exports = _build(warehouse)
    assert _stat(page, "Teams using the platform") == ("3", "1", "2")
    assert _stat(page, "Training runs") == ("3", "1", "2")
    assert "Previous period: 1 · change +2 (+200%)" in _figure(page, "Teams using the platform")
    [teams] = [
        e
        for e in exports
        if e.file_name == "platform-adoption-overview--teams-using-the-platform.csv"
    ]
    assert teams.columns == ("Teams using the platform", "Previous period", "Change")
    assert teams.rows == ((3.0, 1.0, 2.0),)


def test_the_page_speaks_to_people_not_to_sql(warehouse: Warehouse) -> None:
    page, _ = _build(warehouse)
    text = re.sub(r"<[^>]+>", " ", page)
    for raw in ("lead_time_median_s", "non_adopters", "active_28d", "n_members", "UPTAKE_"):
        assert raw not in text, raw
    assert "1,234" in _figure(page, "Teams x capabilities"), "an exact count, not 1.2 K"
    assert " K<" not in page
    assert "(3 days within 14 days)" in _figure(page, "Activated")
    per_team = _figure(page, "Per team")
    assert "<th>Median duration</th>" in per_team and "<th>First training at</th>" in per_team
    assert "<td>2026-12-08 10:00</td>" in per_team, "a time to the minute"
    assert not re.search(r"\d\d:\d\d:\d\d", text), "no seconds or microseconds"


def test_filters_narrow_the_panels_through_bound_parameters(warehouse: Warehouse) -> None:
    page, _ = _build(warehouse, capability="fs")
    assert _stat(page, "Teams using the platform") == ("2", "1", "1")
    matrix = _figure(page, "Teams x capabilities")
    assert "<th>fs</th>" in matrix and "<th>fx</th>" not in matrix and "t3" not in matrix
    assert "capability fs" in page.split("</header>")[0]

    page, _ = _build(warehouse)
    assert _stat(page, "New adopters")[0] == "2"
    deploys = [float(v) for v in _stat(page, "Deploys per week")]
    assert deploys == pytest.approx([0.7, 7 / 31, 0.7 - 7 / 31])
    assert "Previous period: 0.2 · change +0.5 (+210%)" in _figure(page, "Deploys per week")

    page, _ = _build(warehouse, team="t1")
    assert _stat(page, "Training runs") == ("2", "1", "1")
    # The organisation-wide panels are narrowed in their SQL (the dashboards' `team` variable).
    assert _stat(page, "Teams using the platform") == ("1", "1", "0")
    assert _stat(page, "New adopters")[0] == "0"
    deploys = [float(v) for v in _stat(page, "Deploys per week")]
    assert deploys == pytest.approx([2 * 7 / 30, 7 / 31, 2 * 7 / 30 - 7 / 31])
    for title in ("Teams using the platform", "Adoption rate and 28-day active rate"):
        assert "Not narrowed" not in _figure(page, title), title
    assert "Not narrowed to team" in _figure(page, "Cohort retention"), "no team breakdown"
    assert "t2" not in _figure(page, "Teams x capabilities")

    page, _ = _build(warehouse, org_unit="payments")
    assert _stat(page, "Teams using the platform") == ("2", "1", "1")
    assert _stat(page, "New adopters")[0] == "1"
    assert "Not narrowed" not in _figure(page, "Adoption by platform type")
    per_team = _figure(page, "Per team")
    assert "<td>t1</td>" in per_team and "<td>t3</td>" not in per_team
    matrix = _figure(page, "Teams x capabilities")
    assert "<td>t2</td>" in matrix and "<td>t3</td>" not in matrix

    page, _ = _build(warehouse, capability="o'brien")  # a quote reaches SQL as a parameter
    assert "capability o&#x27;brien" in page


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"capability": "fz"}, "--capability 'fz' is not a capability in the warehouse; did"),
        ({"team": "t11"}, "did you mean t1"),
        ({"org_unit": "payment"}, "did you mean payments"),
        ({"team": "x' OR 1=1 --"}, "known teams: "),
    ],
)
def test_an_unknown_name_is_a_precise_error(
    warehouse: Warehouse, filters: dict[str, str], message: str
) -> None:
    with pytest.raises(FilterError, match=re.escape(message)):
        _build(warehouse, **filters)


def _numbers(values: list[str]) -> list[float]:
    return [float(v) for v in values if v != ""]


def test_each_csv_holds_the_numbers_the_page_shows(warehouse: Warehouse, tmp_path: Path) -> None:
    page, exports = _build(warehouse)
    drawn = {e.file_name for e in exports}
    links = set(re.findall(r'<a class="csv" href="csv/([^"]+)"', page))
    assert links == drawn and len(drawn) > 20
    folder = tmp_path / "csv"
    folder.mkdir()
    for export in exports:
        path = export.write(folder)
        with path.open(newline="") as source:
            header, *rows = list(csv.reader(source))
        assert tuple(header) == export.columns
        assert all("_" not in h for h in header if h not in ("fs", "fx")), header
        link = f'<a class="csv" href="csv/{re.escape(export.file_name)}">'
        figure = re.search(
            rf"<figure[^>]*><figcaption><strong>[^<]*</strong>{link}.*?</figure>", page
        )
        assert figure, export.file_name
        shown = re.findall(r'data-(?:value|previous|delta)="([^"]*)"', figure[0])
        from_csv = [c for row in rows for c in row if re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", c)]
        assert sorted(_numbers(shown)) == pytest.approx(sorted(_numbers(from_csv)), rel=1e-9), (
            export.file_name
        )


def test_help_describes_the_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--capability", "--team", "--org-unit", "--csv-dir", "previous period"):
        assert option in done.stdout, option


MEASURE = """<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="r" src="report.html" style="width:1400px;height:3000px"></iframe>
<script>
document.getElementById('r').addEventListener('load', () => {
  const doc = document.getElementById('r').contentDocument;
  const stats = [...doc.querySelectorAll('figure[data-panel-type=stat]')].map(f => [
    f.querySelector('strong').textContent, f.querySelector('.stat').innerText,
    f.querySelector('.change').innerText]);
  document.getElementById('out').textContent = JSON.stringify(
    {stats, text: doc.body.innerText});
});
</script></body></html>
"""


@needs_chromium
def test_chromium_shows_the_warehouse_figures(warehouse: Warehouse, tmp_path: Path) -> None:
    import json

    page, _ = _build(warehouse, capability="fs")
    (tmp_path / "report.html").write_text(page)
    (tmp_path / "payments.html").write_text(_build(warehouse, org_unit="payments")[0])
    (tmp_path / "measure.html").write_text(MEASURE)
    done = chromium(
        "--virtual-time-budget=15000", "--dump-dom", (tmp_path / "measure.html").as_uri()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout.decode(), re.S)
    assert found and found[1] != "pending", "the measuring script did not run"
    measured = json.loads(html.unescape(found[1]))
    stats = {title: (value, change) for title, value, change in measured["stats"]}
    # The figures of the warehouse, as the browser lays them out for a reader.
    assert stats["Teams using the platform"] == ("2", "Previous period: 1 · change +1 (+100%)")
    assert stats["Training runs"] == ("3", "Previous period: 1 · change +2 (+200%)")
    assert "1,234" in measured["text"], "the exact count as the browser shows it"
    assert not re.search(r"active_28d|non_adopters|_median_s", measured["text"])
    # --org-unit payments: the organisation-wide headline narrowed to t1 and t2 on the page.
    (tmp_path / "measure.html").write_text(MEASURE.replace("report.html", "payments.html"))
    done = chromium(
        "--virtual-time-budget=15000", "--dump-dom", (tmp_path / "measure.html").as_uri()
    )
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout.decode(), re.S)
    assert found and found[1] != "pending", "the measuring script did not run"
    stats = {t: (v, c) for t, v, c in json.loads(html.unescape(found[1]))["stats"]}
    assert stats["Teams using the platform"] == ("2", "Previous period: 1 · change +1 (+100%)")
    assert stats["Training runs"] == ("2", "Previous period: 1 · change +1 (+100%)")

    shot = tmp_path / "report.png"
    done = chromium(
        f"--screenshot={shot}", "--window-size=1280,2000", (tmp_path / "report.html").as_uri()
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-3000:]
    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == (1280, 2000)
    assert colours > 8, "the screenshot is blank"
    # Negative control: a blank page of the same size is one colour, so the check can fail.
    (tmp_path / "blank.html").write_text("<!DOCTYPE html><html><body></body></html>")
    blank = tmp_path / "blank.png"
    chromium(f"--screenshot={blank}", "--window-size=1280,2000", (tmp_path / "blank.html").as_uri())
    assert png_size_and_colours(blank) == (1280, 2000, 1)
