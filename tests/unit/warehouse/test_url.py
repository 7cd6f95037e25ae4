"""Warehouse URLs: parse_url for the embedded engine and servers, with_database, and identifier
quoting."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.warehouse.connection import (
    DEFAULT_DATABASE,
    Target,
    WarehouseError,
    parse_url,
    quote_identifier,
    with_database,
)

PASSWORD = "s3cret"


def test_the_default_database_is_uptake() -> None:
    assert DEFAULT_DATABASE == "uptake"


def test_chdb_absolute_folder() -> None:
    target = parse_url("chdb:///var/lib/uptake/warehouse")
    assert target.kind == "chdb"
    assert target.path == Path("/var/lib/uptake/warehouse")
    assert target.database == "uptake"
    assert target.host == ""
    assert target.password == ""


def test_chdb_database_from_the_query_string() -> None:
    target = parse_url("chdb:///data/wh?database=analytics")
    assert target.path == Path("/data/wh")
    assert target.database == "analytics"


def test_chdb_percent_encoded_folder_is_decoded() -> None:
    assert parse_url("chdb:///data/my%20warehouse").path == Path("/data/my warehouse")


@pytest.mark.parametrize(
    ("url", "host", "port", "database", "secure"),
    [
        ("http://ch.internal", "ch.internal", 8123, "uptake", False),
        ("http://ch.internal/", "ch.internal", 8123, "uptake", False),
        ("https://ch.internal", "ch.internal", 8443, "uptake", True),
        ("http://ch.internal:9000/metrics", "ch.internal", 9000, "metrics", False),
        ("https://ch.internal:18443/db", "ch.internal", 18443, "db", True),
        ("http://ch.internal/?database=q", "ch.internal", 8123, "q", False),
        ("http://ch.internal/path_db?database=q", "ch.internal", 8123, "path_db", False),
    ],
)
def test_server_urls(url: str, host: str, port: int, database: str, secure: bool) -> None:
    target = parse_url(url)
    assert target.kind == "server"
    assert (target.host, target.port, target.database, target.secure) == (
        host,
        port,
        database,
        secure,
    )
    assert target.path is None
    assert target.username == "default"
    assert target.password == ""
    assert target.url == url


def test_server_url_with_user_and_password() -> None:
    target = parse_url(f"https://analyst:{PASSWORD}@ch.example.com:8443/adoption")
    assert target.username == "analyst"
    assert target.password == PASSWORD
    assert target.host == "ch.example.com"
    assert target.port == 8443
    assert target.database == "adoption"
    assert target.secure is True


def test_percent_encoded_user_and_password_are_decoded() -> None:
    target = parse_url("http://ana%20lyst:p%40ss%3Aw%2Fo%23rd@h:8123/db")
    assert target.username == "ana lyst"
    assert target.password == "p@ss:w/o#rd"
    assert target.host == "h"
    assert target.database == "db"


def test_repr_of_a_target_hides_the_password() -> None:
    url = f"http://u:{PASSWORD}@h:8123/db"
    target = parse_url(url)
    assert PASSWORD not in repr(target)
    assert PASSWORD not in str(target)
    assert "u:***@h:8123" in repr(target)
    assert "database='db'" in repr(target)


def test_repr_of_a_chdb_target() -> None:
    assert (
        repr(parse_url("chdb:///data/wh")) == "Target(chdb, 'chdb:///data/wh', database='uptake')"
    )


@pytest.mark.parametrize(
    "url",
    [
        "chdb://relative/folder",
        f"chdb://u:{PASSWORD}@host/folder",
        "chdb://",
        "chdb:///",
    ],
)
def test_chdb_url_without_an_absolute_folder_is_refused(url: str) -> None:
    with pytest.raises(WarehouseError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert "chdb:///absolute/folder" in message
    assert "three slashes" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "url", ["http://:8123/db", "https:///db", f"http://u:{PASSWORD}@/db", "http://"]
)
def test_server_url_without_a_host_is_refused(url: str) -> None:
    with pytest.raises(WarehouseError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert "names no host" in message
    assert "http://host:8123/database" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://u:{PASSWORD}@h:21/db",
        f"clickhouse://u:{PASSWORD}@h/db",
        "/data/wh",
        "",
    ],
)
def test_unsupported_scheme_is_refused_with_the_accepted_forms(url: str) -> None:
    with pytest.raises(WarehouseError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert message.startswith("unsupported warehouse URL")
    assert "chdb:///folder" in message
    assert "http(s)://user:password@host:port/database" in message
    assert PASSWORD not in message


@pytest.mark.parametrize("url", ["http://h:abc/db", "http://h:99999/db"])
def test_a_bad_port_is_a_warehouse_error(url: str) -> None:
    with pytest.raises(WarehouseError):
        parse_url(url)


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("events", "`events`"),
        ("my db", "`my db`"),
        ("a`b", "`a\\`b`"),
        ("a\\b", "`a\\\\b`"),
        ("\\`", "`\\\\\\``"),
        ("", "``"),
    ],
)
def test_quote_identifier(name: str, quoted: str) -> None:
    assert quote_identifier(name) == quoted


def test_quote_identifier_cannot_be_escaped_from() -> None:
    """An injected backtick never ends the identifier: every inner backtick is escaped."""
    quoted = quote_identifier("x` ; DROP TABLE events; --")
    inner = quoted[1:-1]
    assert quoted.startswith("`") and quoted.endswith("`")
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            i += 2
            continue
        assert inner[i] != "`", quoted
        i += 1


def test_target_is_immutable() -> None:
    target = parse_url("chdb:///data/wh")
    assert isinstance(target, Target)
    with pytest.raises(AttributeError):
        target.database = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "moved"),
    [
        ("chdb:///data/wh", "chdb:///data/wh?database=bench_1"),
        ("chdb:///data/my%20wh?database=analytics", "chdb:///data/my%20wh?database=bench_1"),
        (f"http://u:{PASSWORD}@ch:8123/analytics", f"http://u:{PASSWORD}@ch:8123/bench_1"),
        ("https://ch", "https://ch/bench_1"),
        ("http://ch:8123/?database=analytics", "http://ch:8123/bench_1"),
    ],
)
def test_with_database_keeps_the_engine_and_replaces_the_database(url: str, moved: str) -> None:
    assert with_database(url, "bench_1") == moved
    before, after = parse_url(url), parse_url(moved)
    assert after.database == "bench_1"
    assert (after.kind, after.path, after.host, after.port, after.password) == (
        before.kind,
        before.path,
        before.host,
        before.port,
        before.password,
    )
