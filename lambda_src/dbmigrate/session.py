"""One database's session: its connection and what lives on it.

``DatabaseSession`` owns the connection to one database, that database's history
table, the reconnect after a file that changed what only a new session sees, the
role reset for history rows written after a file's SET ROLE, and closing. Callers
ask it to ``apply`` or ``revert`` a file, or to ``record`` history rows; nobody else
touches its connection. ``RunLifecycle.session`` opens it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import replace

import psycopg2
import psycopg2.errors

from .access import check_access
from .apply import AppliedFile, decode, run_file, sha256
from .db import Connection
from .errors import PrivilegeError
from .history import History, HistoryRow, Ledger, Status
from .legacy import adopt
from .model import MigrationRef
from .sqlscript import analyze

__all__ = ["DatabaseSession"]


class DatabaseSession:
    """The connection to one database and its history; ``connect()`` opens (and reopens) it.

    ``read`` returns a file's bytes by key; ``applied_by`` goes into every row written.
    """

    def __init__(
        self,
        database: str,
        connect: Callable[[], Connection],
        *,
        schema: str,
        applied_by: str,
        read: Callable[[str], bytes],
    ) -> None:
        self.database = database
        self.schema = schema
        self._connect = connect
        self._applied_by = applied_by
        self._read = read
        self._conn = connect()
        self._history = History(self._conn, schema)
        self._rows: dict[int, HistoryRow] = {}

    @property
    def connection(self) -> Connection:
        """The current connection, for watching it (the run's guard); never replace or close it."""
        return self._conn

    @property
    def closed(self) -> bool:
        return bool(self._conn.closed)

    def cancel(self) -> None:
        """Cancel the statement in flight, if any (safe from any thread)."""
        if not self._conn.closed:
            with suppress(psycopg2.Error):  # the statement ended meanwhile, or the connection did
                self._conn.cancel()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> DatabaseSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the history ---------------------------------------------------------------------
    def rows(self, refs: Sequence[MigrationRef], *, create: bool) -> list[HistoryRow]:
        """The database's history; on the first run, adopted from another tool's table.

        With ``create`` (only under the lock) a missing table is created together with
        the adopted rows; plan and status only show what would be adopted.
        """
        try:
            rows = self._history.read()
        except psycopg2.errors.InsufficientPrivilege as exc:
            raise self._read_refusal(exc) from exc
        if rows is None:
            rows = adopt(self._conn, self.database, refs, lambda ref: sha256(self._read(ref.key)))
            if create:
                self.refuse_unless_writable()
                self._history.create(rows)
        self._rows = {row.version: row for row in rows}
        return rows

    def write_refusal(self) -> PrivilegeError | None:
        """Why this session's role may not write the history, or None."""
        return check_access(self._conn, self.schema).refusal(write=True)

    def refuse_unless_writable(self) -> None:
        refusal = self.write_refusal()
        if refusal:
            raise refusal

    def record(self, rows: Sequence[HistoryRow], *, remove: Sequence[int] = ()) -> None:
        """Write ``rows`` (a row of an existing version replaces it) and remove versions, in one transaction."""
        statements = [self._history.put_sql(row) for row in rows]
        self._history.execute(statements + [self._history.delete_sql(version) for version in remove])

    def row(self, ref: MigrationRef, data: bytes, *, status: Status, mode: str = "none") -> HistoryRow:
        """The history row of ``ref`` whose file holds ``data``, as this session writes it."""
        return HistoryRow(
            version=ref.version,
            description=ref.description,
            file=ref.key,
            checksum=sha256(data),
            status=status,
            etag=ref.etag,
            mode=mode,
            applied_by=self._applied_by,
        )

    def _read_refusal(self, exc: psycopg2.Error) -> PrivilegeError:
        access = check_access(self._conn, self.schema)
        return access.refusal(write=False) or PrivilegeError(
            f"role {access.role!r} may not read the history {self.schema}.history: {str(exc).strip().splitlines()[0]}",
            database=self.database,
            role=access.role,
            hint=f"GRANT USAGE ON SCHEMA {self.schema} and SELECT, INSERT, UPDATE, DELETE "
            f"ON {self.schema}.history TO {access.role}",
        )

    # -- files ---------------------------------------------------------------------------
    def apply(self, ref: MigrationRef) -> AppliedFile:
        """Run ``ref``'s file; its history row commits with it (or records how far it got)."""
        return self._step(ref, ref.key, before=None)

    def revert(self, ref: MigrationRef) -> AppliedFile:
        """Run ``ref``'s down file; its history row goes with it (or records how far it got)."""
        return self._step(ref, ref.down_key or ref.key, before=self._rows[ref.version])

    def _step(self, ref: MigrationRef, key: str, *, before: HistoryRow | None) -> AppliedFile:
        data = self._read(key)
        script = analyze(decode(data, ref), database=ref.database, file=key)
        total = len(script.statements)
        row = self.row(ref, data, status=Status.APPLIED, mode=script.mode.value)
        after = None if before else replace(row, statements_done=total, statements_total=total)
        ledger = Ledger(self._history, before=before, after=after, key=key, as_session_user=script.changes_role)
        outcome = run_file(self._conn, ref, key, script, ledger)
        if outcome.reconnect:  # the file changed what only a new session sees
            self._conn.close()
            self._conn = self._connect()
            self._history = History(self._conn, self.schema)
        return outcome
