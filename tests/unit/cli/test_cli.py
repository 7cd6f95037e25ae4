"""The `uptake` command line: help, argument errors, `settings`, `format_table`, and the
warehouse commands' messages on an empty embedded warehouse.

Commands that never open the warehouse run in-process through `pipeline.cli.main`; anything that
opens chdb runs in a subprocess, because this pytest process may open only its one session folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

import pipeline
from pipeline.cli import build_parser, main
from pipeline.cli.data import format_table
from pipeline.config.settings import variable_fields
from pipeline.warehouse.migrations import available
from tests.conftest import REPO

COMMANDS = [
    "broker",
    "migrate",
    "query",
    "settings",
    "dlq",
    "simulate",
    "worker",
    "writer",
    "demo",
    "bench",
    "soak",
    "collector",
    "backfill",
    "dashboards",
    "report",
    "catalog",
    "impact",
    "rules",
]
BROKER_COMMANDS = ["start", "stop", "status"]
ENV_NAMES = [f.metadata["env"].name for f in variable_fields()]
PASSWORD = "s3cret"


def _squash(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No UPTAKE_* from the outside; a wide terminal so argparse does not wrap help lines."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UPTAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "10000")


def _run_main(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `uptake argv` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _subparsers() -> dict[str, object]:
    parser = build_parser()
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):
            return dict(action.choices)
    raise AssertionError("uptake has no subcommands")


# --- help -----------------------------------------------------------------------------------


def test_the_parser_has_exactly_the_documented_commands() -> None:
    assert list(_subparsers()) == COMMANDS


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_main(["--help"], capsys)
    assert code == 0
    assert err == ""
    assert out.startswith("usage: uptake ")
    assert "Typical first run:" in out
    helps = {
        "broker": "run a local single-node Kafka broker (KRaft, no Docker)",
        "migrate": "create or upgrade the warehouse tables",
        "query": "run SQL against the warehouse and print a table",
        "settings": "show every setting, its environment variable and value",
        "simulate": "send realistic platform usage events",
        "worker": "run the stream processor: Kafka -> validate -> ClickHouse",
        "writer": "write the workers' batches to ClickHouse (UPTAKE_WRITER=kafka: scale-out)",
        "demo": "the whole pipeline once",
        "bench": "measure pipeline throughput against raw baselines",
        "soak": "sustained load at a fraction of the measured throughput",
        "dlq": "inspect and replay the dead-letter topic",
        "collector": "run the HTTP collector: POST /v1/events with a bearer token -> Kafka",
        "backfill": "load old events from JSONL files (past the 7-day lateness limit)",
        "catalog": "load the team and capability catalogs into the warehouse, or show them",
        "dashboards": "generate the Grafana dashboards (dashboards/*.json) from their Python code",
        "report": "write a self-contained HTML report of adoption, impact and the ML platform",
        "impact": "estimate what adopting each capability changed in the DORA keys",
        "rules": "point the alerts' runbook_url at your copy of docs/operations.md",
    }
    assert set(helps) == set(COMMANDS)
    for name, help_ in helps.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(help_)}", out, re.MULTILINE), name


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_main([], capsys)
    assert code == 2
    assert out == ""
    assert err.splitlines()[-1] == "uptake: error: the following arguments are required: COMMAND"


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run_main(["simulat"], capsys)
    assert code == 2
    assert "invalid choice: 'simulat'" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run_main(["--version"], capsys)
    assert code == 0
    assert out == f"uptake {pipeline.__version__}\n"


@pytest.mark.parametrize("name", COMMANDS)
def test_each_subcommand_help_shows_its_description(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    description = _subparsers()[name].description  # type: ignore[attr-defined]
    assert description and len(description) > 40, f"{name} has no real description"
    code, out, err = _run_main([name, "--help"], capsys)
    assert code == 0
    assert err == ""
    assert out.startswith(f"usage: uptake {name} ")
    assert _squash(description) in _squash(out)


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("migrate", "Safe to run again"),
        ("query", "one process at a time"),
        ("settings", "secrets redacted"),
        ("simulate", "The same --seed gives the same events"),
        ("worker", "commit offsets only after ClickHouse acknowledged"),
        ("demo", "DORA before vs after adoption"),
        ("bench", "pipeline_events_per_s"),
        ("broker", "KRaft mode"),
    ],
)
def test_subcommand_help_says_what_it_does(
    name: str, phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _run_main([name, "--help"], capsys)
    assert phrase in _squash(out)


@pytest.mark.parametrize("name", BROKER_COMMANDS)
def test_each_broker_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run_main(["broker", name, "--help"], capsys)
    assert code == 0
    assert out.startswith(f"usage: uptake broker {name} ")
    assert "--home" in out and "--port" in out


# --- argument errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["simulate", "--events", "0"],
            "uptake simulate: error: argument --events: 0 must be at least 1",
        ),
        (
            ["simulate", "--events", "abc"],
            "uptake simulate: error: argument --events: 'abc' is not a whole number",
        ),
        (
            ["simulate", "--events", "5", "--duration", "3"],
            "uptake simulate: error: argument --duration: not allowed with argument --events",
        ),
        (
            ["simulate", "--duration", "0"],
            "uptake simulate: error: argument --duration: 0 must be more than 0 seconds",
        ),
        (
            ["simulate", "--duration", "soon"],
            "uptake simulate: error: argument --duration: 'soon' is not a number of seconds",
        ),
        (
            ["simulate", "--per-message", "0"],
            "uptake simulate: error: argument --per-message: 0 must be at least 1",
        ),
        (["query"], "uptake query: error: the following arguments are required: sql"),
        (
            ["query", "--format", "xml", "SELECT 1"],
            "uptake query: error: argument --format: invalid choice: 'xml' "
            "(choose from 'table', 'tsv', 'json')",
        ),
        (
            ["query", "--max-rows", "many", "SELECT 1"],
            "uptake query: error: argument --max-rows: 'many' is not a whole number",
        ),
        (
            ["bench", "--events", "-1"],
            "uptake bench: error: argument --events: -1 must be at least 1",
        ),
        (
            ["bench", "--freshness-rate", "0"],
            "uptake bench: error: argument --freshness-rate: 0 must be at least 1",
        ),
        (
            ["worker", "--exit-when-idle", "0"],
            "uptake worker: error: argument --exit-when-idle: 0 must be more than 0 seconds",
        ),
        (
            ["demo", "--events", "x"],
            "uptake demo: error: argument --events: 'x' is not a whole number",
        ),
        (["migrate", "--bogus"], "uptake: error: unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2_with_a_precise_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run_main(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.splitlines()[-1] == message
    assert err.startswith("usage: uptake")
    assert "Traceback" not in err


def test_events_accept_underscores(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["simulate", "--events", "100_000"])
    assert args.events == 100_000
    assert args.duration is None


# --- settings -------------------------------------------------------------------------------


def test_settings_prints_every_variable_with_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_main(["settings"], capsys)
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    names = [line.split()[0] for line in lines if line and not line[0].isspace()]
    assert names == ENV_NAMES
    for f in variable_fields():
        assert f.metadata["env"].help in out
    assert re.search(r"^UPTAKE_TOPIC_PARTITIONS\s+4$", out, re.MULTILINE)
    assert re.search(r"^UPTAKE_CLICKHOUSE_URL\s+\(default\) chdb:///", out, re.MULTILINE)


def test_settings_shows_environment_values_and_redacts_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UPTAKE_CLICKHOUSE_URL", f"http://u:{PASSWORD}@h:8123/db")
    monkeypatch.setenv("UPTAKE_TOPIC_PARTITIONS", "9")
    code, out, err = _run_main(["settings"], capsys)
    assert code == 0
    assert PASSWORD not in out + err
    assert re.search(r"^UPTAKE_CLICKHOUSE_URL\s+http://u:\*\*\*@h:8123/db$", out, re.MULTILINE)
    assert re.search(r"^UPTAKE_TOPIC_PARTITIONS\s+9$", out, re.MULTILINE)


def test_a_bad_setting_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UPTAKE_TOPIC_PARTITIONS", "four")
    code, out, err = _run_main(["settings"], capsys)
    assert code == 2
    assert out == ""
    assert err == "error: UPTAKE_TOPIC_PARTITIONS='four' is not a valid int\n"


def test_a_bad_url_scheme_is_a_usage_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UPTAKE_CLICKHOUSE_URL", f"ftp://u:{PASSWORD}@h/db")
    code, _, err = _run_main(["query", "SELECT 1"], capsys)  # fails before opening anything
    assert code == 2
    assert err.startswith("error: UPTAKE_CLICKHOUSE_URL must start with chdb://")
    assert PASSWORD not in err


# --- format_table ---------------------------------------------------------------------------


def test_format_table_aligns_numbers_right_and_strings_left() -> None:
    table = format_table(["team", "events", "share"], [("payments", 5, 0.5), ("ml", 12345, 0.25)])
    assert table == "\n".join(
        [
            "team     | events | share",
            "---------+--------+------",
            "payments |      5 |   0.5",
            "ml       |  12345 |  0.25",
            "(2 rows)",
        ]
    )


def test_format_table_counts_one_row_in_the_singular() -> None:
    table = format_table(["n"], [(7,)])
    assert table.splitlines() == ["n", "-", "7", "(1 row)"]


def test_format_table_without_rows() -> None:
    assert format_table(["team", "n"], []).splitlines() == ["team | n", "-----+--", "(0 rows)"]


def test_format_table_a_column_with_any_string_is_left_aligned() -> None:
    lines = format_table(["v"], [(1,), ("abc",)]).splitlines()
    assert lines[2:4] == ["1", "abc"]


def test_format_table_shows_none_empty_and_floats_short() -> None:
    lines = format_table(["a", "b"], [("x", None), ("yy", 1 / 3)]).splitlines()
    assert lines[2] == "x  |"
    assert lines[3] == "yy | 0.333333"


# --- the warehouse commands, each in its own process ------------------------------------------


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update({"UPTAKE_HOME": str(tmp_path / "home"), "UPTAKE_CLICKHOUSE_URL": url})
    return env


def _uptake(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


NO_DATABASE = "error: the warehouse has no database 'uptake' yet: run `uptake migrate` first\n"


def test_query_on_a_fresh_folder_says_to_migrate(tmp_path: Path) -> None:
    done = _uptake(_env(tmp_path, f"chdb://{tmp_path / 'x'}"), "query", "SELECT 1")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == NO_DATABASE


def test_migrate_status_on_a_fresh_folder_is_clear(tmp_path: Path) -> None:
    """Either the pending list or a message saying to migrate; never a traceback."""
    done = _uptake(_env(tmp_path, f"chdb://{tmp_path / 'x'}"), "migrate", "--status")
    assert "Traceback" not in done.stderr
    if done.returncode == 0:
        for migration in available():
            assert re.search(rf"^{migration.path.name}\s+pending$", done.stdout, re.MULTILINE)
    else:
        assert done.returncode == 1
        assert done.stderr == NO_DATABASE


def test_migrate_status_pending_then_applied(tmp_path: Path) -> None:
    folder = tmp_path / "wh"
    env = _env(tmp_path, f"chdb://{folder}")
    names = [m.path.name for m in available()]
    assert names and names[0] == "0001_events_and_rejects.sql"
    newest = available()[-1].version

    # A database without the ledger: --status lists every migration as pending.
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipeline.warehouse.connection import connect; "
            "connect(sys.argv[1], create_database=True).close()",
            f"chdb://{folder}",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    done = _uptake(env, "migrate", "--status")
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()] == [[n, "pending"] for n in names]

    done = _uptake(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"migrated chdb://{folder} to version {newest}\n"
    assert [line.split() for line in done.stderr.splitlines()] == [["applying", n] for n in names]

    done = _uptake(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"chdb://{folder} is up to date\n"

    done = _uptake(env, "migrate", "--status")
    assert [line.split() for line in done.stdout.splitlines()] == [[n, "applied"] for n in names]


@pytest.fixture(scope="module")
def migrated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a migrated embedded warehouse, shared by the query tests below."""
    tmp_path = tmp_path_factory.mktemp("cli-migrated")
    env = _env(tmp_path, f"chdb://{tmp_path / 'wh'}")
    done = _uptake(env, "migrate")
    assert done.returncode == 0, done.stderr
    return env


SQL = "SELECT number AS n, concat('t', toString(number)) AS s FROM numbers(3) ORDER BY n"


def test_query_prints_a_table(migrated_env: dict[str, str]) -> None:
    done = _uptake(migrated_env, "query", SQL)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "n | s\n--+---\n0 | t0\n1 | t1\n2 | t2\n(3 rows)\n"
    assert done.stderr == ""


def test_query_json_with_max_rows(migrated_env: dict[str, str]) -> None:
    done = _uptake(migrated_env, "query", "--format", "json", "--max-rows", "2", SQL)
    assert done.returncode == 0, done.stderr
    assert msgspec.json.decode(done.stdout) == [{"n": 0, "s": "t0"}, {"n": 1, "s": "t1"}]
    assert done.stderr == "(1 more row not shown; use --max-rows)\n"


def test_query_tsv_on_the_migrated_tables(migrated_env: dict[str, str]) -> None:
    sql = (
        "SELECT (SELECT count() FROM events) AS events, (SELECT count() FROM rejected_events) AS r"
    )
    done = _uptake(migrated_env, "query", "--format", "tsv", sql)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "events\tr\n0\t0\n"


def test_invalid_sql_is_an_error_message_not_a_traceback(migrated_env: dict[str, str]) -> None:
    done = _uptake(migrated_env, "query", "SELEC 1")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    assert "Syntax error" in done.stderr
