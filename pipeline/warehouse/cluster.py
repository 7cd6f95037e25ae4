"""ClickHouse cluster mode (`UPTAKE_CLICKHOUSE_CLUSTER`; empty = one server or the embedded
engine): the migrations' DDL rewritten for Replicated tables behind Distributed ones.

`ClusterDDL.transform(statement)` returns the statements to run instead; a statement it does not
know raises `ClusterDDLError`. `client_settings` are set on every connection in cluster mode.
The rewrite rules and why the settings keep the sink's guarantee: docs/design.md
("ClickHouse cluster mode").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pipeline.warehouse.connection import Warehouse, WarehouseError, quote_identifier

LOCAL_SUFFIX = "_local"
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}'"
REPLICA_NAME = "'{replica}'"
PARTITION_COLUMN = "_partition"

# Column operations of ALTER TABLE that a Distributed table needs too.
_COLUMN_OPS = re.compile(
    r"^(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.IGNORECASE | re.DOTALL
)
_NAME = r"(?P<name>`[^`]+`|[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)?)"
_IF_NOT_EXISTS = r"(?P<ine>IF\s+NOT\s+EXISTS\s+)?"
_CREATE_TABLE = re.compile(rf"^CREATE\s+TABLE\s+{_IF_NOT_EXISTS}{_NAME}\s*", re.I | re.S)
_CREATE_MV = re.compile(
    rf"^(?P<head>CREATE\s+MATERIALIZED\s+VIEW\s+{_IF_NOT_EXISTS}{_NAME})\s+TO\s+(?P<target>\S+)\s*",
    re.I | re.S,
)
_CREATE_VIEW = re.compile(
    rf"^CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+{_IF_NOT_EXISTS}{_NAME}", re.I | re.S
)
_ALTER_TABLE = re.compile(rf"^ALTER\s+TABLE\s+{_NAME}\s+", re.I | re.S)
_DROP = re.compile(
    rf"^DROP\s+(?P<kind>TABLE|VIEW)\s+(?P<ie>IF\s+EXISTS\s+)?{_NAME}\s*$", re.I | re.S
)
_TABLE_CLAUSES = (
    "PARTITION BY",
    "PRIMARY KEY",
    "ORDER BY",
    "SAMPLE BY",
    "TTL",
    "SETTINGS",
    "COMMENT",
)


class ClusterDDLError(WarehouseError):
    """A migration statement the cluster transform does not know how to distribute."""


@dataclass
class _Table:
    columns: str  # the column list without its parentheses ("" for CREATE TABLE ... AS other)
    like: str  # CREATE TABLE t AS like
    order_by: str


@dataclass
class ClusterDDL:
    """Rewrites single-server migration statements for the cluster `cluster`."""

    cluster: str
    database: str
    tables: dict[str, _Table] = field(default_factory=dict)

    def learn(self, statements: Iterable[str]) -> None:
        """Remember the tables the statements create (to know them in later ALTERs and views)."""
        for statement in statements:
            match = _CREATE_TABLE.match(statement.strip())
            if match:
                name = _bare(match["name"])
                self.tables.setdefault(name, _parse_table(statement[match.end() :], name))

    def transform(self, statement: str) -> list[str]:
        """The statements to run on the cluster instead of `statement`."""
        sql = statement.strip().rstrip(";").strip()
        for pattern, handler in (
            (_CREATE_MV, self._materialized_view),
            (_CREATE_TABLE, self._table),
            (_CREATE_VIEW, self._view),
            (_ALTER_TABLE, self._alter),
            (_DROP, self._drop),
        ):
            match = pattern.match(sql)
            if match:
                return handler(sql, match)
        raise ClusterDDLError(
            f"cluster mode cannot distribute this statement yet (extend "
            f"pipeline/warehouse/cluster.py): {' '.join(sql.split())[:120]}"
        )

    # --- statement kinds ---------------------------------------------------------------------

    def _on_cluster(self) -> str:
        return f"ON CLUSTER {quote_identifier(self.cluster)}"

    def _table(self, sql: str, match: re.Match[str]) -> list[str]:
        name = _bare(match["name"])
        rest = sql[match.end() :]
        table = _parse_table(rest, name)
        self.tables[name] = table
        local = name + LOCAL_SUFFIX
        ine = match["ine"] or ""
        engine_at = _find_top_level(rest, "ENGINE")
        if engine_at < 0:
            raise ClusterDDLError(f"CREATE TABLE {name} names no ENGINE")
        head = rest[:engine_at]
        if table.like:
            head = re.sub(
                rf"^AS\s+{re.escape(table.like)}\b",
                f"AS {table.like}{LOCAL_SUFFIX}",
                head.strip(),
                flags=re.I,
            )
            head += " "
        engine_sql = _replicated_engine(rest[engine_at:], name)
        local_sql = f"CREATE TABLE {ine}{local} {self._on_cluster()} {head}{engine_sql}"
        distributed = (
            f"CREATE TABLE {ine}{name} {self._on_cluster()} AS {local} "
            f"ENGINE = Distributed({_string(self.cluster)}, "
            f"{_string(self.database)}, {local}, {self._sharding_key(name)})"
        )
        return [local_sql, distributed]

    def _sharding_key(self, name: str) -> str:
        table = self.tables[name]
        while table.like and not table.columns and table.like in self.tables:
            table = self.tables[table.like]
        if re.search(rf"(^|[\s,(]){PARTITION_COLUMN}\s", table.columns):
            return PARTITION_COLUMN
        key = table.order_by.strip()
        if key.startswith("(") and key.endswith(")"):
            key = key[1:-1].strip()
        if not key or key.lower() == "tuple()":
            return "rand()"
        return f"cityHash64({key})"

    def _materialized_view(self, sql: str, match: re.Match[str]) -> list[str]:
        target = _bare(match["target"])
        rest = sql[match.end() :]
        if target not in self.tables:
            raise ClusterDDLError(f"materialized view {match['name']}: TO {target} is unknown")
        return [
            f"{match['head']} {self._on_cluster()} TO {self._local(target)} "
            f"{self._local_sources(rest)}"
        ]

    def _view(self, sql: str, match: re.Match[str]) -> list[str]:
        at = match.end("name")
        return [f"{sql[:at]} {self._on_cluster()}{sql[at:]}"]

    def _alter(self, sql: str, match: re.Match[str]) -> list[str]:
        name = _bare(match["name"])
        if name not in self.tables:
            raise ClusterDDLError(f"ALTER TABLE {name}: no migration creates that table")
        body = sql[match.end() :]
        settings_at = _find_top_level(body, "SETTINGS")
        ops_sql, query_settings = (
            (body[:settings_at], " " + body[settings_at:]) if settings_at >= 0 else (body, "")
        )
        ops = [op.strip() for op in _split_top_level(ops_sql, ",")]
        column_ops = [op for op in ops if _COLUMN_OPS.match(op)]
        out = [
            f"ALTER TABLE {name}{LOCAL_SUFFIX} {self._on_cluster()} {', '.join(ops)}"
            + query_settings
        ]
        if column_ops:
            out.append(f"ALTER TABLE {name} {self._on_cluster()} {', '.join(column_ops)}")
        return out

    def _drop(self, sql: str, match: re.Match[str]) -> list[str]:
        name = _bare(match["name"])
        kind = match["kind"].upper()
        if_exists = "IF EXISTS " if match["ie"] else ""
        statements = [f"DROP {kind} {if_exists}{name} {self._on_cluster()} SYNC"]
        if kind == "TABLE" and name in self.tables:
            statements.append(
                f"DROP TABLE {if_exists}{name}{LOCAL_SUFFIX} {self._on_cluster()} SYNC"
            )
        return statements

    # --- helpers -----------------------------------------------------------------------------

    def _local(self, name: str) -> str:
        return name + LOCAL_SUFFIX if name in self.tables else name

    def _local_sources(self, select: str) -> str:
        """`FROM t` of a known table reads `t_local`: a materialized view fires on the blocks
        inserted into the local table of its shard. JOINs keep reading the Distributed tables
        (a dimension must be seen whole from every shard)."""

        def local(m: re.Match[str]) -> str:
            return f"{m[1]}{self._local(m[2])}"

        return re.sub(r"(\bFROM\s+)([A-Za-z_]\w*)\b", local, select, flags=re.I)


def use_cluster(warehouse: Warehouse, cluster: str, *, create_database: bool = False) -> None:
    """Prepare a connection for cluster mode: the cluster must exist on the server, every
    statement of this connection gets `client_settings()`, and (for `uptake migrate`) the
    database is created on every node."""
    if warehouse.kind != "server":
        raise WarehouseError(
            "UPTAKE_CLICKHOUSE_CLUSTER needs a ClickHouse server "
            "(UPTAKE_CLICKHOUSE_URL=http://...), "
            "not the embedded engine"
        )
    known = warehouse.command(
        "SELECT count() FROM system.clusters WHERE cluster = {c:String}", {"c": cluster}
    )
    if not known:
        raise WarehouseError(
            f"the ClickHouse server has no cluster {cluster!r} (UPTAKE_CLICKHOUSE_CLUSTER): "
            "define it in remote_servers, or leave the setting empty for one server"
        )
    for key, value in client_settings().items():
        warehouse.client.set_client_setting(key, value)
    if create_database:
        warehouse.command(
            f"CREATE DATABASE IF NOT EXISTS {quote_identifier(warehouse.database)} "
            f"ON CLUSTER {quote_identifier(cluster)}"
        )


def client_settings() -> dict[str, str]:
    """Settings for every Uptake connection to a cluster (see the module docstring)."""
    return {
        "insert_distributed_sync": "1",
        "insert_quorum": "auto",
        "select_sequential_consistency": "1",
    }


def _bare(name: str) -> str:
    name = name.split(".")[-1]
    return name.strip("`")


def _string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse_table(rest: str, name: str) -> _Table:
    rest = rest.strip()
    columns, like = "", ""
    if rest.startswith("("):
        end = _matching_paren(rest, 0)
        columns = rest[1:end]
    else:
        like_match = re.match(r"AS\s+([A-Za-z_]\w*)", rest, re.I)
        if like_match:
            like = like_match[1]
    order_at = _find_top_level(rest, "ORDER BY")
    order_by = ""
    if order_at >= 0:
        tail = rest[order_at + len("ORDER BY") :]
        ends = [i for i in (_find_top_level(tail, c) for c in _TABLE_CLAUSES) if i >= 0]
        order_by = tail[: min(ends)] if ends else tail
    return _Table(columns=columns, like=like, order_by=order_by.strip())


def _replicated_engine(engine_clause: str, name: str) -> str:
    """`ENGINE = XMergeTree[(args)] rest` -> `ENGINE = ReplicatedXMergeTree(path, replica,
    args) rest SETTINGS replicated_deduplication_window = 0`."""
    match = re.match(r"ENGINE\s*=\s*(?P<engine>\w+)\s*", engine_clause, re.I)
    if not match or not match["engine"].endswith("MergeTree"):
        raise ClusterDDLError(f"table {name}: only MergeTree-family engines can be replicated")
    engine = match["engine"]
    if engine.startswith("Replicated"):
        raise ClusterDDLError(
            f"table {name} is already Replicated: write migrations for one server"
        )
    rest = engine_clause[match.end() :]
    args = ""
    if rest.startswith("("):
        end = _matching_paren(rest, 0)
        args = rest[1:end].strip()
        rest = rest[end + 1 :]
    all_args = ", ".join(a for a in (REPLICA_PATH, REPLICA_NAME, args) if a)
    rest = "\n" + rest.strip() if rest.strip() else ""
    setting = "replicated_deduplication_window = 0"
    settings_at = _find_top_level(rest, "SETTINGS")
    if settings_at >= 0:
        comment_at = _find_top_level(rest, "COMMENT")
        insert_at = comment_at if comment_at > settings_at else len(rest)
        rest = f"{rest[:insert_at].rstrip()}, {setting} {rest[insert_at:]}".rstrip()
    else:
        comment_at = _find_top_level(rest, "COMMENT")
        if comment_at >= 0:
            rest = f"{rest[:comment_at].rstrip()}\nSETTINGS {setting}\n{rest[comment_at:]}"
        else:
            rest = f"{rest}\nSETTINGS {setting}"
    return f"ENGINE = Replicated{engine}({all_args}){rest}"


def _scan(sql: str) -> Iterator[tuple[int, int]]:
    """(index, parenthesis depth) of every character outside string literals and comments."""
    depth, i, n = 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"', "`"):
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            i = j + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        yield i, depth if ch != "(" else depth - 1
        i += 1


def _matching_paren(sql: str, start: int) -> int:
    for i, depth in _scan(sql[start:]):
        if sql[start + i] == ")" and depth == 0:
            return start + i
    raise ClusterDDLError("unbalanced parentheses in a migration statement")


def _find_top_level(sql: str, keyword: str) -> int:
    """Index of `keyword` (a whole word, any case) at parenthesis depth 0, or -1."""
    pattern = re.compile(r"\b" + r"\s+".join(keyword.split()) + r"\b", re.I)
    top = {i for i, depth in _scan(sql) if depth == 0}
    for match in pattern.finditer(sql):
        if match.start() in top:
            return match.start()
    return -1


def _split_top_level(sql: str, separator: str) -> list[str]:
    parts, last = [], 0
    for i, depth in _scan(sql):
        if depth == 0 and sql[i] == separator:
            parts.append(sql[last:i])
            last = i + 1
    parts.append(sql[last:])
    return [p for p in parts if p.strip()]
