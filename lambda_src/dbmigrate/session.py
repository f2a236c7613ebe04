"""One database's session: its connection and what lives on it.

``DatabaseSession`` owns the connection to one database, that database's history
table, the reconnect after a file that changed what only a new session sees, the
role reset for history rows written after a file's SET ROLE, and closing. Callers
ask it to ``apply`` or ``revert`` a file, or to ``record`` history rows; nobody else
touches its connection. ``RunLifecycle.session`` opens it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import replace

import psycopg2
import psycopg2.errors

from .access import check_access
from .apply import AppliedFile, Prepared, decode, run_file, sha256
from .db import Connection
from .errors import ConfigError, MigrationError, PrivilegeError
from .history import History, HistoryRow, Ledger, Status
from .legacy import adopt
from .model import MigrationRef
from .sqlscript import Mode, analyze
from .together import MAX_TOGETHER, MAX_TOGETHER_BYTES, round_trips, run_as_one, run_together, travels_alone

__all__ = ["DatabaseSession"]

PREPARING_THREAD = "dbmigrate-prepare"


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
        self._prepared: dict[str, Prepared] = {}
        self._preparing: ThreadPoolExecutor | None = None
        self._ahead: Future[dict[str, Prepared]] | None = None
        self._closing = False  # the preparing thread stops at its next file

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
        self._closing = True
        if self._preparing is not None:
            self._preparing.shutdown(wait=True, cancel_futures=True)
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

    def together(self, refs: Sequence[MigrationRef]) -> list[MigrationRef]:
        """The first of ``refs`` and those after it that may travel with it in one round trip.

        The files of the round trip after it are read and parsed meanwhile, on a thread of
        the session's own, while this one runs on the server.
        """
        group = self._group(refs)
        self._prepare_ahead(refs[len(group) :])
        return group

    def _group(self, refs: Sequence[MigrationRef]) -> list[MigrationRef]:
        def in_turn() -> Iterator[Prepared]:  # up to the first that cannot be prepared (unless it is the first)
            for index, ref in enumerate(refs[:MAX_TOGETHER]):
                try:
                    yield self._prepare(ref, ref.key, before=None)
                except MigrationError:
                    if not index:
                        raise
                    return  # the files before it run first; its error comes when it is reached

        return [file.ref for file in next(round_trips(in_turn(), alone=travels_alone))]

    def apply_together(
        self,
        refs: Sequence[MigrationRef],
        on_applied: Callable[[AppliedFile], None],
        *,
        start_within_s: float | None = None,
    ) -> int:
        """Apply ``refs`` (from ``together``) in order; returns how many were applied (see run_together)."""
        files = [self._take(ref, ref.key, before=None) for ref in refs]
        if len(files) == 1:
            on_applied(self._run(files[0]))
            return 1
        return run_together(self._conn, files, self._history, on_applied, start_within_s=start_within_s)

    def _prepare(self, ref: MigrationRef, key: str, *, before: HistoryRow | None) -> Prepared:
        """``key`` of ``ref`` read, parsed and given its ledger (kept until it runs: ``together`` reads ahead)."""
        if key not in self._prepared and self._ahead is not None:
            self._prepared.update(self._ahead.result())
            self._ahead = None
        if key not in self._prepared:
            self._prepared[key] = self._prepared_file(ref, key, before=before)
        return self._prepared[key]

    def _prepared_file(self, ref: MigrationRef, key: str, *, before: HistoryRow | None) -> Prepared:
        """``key`` of ``ref`` read and parsed; changes nothing of the session (it may run on the preparing thread)."""
        data = self._read(key)
        script = analyze(decode(data, ref), database=ref.database, file=key)
        total = len(script.statements)
        row = self.row(ref, data, status=Status.APPLIED, mode=script.mode.value)
        after = None if before else replace(row, statements_done=total, statements_total=total)
        ledger = Ledger(self._history, before=before, after=after, key=key, as_session_user=script.changes_role)
        return Prepared(ref, key, script, ledger, len(data))

    def _prepare_ahead(self, refs: Sequence[MigrationRef]) -> None:
        """Start preparing what could be the next round trip (the files after ``together``'s group).

        What is held ahead stays within one round trip's bytes, counting a file ``together``
        has already prepared (the one that ended the group), or is one file bigger than that.
        """
        held = sum(self._prepared[ref.key].size for ref in refs[:MAX_TOGETHER] if ref.key in self._prepared)
        refs = [ref for ref in refs[:MAX_TOGETHER] if ref.key not in self._prepared]
        if not refs or self._ahead is not None:
            return
        if self._preparing is None:
            self._preparing = ThreadPoolExecutor(max_workers=1, thread_name_prefix=PREPARING_THREAD)
        self._ahead = self._preparing.submit(self._prepared_ahead, refs, held)

    def _prepared_ahead(self, refs: Sequence[MigrationRef], held: int) -> dict[str, Prepared]:
        """On the preparing thread: ``refs`` in order, as far as the first round trip they make, or until
        what is held (``held`` bytes before them) reaches a round trip's bytes.

        A file that cannot be prepared ends it: it is prepared again when the run reaches
        it, and raises its error there, in turn.
        """
        prepared: dict[str, Prepared] = {}

        def in_turn() -> Iterator[Prepared]:
            size = held
            for ref in refs:
                if self._closing or size >= MAX_TOGETHER_BYTES:
                    return
                try:
                    file = self._prepared_file(ref, ref.key, before=None)
                except Exception:  # raised again in the run's own thread, where the file is reached
                    return
                prepared[ref.key] = file
                size += file.size
                yield file

        next(round_trips(in_turn(), alone=travels_alone), None)
        return prepared

    def _reconnect(self) -> None:
        """A new session for the files after one that changed what only a new session sees."""
        if self._ahead is not None:  # its ledgers would write through the old connection
            self._ahead.result()
            self._ahead = None
        self._prepared.clear()
        self._conn.close()
        self._conn = self._connect()
        self._history = History(self._conn, self.schema)

    def apply_as_one(self, refs: Sequence[MigrationRef], on_applied: Callable[[AppliedFile], None]) -> int:
        """Apply ``refs`` in one transaction: all, or none (every file is read and checked first)."""
        files = [self._take(ref, ref.key, before=None) for ref in refs]
        apart = [file for file in files if file.script.mode is not Mode.TRANSACTION]
        if apart:
            raise ConfigError(
                f"all or nothing: {len(apart)} pending file(s) cannot run in one transaction: "
                + "; ".join(f"{file.key}: {file.script.reason}" for file in apart),
                database=self.database,
                file=apart[0].key,
                hint="apply the files up to them without {all_or_nothing} first, or move the statements that "
                "need their own transactions into files applied on their own; nothing was applied",
                settings=("all_or_nothing",),
                files=[file.key for file in apart],
            )
        if run_as_one(self._conn, files, on_applied):
            self._reconnect()
        return len(files)

    def _take(self, ref: MigrationRef, key: str, *, before: HistoryRow | None) -> Prepared:
        file = self._prepare(ref, key, before=before)
        del self._prepared[key]
        return file

    def _step(self, ref: MigrationRef, key: str, *, before: HistoryRow | None) -> AppliedFile:
        return self._run(self._take(ref, key, before=before))

    def _run(self, file: Prepared) -> AppliedFile:
        outcome = run_file(self._conn, file)
        if outcome.reconnect:
            self._reconnect()
        return outcome
