"""The ownership CSV: rows, dates, comments and precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.catalog.errors import CatalogError
from pipeline.catalog.ownership import load_ownership_csv, parse_ownership_csv
from pipeline.catalog.teams import Fact
from tests.support.catalog import t

HEADER = "kind,name,team,valid_from,valid_to\n"


def error(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        parse_ownership_csv(text, "o.csv")
    return caught.value


def test_rows_become_facts() -> None:
    text = (
        "# a comment before the header\n"
        + HEADER
        + "service,payments-api,payments,2025-01-01,2025-03-01T12:00:00+01:00\n"
        + "\n"
        + "# comments and blank lines are skipped\n"
        + "user, payments.eng0 ,payments,,\n"
        + "team-parent,payments,commerce,2025-01-01,\n"
        + "team-parent,engineering,,,\n"
    )

    snapshot = parse_ownership_csv(text, "o.csv")

    assert snapshot.sources == ("o.csv",)
    assert snapshot.facts == (
        Fact(
            "service",
            "payments-api",
            "payments",
            "",
            t("2025-01-01"),
            t("2025-03-01T11:00"),
            "o.csv:3",
        ),
        Fact("user", "payments.eng0", "payments", "", None, None, "o.csv:6"),
        Fact("team", "payments", "payments", "commerce", t("2025-01-01"), None, "o.csv:7"),
        Fact("team", "engineering", "engineering", "", None, None, "o.csv:8"),
    )


def test_load_reads_a_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "ownership.csv"
    path.write_text("\ufeff" + HEADER + "service,s,a,,\n", encoding="utf-8")

    assert load_ownership_csv(path).facts[0].name == "s"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="file not found"):
        load_ownership_csv(tmp_path / "nope.csv")


def test_header_must_be_exact() -> None:
    e = error("kind,name,owner,valid_from,valid_to\nservice,s,a,,\n")
    assert (e.source, e.line) == ("o.csv", 1)
    assert "the header must be kind,name,team,valid_from,valid_to" in str(e)


def test_empty_file() -> None:
    assert "empty" in error("# nothing\n\n").message


def test_wrong_number_of_columns() -> None:
    e = error(HEADER + "service,s,a,\n")
    assert e.line == 2
    assert "expected 5 columns" in e.message and "found 4" in e.message


@pytest.mark.parametrize(
    ("row", "entry", "field", "message"),
    [
        ("widget,s,a,,", "widget 's'", "kind", "'widget' is not one of service, user, team-parent"),
        ("service,,a,,", "service", "name", "must not be empty"),
        ("service,s,,,", "service 's'", "team", "a service row names its team"),
        ("user,u,,,", "user 'u'", "team", "a user row names its team"),
        ("service,s,a,2025-13-01,", "service 's'", "valid_from", "not an ISO date"),
        ("service,s,a,2025-01-01T10:00,", "service 's'", "valid_from", "no UTC offset"),
        ("service,s,a,,01/02/2025", "service 's'", "valid_to", "not an ISO date"),
        ("service,s,a,2025-03-01,2025-03-01", "service 's'", "valid_to", "must lie after"),
    ],
)
def test_row_errors_name_line_entry_and_column(
    row: str, entry: str, field: str, message: str
) -> None:
    e = error(HEADER + "service,ok,a,,\n" + row + "\n")

    assert (e.source, e.line, e.entry, e.field) == ("o.csv", 3, entry, field)
    assert message in e.message
    assert str(e).startswith(f"o.csv:3: {entry}: field {field!r}: ")
