"""The history table: one row per applied file, in each database.

``<schema>.history`` (schema ``dbmigrate`` by default) records the version, the
sha256 of the file's bytes, the source's ETag, when, by whom, how long, and the state
(``Status``: applied, baselined, adopted; partial/running for a file run outside a
transaction that did not finish). Versions are ``numeric(40,0)``: real projects use
versions wider than bigint. ``HistoryRow`` is one row; every row written is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import encodings

from .db import Connection

__all__ = ["DONE", "UNFINISHED", "History", "HistoryRow", "Ledger", "Status"]


class Status(StrEnum):
    """The state a history row records."""

    APPLIED = "applied"
    BASELINED = "baselined"  # marked applied by `baseline`, never run
    ADOPTED = "adopted"  # applied by another tool, adopted from its table
    RUNNING = "running"  # a file run statement by statement: a statement is in flight
    PARTIAL = "partial"  # such a file stopped part way


DONE = frozenset({Status.APPLIED, Status.BASELINED, Status.ADOPTED})
UNFINISHED = frozenset(Status) - DONE


@dataclass(frozen=True)
class HistoryRow:
    """One row of a database's history table (the columns, in order, but ``db_user``)."""

    version: int
    description: str
    file: str
    checksum: str
    status: Status
    etag: str | None = None
    mode: str | None = None
    applied_at: datetime | None = None
    duration_ms: int | None = None
    applied_by: str | None = None
    statements_done: int | None = None
    statements_total: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (timestamps as ISO 8601)."""
        data: dict[str, Any] = {
            "version": self.version,
            "description": self.description,
            "file": self.file,
            "checksum": self.checksum,
            "status": self.status.value,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "duration_ms": self.duration_ms,
            "applied_by": self.applied_by,
        }
        if self.status in UNFINISHED:
            data.update(statements_done=self.statements_done, statements_total=self.statements_total, error=self.error)
        return data


COLUMNS = tuple(field.name for field in fields(HistoryRow))
# The columns an INSERT sets (applied_at and db_user take their defaults); duration_ms
# last, as the server may measure it.
INSERTED = (*(name for name in COLUMNS if name not in ("applied_at", "duration_ms")), "duration_ms")
# From the start of the file's own transaction (apply.TRANSACTION_PREFIX notes it): several
# files may share one query string, whose statement_timestamp() is the same for all of them.
MEASURED_DURATION = (
    "(extract(epoch FROM clock_timestamp() - current_setting('dbmigrate.file_started')::timestamptz) * 1000)::bigint"
)

TABLE_DDL = """
CREATE SCHEMA IF NOT EXISTS {{schema}};
CREATE TABLE IF NOT EXISTS {{table}} (
    version          numeric(40, 0) PRIMARY KEY CHECK (version >= 0),
    description      text        NOT NULL,
    file             text        NOT NULL,
    checksum         text        NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ({statuses})),
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
COMMENT ON TABLE {{table}} IS 'Files applied by dbmigrate, one row each; change only through dbmigrate repair';
""".format(statuses=", ".join(f"'{status.value}'" for status in Status))


class History:
    """Reads one database's history table and builds its statements; every one is schema-qualified."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self._conn = conn
        self.schema = sql.Identifier(schema)
        self.table = sql.Identifier(schema, "history")
        self._insert_into: str | None = None

    def read(self) -> list[HistoryRow] | None:
        """Every row, oldest version first, in one query; None when the table does not exist."""
        query = sql.SQL("SELECT {columns} FROM {table} ORDER BY version").format(
            columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table=self.table
        )
        try:
            with self._conn.cursor() as cur:
                cur.execute(query)
                rows = cur.fetchall()
        except psycopg2.errors.UndefinedTable:
            return None
        return [replace(HistoryRow(*values), version=int(values[0]), status=Status(values[4])) for values in rows]

    def committed(self, versions: Sequence[int]) -> set[int]:
        """Which of ``versions`` have a row (after files sent together failed: which committed)."""
        query = sql.SQL("SELECT version FROM {table} WHERE version = ANY(%s)").format(table=self.table)
        with self._conn.cursor() as cur:
            cur.execute(query, ([Decimal(version) for version in versions],))
            return {int(version) for (version,) in cur.fetchall()}

    def make_durable(self, version: int) -> None:
        """Wait until every commit so far is on disk (and on a synchronous standby).

        A commit waits for the disk only if its transaction wrote something (a read-only
        one or a bare txid_current() does not): this one rewrites the row of ``version``
        unchanged, a real write, with the session's synchronous_commit (on).
        """
        query = sql.SQL("UPDATE {table} SET version = version WHERE version = %s").format(table=self.table)
        with self._conn.cursor() as cur:
            cur.execute(query, (Decimal(version),))

    def create(self, rows: Sequence[HistoryRow]) -> None:
        """Create the schema and table with their first rows (adopted history), in one transaction."""
        ddl = sql.SQL(TABLE_DDL).format(schema=self.schema, table=self.table).as_string(self._conn)
        self.execute([ddl, *(self.insert_sql(row) for row in rows)])

    def insert_sql(self, row: HistoryRow, *, measured: bool = False) -> str:
        """The INSERT of one row as a literal statement, to travel with the file's SQL.

        With ``measured`` the duration is measured by the server from the start of the
        query string that carries the insert (the file's SQL).
        """
        columns = INSERTED[:-1] if measured else INSERTED
        if self._insert_into is None:
            self._insert_into = (
                sql.SQL("INSERT INTO {table} ({columns}) VALUES (")
                .format(table=self.table, columns=sql.SQL(", ").join(map(sql.Identifier, INSERTED)))
                .as_string(self._conn)
            )
        with self._conn.cursor() as cur:  # the driver quotes each value as sql.Literal would, at a fifth of its cost
            values = cur.mogrify(", ".join(["%s"] * len(columns)), [getattr(row, name) for name in columns])
        measure = f", {MEASURED_DURATION}" if measured else ""
        return f"{self._insert_into}{values.decode(encodings[self._conn.encoding])}{measure})"

    def put_sql(self, row: HistoryRow) -> str:
        """The INSERT of a row that replaces the row of its version, if any (applied_at and db_user stay)."""
        updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in INSERTED[1:])
        conflict = sql.SQL(" ON CONFLICT (version) DO UPDATE SET {}").format(updates).as_string(self._conn)
        return self.insert_sql(row) + conflict

    def delete_sql(self, version: int) -> str:
        """The DELETE of one row as a literal statement."""
        statement = sql.SQL("DELETE FROM {table} WHERE version = {version}").format(
            table=self.table, version=sql.Literal(Decimal(version))
        )
        return statement.as_string(self._conn)

    def execute(self, statements: Sequence[str], *, as_session_user: bool = False) -> None:
        """Run literal statements now, in one transaction: all of them take effect or none.

        With ``as_session_user`` they run as the session user (``SET LOCAL ROLE NONE``),
        leaving a role the file set in place for the session.
        """
        if not statements:
            return
        reset = "SET LOCAL ROLE NONE;\n" if as_session_user else ""
        single = len(statements) == 1 and not reset
        with self._conn.cursor() as cur:
            cur.execute(statements[0] if single else f"BEGIN;\n{reset}" + ";\n".join(statements) + ";\nCOMMIT;")


class Ledger:
    """The history writes of one file as it runs, for applying and reverting alike.

    ``before`` is the file's row before it runs (None: it is being applied), ``after``
    its row once it ran (None: it is being reverted). A file run statement by statement
    is recorded ``running`` before each statement and ``partial`` if it stops part way.
    With ``as_session_user`` (the file ran SET ROLE) rows are written as the session user.
    """

    def __init__(
        self, history: History, *, before: HistoryRow | None, after: HistoryRow | None, key: str, as_session_user: bool
    ) -> None:
        row = after or before
        assert row is not None, "a file is applied or reverted"
        self._history, self._before, self._after, self._row = history, before, after, row
        self._reset = as_session_user
        self.verb = "applied" if after else "undone"  # what the file would have been, had it run
        self._doing = "" if after else f"undoing with {key}: "
        self._stopped = "" if after else f"undo with {key} stopped: "

    def in_transaction(self) -> str:
        """The statement that commits with the file's own transaction."""
        reset = "SET LOCAL ROLE NONE;\n" if self._reset else ""
        after = self._after
        return reset + (
            self._history.insert_sql(after, measured=True) if after else self._history.delete_sql(self._row.version)
        )

    def ran_as(self, mode: str) -> None:
        """The file runs in another mode than it was read for (the server refused one transaction)."""
        if self._after is not None:
            self._after = self._row = replace(self._after, mode=mode)

    def note(self, text: str) -> str:
        """``text`` (what to check if the run dies) as the record's note while a statement runs."""
        return self._doing + text

    def start(self, note: str | None) -> None:
        self._put(replace(self._row, status=Status.RUNNING, statements_done=0, error=note))

    def progress(self, done: int, note: str | None) -> None:
        self._put(replace(self._row, statements_done=done, error=note))

    def finish(self, duration_ms: int) -> None:
        self._put(replace(self._after, duration_ms=duration_ms) if self._after else None)

    def nothing_done(self) -> None:
        """The first statement failed and nothing took effect: the record is as before the file."""
        self._put(self._before)

    def stopped(self, done: int, note: str) -> None:
        """Statements 1..``done`` took effect and the file stopped."""
        self._put(replace(self._row, status=Status.PARTIAL, statements_done=done, error=self._stopped + note))

    def _put(self, row: HistoryRow | None) -> None:
        history = self._history
        statement = history.put_sql(row) if row else history.delete_sql(self._row.version)
        history.execute([statement], as_session_user=self._reset)
        self._row = row or self._row
