"""What a statement run outside a transaction may leave behind, and how to check it.

A failed ``CREATE INDEX CONCURRENTLY`` (or ``REINDEX ... CONCURRENTLY``) leaves an
INVALID index that enforces nothing; a rerun with ``IF NOT EXISTS`` then skips over it
and succeeds. Such indexes are found in ``pg_index`` on the statement's table, named,
and never recorded as applied. A failed ``DETACH PARTITION ... CONCURRENTLY`` leaves
the partition pending detach, to be finalized. For a statement whose outcome is
unknown (the client died while it ran), ``check_advice`` says what to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2

from .db import Connection
from .sqlscript import Statement

__all__ = ["Leftover", "check_advice", "describe", "fixes", "index_target", "left_behind", "watch"]

INVALID_INDEXES = """
SELECT i.indexrelid::regclass::text FROM pg_index i
WHERE NOT i.indisvalid AND i.indrelid IN (
    SELECT to_regclass(%(relation)s)
    UNION SELECT indrelid FROM pg_index WHERE indexrelid = to_regclass(%(relation)s))
ORDER BY 1
"""

INVALID_INDEX = (
    "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid AND indexrelid = to_regclass(%(relation)s)"
)

DETACH_PENDING = """
SELECT i.inhrelid::regclass::text, i.inhparent::regclass::text FROM pg_inherits i
WHERE i.inhdetachpending AND i.inhrelid = to_regclass(%(relation)s)
"""


@dataclass(frozen=True)
class Leftover:
    """Something a statement left in the database that is neither done nor undone."""

    name: str
    what: str
    fix: str


def watch(conn: Connection, statement: Statement) -> set[str]:
    """Before a statement runs: the invalid indexes already there (not its doing)."""
    target = index_target(statement)
    return invalid_indexes(conn, target[0]) if target else set()


def left_behind(conn: Connection, statement: Statement, before: set[str]) -> list[Leftover]:
    """After a statement ran or failed: what it left half done, by name."""
    target = index_target(statement)
    if target is not None:
        after = invalid_indexes(conn, target[0])
        named = invalid_indexes(conn, target[1], only_named=True) if target[1] else set()
        return [
            Leftover(
                name,
                f"invalid index {name} (it enforces nothing; IF NOT EXISTS would skip over it)",
                f"DROP INDEX CONCURRENTLY {name}",
            )
            for name in sorted((after - before) | named)
        ]
    partition = _detached_concurrently(statement)
    if partition is None or conn.closed:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute(DETACH_PENDING, {"relation": partition})
            pending = cur.fetchall()
    except psycopg2.Error:
        return []
    return [
        Leftover(
            child,
            f"partition {child} of {parent} pending detach (queries of {parent} no longer see it)",
            f"ALTER TABLE {parent} DETACH PARTITION {child} FINALIZE",
        )
        for child, parent in pending
    ]


def describe(left: list[Leftover]) -> str:
    """One clause naming everything left behind."""
    return "left behind " + "; ".join(item.what for item in left)


def fixes(left: list[Leftover]) -> str:
    """The statements that clear what was left behind."""
    return "clear it with " + "; ".join(item.fix for item in left)


def _detached_concurrently(statement: Statement) -> str | None:
    if statement.node != "AlterTableStmt":
        return None
    for cmd in statement.tree.get("cmds", []):
        partition = cmd.get("AlterTableCmd", {}).get("def", {}).get("PartitionCmd", {})
        if partition.get("concurrent"):
            return _name(partition.get("name", {}))
    return None


def _name(rangevar: dict[str, Any]) -> str | None:
    if not rangevar.get("relname"):
        return None
    schema = rangevar.get("schemaname")
    return f'"{schema}"."{rangevar["relname"]}"' if schema else f'"{rangevar["relname"]}"'


def index_target(statement: Statement) -> tuple[str, str | None] | None:
    """For a statement that builds or drops an index concurrently: (its table or index, the index it names)."""
    tree = statement.tree
    if statement.node == "IndexStmt" and tree.get("concurrent"):
        relation = tree.get("relation", {})
        table = _name(relation)
        index = tree.get("idxname")
        schema = relation.get("schemaname")
        named = (f'"{schema}"."{index}"' if schema else f'"{index}"') if index else None
        return (table, named) if table else None
    if statement.node == "DropStmt" and tree.get("concurrent") and tree.get("removeType") == "OBJECT_INDEX":
        # Dropping concurrently first marks the index invalid: a failure after that leaves it so.
        parts = [item.get("String", {}).get("sval", "") for item in tree["objects"][0].get("List", {}).get("items", [])]
        name = ".".join(f'"{part}"' for part in parts)
        return (name, name) if parts else None
    if statement.node == "ReindexStmt" and statement.transactional is False and tree.get("relation"):
        target = _name(tree["relation"])
        return (target, None) if target else None
    return None


def invalid_indexes(conn: Connection, relation: str, *, only_named: bool = False) -> set[str]:
    """Names of the invalid indexes on a table (or on the table of an index); empty if unknown.

    With ``only_named``, ``relation`` is an index: its name if it is invalid.
    """
    if conn.closed:
        return set()
    try:
        with conn.cursor() as cur:
            cur.execute(INVALID_INDEX if only_named else INVALID_INDEXES, {"relation": relation})
            return {name for (name,) in cur.fetchall()}
    except psycopg2.Error:
        return set()


def check_advice(statement: Statement) -> str:
    """What to look at to learn whether a statement whose outcome is unknown took effect."""
    target = index_target(statement)
    if target is not None:
        table, index = target
        what = f"index {index}" if index else f"the indexes of {table}"
        return (
            f"whether {what} exists and is valid (SELECT indexrelid::regclass, indisvalid FROM pg_index "
            f"WHERE indrelid = '{table}'::regclass), and that the statement no longer runs (pg_stat_activity)"
        )
    return (
        "whether its effect is in the database, and that it no longer runs (pg_stat_activity, "
        "application_name dbmigrate)"
    )
