"""The history table: one row per applied file, in each database.

``<schema>.history`` (schema ``dbmigrate`` by default) records the version, the
sha256 of the file's bytes, the source's ETag, when, by whom, how long, and the state
(applied, partial/running for a file run outside a transaction that did not finish).
Versions are ``numeric(40,0)``: real projects use versions wider than bigint.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from .db import Connection
from .plan import AppliedMigration

__all__ = ["History"]

COLUMNS = (
    "version",
    "description",
    "file",
    "checksum",
    "status",
    "etag",
    "mode",
    "applied_at",
    "duration_ms",
    "applied_by",
    "statements_done",
    "statements_total",
    "error",
)

# The columns an INSERT sets (the rest have defaults); duration_ms last, as it may be measured.
INSERTED = (
    "version",
    "description",
    "file",
    "checksum",
    "status",
    "etag",
    "mode",
    "applied_by",
    "statements_done",
    "statements_total",
    "error",
    "duration_ms",
)
MEASURED_DURATION = "(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::bigint"

TABLE_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    version          numeric(40, 0) PRIMARY KEY CHECK (version >= 0),
    description      text        NOT NULL,
    file             text        NOT NULL,
    checksum         text        NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ('applied', 'baselined', 'adopted', 'running', 'partial')),
    etag             text,
    mode             text        NOT NULL,
    applied_at       timestamptz NOT NULL DEFAULT now(),
    duration_ms      bigint,
    applied_by       text        NOT NULL,
    db_user          text        NOT NULL DEFAULT current_user,
    statements_done  integer,
    statements_total integer,
    error            text
);
COMMENT ON TABLE {table} IS 'Files applied by dbmigrate, one row each; change only through dbmigrate repair';
"""


class History:
    """Reads and writes one database's history table; every statement is schema-qualified."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = sql.Identifier(schema)
        self.table = sql.Identifier(schema, "history")
        # Set while a file that ran SET ROLE is applied: rows are then written as the
        # session user, in a transaction of their own, leaving the file's role in place.
        self.as_session_user = False
        self._templates: dict[bool, str] = {}

    def read(self) -> list[AppliedMigration] | None:
        """Every row, oldest version first, in one query; None when the table does not exist."""
        query = sql.SQL("SELECT {columns} FROM {table} ORDER BY version").format(
            columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table=self.table
        )
        try:
            with self.conn.cursor() as cur:
                cur.execute(query)
                rows = cur.fetchall()
        except psycopg2.errors.UndefinedTable:
            return None
        return [_row(dict(zip(COLUMNS, values, strict=True))) for values in rows]

    def create(self, rows: list[dict[str, Any]]) -> None:
        """Create the schema and table with their first rows (adopted history), in one transaction."""
        statements = [sql.SQL(TABLE_DDL).format(schema=self.schema, table=self.table).as_string(self.conn)]
        statements += [self.insert_sql(row) for row in rows]
        with self.conn.cursor() as cur:
            cur.execute("BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT;")

    def insert_sql(self, row: dict[str, Any], *, duration_since_statement_start: bool = False) -> str:
        """The INSERT of one row as a literal statement, to travel with the file's SQL.

        With ``duration_since_statement_start`` the duration is measured by the server
        from the start of the query string that carries the insert (the file's SQL).
        """
        unknown = set(row) - set(INSERTED)
        if unknown:
            raise ValueError(f"not history columns: {sorted(unknown)}")
        template = self._insert_template(measured=duration_since_statement_start)
        columns = INSERTED[:-1] if duration_since_statement_start else INSERTED
        with self.conn.cursor() as cur:
            return cur.mogrify(template, [row.get(name) for name in columns]).decode()

    def _insert_template(self, *, measured: bool) -> str:
        """``INSERT ... VALUES (%s, ...)`` for every inserted column, built once per table."""
        if measured not in self._templates:
            values: list[sql.Composable] = [sql.Placeholder()] * (len(INSERTED) - 1)
            values.append(sql.SQL(MEASURED_DURATION) if measured else sql.Placeholder())
            statement = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values})").format(
                table=self.table,
                columns=sql.SQL(", ").join(map(sql.Identifier, INSERTED)),
                values=sql.SQL(", ").join(values),
            )
            self._templates[measured] = statement.as_string(self.conn)
        return self._templates[measured]

    def insert(self, row: dict[str, Any]) -> None:
        """Insert one row now (autocommit)."""
        self._execute(self.insert_sql(row))

    def update(self, version: int, **changes: Any) -> None:
        """Update fields of one row now (autocommit)."""
        self._execute(self.update_sql(version, **changes))

    def update_sql(self, version: int, **changes: Any) -> str:
        """The UPDATE of fields of one row as a literal statement."""
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Literal(value)) for name, value in changes.items()
        )
        statement = sql.SQL("UPDATE {table} SET {assignments} WHERE version = {version}").format(
            table=self.table, assignments=assignments, version=sql.Literal(Decimal(version))
        )
        return statement.as_string(self.conn)

    def execute_together(self, statements: list[str]) -> None:
        """Run literal statements in one transaction: all of them take effect or none."""
        if statements:
            with self.conn.cursor() as cur:
                cur.execute("BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT;")

    def delete_sql(self, version: int) -> str:
        """The DELETE of one row as a literal statement, to travel with a down file's SQL."""
        statement = sql.SQL("DELETE FROM {table} WHERE version = {version}").format(
            table=self.table, version=sql.Literal(Decimal(version))
        )
        return statement.as_string(self.conn)

    def delete(self, version: int) -> None:
        """Remove one row now (a file undone, or one that failed before any statement took effect)."""
        self._execute(self.delete_sql(version))

    def _execute(self, statement: str) -> None:
        if self.as_session_user:
            statement = f"BEGIN; SET LOCAL ROLE NONE; {statement}; COMMIT"
        with self.conn.cursor() as cur:
            cur.execute(statement)


def _row(values: dict[str, Any]) -> AppliedMigration:
    values["version"] = int(values["version"])
    return AppliedMigration(**values)
