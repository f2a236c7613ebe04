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
from .history import History, HistoryRow, Status
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
        if rows is not None:
            return rows
        adopted = adopt(self._conn, self.database, refs, lambda ref: sha256(self._read(ref.key)))
        if create:
            self.refuse_unless_writable()
            self._history.create(adopted)
        return adopted

    def write_refusal(self) -> PrivilegeError | None:
        """Why this session's role may not write the history, or None."""
        return check_access(self._conn, self.schema).refusal(write=True)

    def refuse_unless_writable(self) -> None:
        refusal = self.write_refusal()
        if refusal:
            raise refusal

    def record(self, rows: Sequence[HistoryRow], *, remove: Sequence[int] = ()) -> None:
        """Write ``rows`` (a row of an existing version replaces it) and remove versions, in one transaction."""
        statements = [self._history.insert_sql(row, upsert=True) for row in rows]
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
        return self._step(ref, ref.key, _Applying)

    def revert(self, ref: MigrationRef) -> AppliedFile:
        """Run ``ref``'s down file; its history row goes with it (or records how far it got)."""
        return self._step(ref, ref.down_key or ref.key, _Reverting)

    def _step(self, ref: MigrationRef, key: str, ledger: type[_Applying]) -> AppliedFile:
        data = self._read(key)
        script = analyze(decode(data, ref), database=ref.database, file=key)
        row = replace(
            self.row(ref, data, status=Status.APPLIED, mode=script.mode.value),
            statements_done=len(script.statements),
            statements_total=len(script.statements),
        )
        outcome = run_file(self._conn, ref, key, script, ledger(self._history, row, key, script.changes_role))
        if outcome.reconnect:  # the file changed what only a new session sees
            self._conn.close()
            self._conn = self._connect()
            self._history = History(self._conn, self.schema)
        return outcome


class _Applying:
    """The history writes of applying a file (``apply.Ledger``)."""

    verb = "applied"

    def __init__(self, history: History, row: HistoryRow, key: str, as_session_user: bool) -> None:
        # After a file's SET ROLE the rows are written as the session user, leaving the role in place.
        self._history = history
        self._row = row
        self._key = key
        self._as_session_user = as_session_user

    def _write(self, statement: str) -> None:
        self._history.execute([statement], as_session_user=self._as_session_user)

    def _update(self, **changes: object) -> None:
        self._write(self._history.update_sql(self._row.version, **changes))

    def in_transaction(self) -> str:
        reset = "SET LOCAL ROLE NONE;\n" if self._as_session_user else ""
        return reset + self._commit_sql()

    def _commit_sql(self) -> str:
        return self._history.insert_sql(self._row, measured=True)

    def note(self, text: str) -> str:
        return text

    def stopped_note(self, text: str) -> str:
        return text

    def start(self, note: str | None) -> None:
        self._write(self._history.insert_sql(replace(self._row, status=Status.RUNNING, statements_done=0, error=note)))

    def progress(self, done: int, note: str | None) -> None:
        self._update(statements_done=done, error=note)

    def finish(self, duration_ms: int) -> None:
        self._update(status=Status.APPLIED, error=None, duration_ms=duration_ms)

    def nothing_done(self) -> None:
        self._write(self._history.delete_sql(self._row.version))

    def stopped(self, done: int, note: str) -> None:
        self._update(status=Status.PARTIAL, statements_done=done, error=note)


class _Reverting(_Applying):
    """The history writes of reverting a file with its down file: success removes the row."""

    verb = "undone"

    def _commit_sql(self) -> str:
        return self._history.delete_sql(self._row.version)

    def note(self, text: str) -> str:
        return f"undoing with {self._key}: {text}"

    def stopped_note(self, text: str) -> str:
        return f"undo with {self._key} stopped: {text}"

    def start(self, note: str | None) -> None:
        self._update(status=Status.RUNNING, statements_done=0, error=note)

    def finish(self, duration_ms: int) -> None:
        self._write(self._history.delete_sql(self._row.version))

    def nothing_done(self) -> None:
        self._update(status=Status.APPLIED, statements_done=None, error=None)
