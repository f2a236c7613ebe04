"""Applying one file to one database, with its history row.

A transactional file travels to the server in one round trip: ``BEGIN; <file>;
INSERT <history row>; COMMIT;``. A file with statements PostgreSQL refuses inside a
transaction block runs statement by statement in autocommit, with a history row that
records how far it got: a failure after its first statement leaves a ``partial``
record that blocks further runs until ``repair``. Several files in one round trip, or
all of them in one transaction, are ``together``'s.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg2
import psycopg2.errorcodes

from .db import Connection
from .errors import MigrationError, PartialMigrationError, SqlError
from .history import Ledger
from .leftovers import Leftover, check_advice, describe, fixes, left_behind, watch
from .model import MigrationRef
from .report import ms_since
from .sqlscript import Mode, Script, SessionEffect, Statement, analyze, line_of

__all__ = [
    "AppliedFile",
    "FileRun",
    "Prepared",
    "decode",
    "fall_back",
    "how_it_runs",
    "read_as_parsed",
    "rollback",
    "run_file",
    "sha256",
]

BLOCKERS_QUERY = """
SELECT a.pid, a.application_name, a.state, date_trunc('second', a.xact_start), l.mode, l.relation::regclass::text
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (l.relation::regclass::text = ANY(%s) OR split_part(l.relation::regclass::text, '.', 2) = ANY(%s::text[]))
ORDER BY a.xact_start NULLS LAST
LIMIT 5
"""

# Each file's transaction begins by noting when the file started, for the duration in its
# history row. Among files sent together, all but the last commit without waiting for the
# disk (ASYNCHRONOUS): the last one's commit flushes them all (a commit waits for all WAL
# before its own), so what a round trip returns as applied is on disk.
FILE_START = "SELECT set_config('dbmigrate.file_started', clock_timestamp()::text, true);\n"
TRANSACTION_PREFIX = "BEGIN;\n" + FILE_START
ASYNCHRONOUS = "SET LOCAL synchronous_commit = off;\n"
# After a file that changed its session, within the all-or-nothing transaction (where
# DISCARD ALL cannot run): what the next file must not see. A role set by the file is
# reset by its history row's SET LOCAL ROLE NONE, for the rest of the transaction.
SESSION_RESET = "RESET ALL;\nDISCARD TEMP;\nDEALLOCATE ALL;\nCLOSE ALL;\nUNLISTEN *;\n"
# Files sent together in a run with a time budget: each after the first starts only while
# the budget allows (the client cannot check between them), else its transaction stops
# with this SQLSTATE before the file, and the run stops there as at any file boundary.
DEADLINE_SQLSTATE = "DMDL1"
DEADLINE_CHECK = (
    "DO $dbmigrate$ BEGIN IF clock_timestamp() > statement_timestamp() + interval '{seconds:.3f} seconds' THEN "
    "RAISE EXCEPTION 'dbmigrate: the time budget does not allow another file' USING ERRCODE = '"
    + DEADLINE_SQLSTATE
    + "'; END IF; END $dbmigrate$;\n"
)
# Errors not worth re-running a file for to find the failing statement: the server
# was waiting on something, or the connection is gone.
NO_DIAGNOSTIC_RERUN = ("57014", "55P03", "40P01", "40001", "57P01", "57P02", "57P03")
# Errors that mean "these statements cannot share one transaction" (a procedure that
# commits, a new enum value used, ALTER TABLE with pending deferred trigger events):
# the transaction was rolled back, so the file is run again statement by statement.
NEEDS_AUTOCOMMIT = ("2D000", "55P04", "25001")
PENDING_TRIGGER_EVENTS = "pending trigger events"


@dataclass(frozen=True)
class AppliedFile:
    """The outcome of one applied file."""

    ref: MigrationRef
    mode: Mode
    statements: int
    duration_ms: int
    reconnect: bool = False

    def measured(self) -> dict[str, Any]:
        """How it ran, for the ``file_done`` event."""
        return {"mode": self.mode.value, "duration_ms": self.duration_ms}


def sha256(data: bytes) -> str:
    """The checksum recorded for a file: sha256 of its exact bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, ref: MigrationRef) -> str:
    """A file's text (UTF-8, a byte-order mark dropped), or SqlError naming the file."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SqlError(
            f"file is not valid UTF-8 (byte {exc.start})",
            database=ref.database,
            file=ref.key,
            line=line_of(data[: exc.start].decode("utf-8", "replace"), exc.start),
            hint="save the file as UTF-8",
        ) from exc


def how_it_runs(data: bytes, ref: MigrationRef) -> dict[str, Any]:
    """For plan and status: how the file would run (``Script.to_dict()``), or the ``error`` that would stop it."""
    try:
        return analyze(decode(data, ref), database=ref.database, file=ref.key).to_dict()
    except MigrationError as exc:
        return {"mode": None, "declared": False, "reason": None, "error": exc.to_dict()}


@dataclass(frozen=True)
class Prepared:
    """A file read and parsed, ready to run: ``key`` of migration ``ref``, its records kept by ``ledger``."""

    ref: MigrationRef
    key: str
    script: Script
    ledger: Ledger
    size: int

    @property
    def travels_together(self) -> bool:
        """One transaction that leaves nothing in the session: it may share a round trip with the next file."""
        script = self.script
        plain = script.session_effect is SessionEffect.NONE and not script.changes_role
        return plain and script.mode is Mode.TRANSACTION


def run_file(conn: Connection, file: Prepared) -> AppliedFile:
    """Run one file on ``conn``.

    Raises SqlError (nothing took effect) or PartialMigrationError (recorded as far as it got).
    """
    started = time.monotonic()
    ref, key, script, ledger = file.ref, file.key, file.script, file.ledger
    read_as_parsed(conn)
    if script.mode is Mode.TRANSACTION:
        try:
            FileRun(conn, ref, key, script).in_transaction(ledger.in_transaction())
        except _NeedsAutocommitError as retry:
            return fall_back(conn, file, retry, started)
    if script.mode is Mode.AUTOCOMMIT:
        _Autocommit(conn, ref, key, script, ledger).run(started)
    return _after(conn, file, script.mode, started)


def fall_back(conn: Connection, file: Prepared, retry: _NeedsAutocommitError, started: float) -> AppliedFile:
    """The server would not run the file's statements in one transaction: run them one by one."""
    script = replace(file.script, mode=Mode.AUTOCOMMIT, reason=f"in one transaction: {retry.message}")
    file.ledger.ran_as(Mode.AUTOCOMMIT.value)
    _Autocommit(conn, file.ref, file.key, script, file.ledger).run(started)
    return _after(conn, replace(file, script=script), Mode.AUTOCOMMIT, started)


def _after(conn: Connection, file: Prepared, mode: Mode, started: float) -> AppliedFile:
    """What a file leaves in its session is cleaned; the outcome, and whether a new session is needed."""
    script = file.script
    if script.session_effect is SessionEffect.DISCARD:
        with conn.cursor() as cur:
            cur.execute("DISCARD ALL")
    reconnect = script.session_effect is SessionEffect.RECONNECT
    return AppliedFile(file.ref, mode, len(script.statements), ms_since(started), reconnect)


class _NeedsAutocommitError(Exception):
    """The file's statements cannot share a transaction; it was rolled back whole."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def read_as_parsed(conn: Connection) -> None:
    """Make the session read text as the parser did: UTF-8, standard_conforming_strings on."""
    if conn.closed:
        return
    if conn.encoding != "UTF8" or conn.info.parameter_status("client_encoding") != "UTF8":
        conn.set_client_encoding("UTF8")
    if conn.info.parameter_status("standard_conforming_strings") != "on":
        with conn.cursor() as cur:
            cur.execute("SET standard_conforming_strings = on")


@dataclass(frozen=True)
class FileRun:
    """One file (``key``, of migration ``ref``) run on ``conn``."""

    conn: Connection
    ref: MigrationRef
    key: str
    script: Script

    def transaction(
        self, record: str, *, asynchronous: bool = False, start_within_s: float | None = None
    ) -> tuple[str, int]:
        """The file and ``record`` as one transaction's text, and where the file's body starts in it.

        ``asynchronous``: its commit does not wait for the disk (a later commit must). With
        ``start_within_s`` the transaction stops before the file (DEADLINE_SQLSTATE) once
        that many seconds have passed since the server received the query string.
        """
        head = TRANSACTION_PREFIX + (ASYNCHRONOUS if asynchronous else "")
        if start_within_s is not None:
            head += DEADLINE_CHECK.format(seconds=max(0.0, start_within_s))
        # Cached sequence values are dropped, as a new psql session would not have them.
        return f"{head}{self.script.body}\n;\n{record};\nDISCARD SEQUENCES;\nCOMMIT;", len(head)

    def within(self, record: str) -> tuple[str, int]:
        """The file and ``record`` as one step of the all-or-nothing transaction, and where the body starts."""
        reset = SESSION_RESET if self.script.session_effect is not SessionEffect.NONE else ""
        return f"{FILE_START}{self.script.body}\n;\n{record};\nDISCARD SEQUENCES;\n{reset}", len(FILE_START)

    def in_transaction(self, record: str) -> None:
        """The file and ``record`` in one transaction, in one round trip."""
        text, offset = self.transaction(record)
        try:
            with self.conn.cursor() as cur:
                cur.execute(text)
        except psycopg2.Error as exc:
            rollback(self.conn)
            raise self.failed(exc, offset) from exc

    def failed(
        self, exc: psycopg2.Error, offset: int, *, run_before: Sequence[str] | None = None
    ) -> SqlError | _NeedsAutocommitError:
        """The file's transaction failed (and was rolled back); its body began at ``offset`` of the query.

        ``run_before``: the texts of the files before it in the same all-or-nothing transaction.
        """
        conn, script = self.conn, self.script
        needs_autocommit = exc.pgcode in NEEDS_AUTOCOMMIT or PENDING_TRIGGER_EVENTS in _server_message(exc)
        if script.statements and needs_autocommit and not script.declared and run_before is None:
            return _NeedsAutocommitError(_server_message(exc))
        line = _position_line(exc, script.body, offset)
        if line is None and len(script.statements) == 1:
            line = script.statements[0].line
        elif line is None and exc.pgcode not in NO_DIAGNOSTIC_RERUN and not conn.closed:
            line = _locate_failure(conn, script, run_before or ())
        outcome = _rolled_back(conn, script, needs_autocommit)
        if run_before is not None and not conn.closed:
            outcome = f"the run's one transaction (all or nothing) was rolled back: {self.ref.database} is as before"
        error = self.sql_error(exc, line, outcome)
        if conn.closed:
            error.details["connection_lost"] = True
        return error

    def sql_error(self, exc: psycopg2.Error, line: int | None, outcome: str) -> SqlError:
        """The server refused the file; ``outcome`` says what that left."""
        code, blockers = exc.pgcode, _blockers(self.conn, exc, self.script)
        hint = f"fix the file and run again; {outcome}"
        if code == psycopg2.errorcodes.QUERY_CANCELED:
            hint = "the statement ran past statement_timeout: raise it ({statement_timeout_s}) or split it; " + outcome
        elif code == psycopg2.errorcodes.LOCK_NOT_AVAILABLE:
            held_by = f" ({blockers})" if blockers else ""
            hint = (
                f"a lock the file needs was held by another session{held_by} for longer than lock_timeout: "
                f"run again when it is released, or raise lock_timeout ({{lock_timeout_s}}); {outcome}"
            )
        elif code is None:
            hint = f"the connection to the database failed mid-file; check the server and run again; {outcome}"
        diag = getattr(exc, "diag", None)
        if diag and diag.message_hint:
            hint = f"{diag.message_hint}; {hint}"
        return SqlError(
            f"PostgreSQL refused the file: {_server_message(exc)}",
            database=self.ref.database,
            file=self.key,
            line=line,
            hint=hint,
            settings=("statement_timeout_s", "lock_timeout_s"),
            sqlstate=code,
            **({"blocked_by": blockers} if blockers else {}),
        )


def _rolled_back(conn: Connection, script: Script, needs_autocommit: bool) -> str:
    """What a failed file's transaction left: the outcome its error states."""
    if conn.closed:
        return (
            "the connection was lost before the server answered: the file and its history row commit "
            "together, so `dbmigrate status` shows whether it was applied"
        )
    if script.declared and needs_autocommit:
        return (
            f"the file {script.promise}, so it ran as that one transaction, which was rolled back: nothing of it was "
            "applied (split the file where the server needs a commit)"
        )
    return "the file's transaction was rolled back: nothing of it was applied"


@dataclass(frozen=True)
class _Autocommit(FileRun):
    """A file run statement by statement, each in its own transaction, recorded as it goes."""

    ledger: Ledger

    def run(self, started: float) -> None:
        # Until a statement's outcome is recorded, the record says it is running: a run
        # killed meanwhile leaves "statement k: outcome unknown", never "did not run".
        conn, ledger = self.conn, self.ledger
        ledger.start(self._running(0))
        for index, statement in enumerate(self.script.statements):
            read_as_parsed(conn)
            before = watch(conn, statement)
            try:
                with conn.cursor() as cur:
                    cur.execute(statement.text)
            except psycopg2.Error as exc:
                rollback(conn)
                raise self._failure(index, exc, left_behind(conn, statement, before)) from exc
            left = left_behind(conn, statement, before)
            if left:
                hint = (
                    f"{fixes(left)}, then `dbmigrate repair --database {self.ref.database}` and run again; "
                    f"further runs on {self.ref.database} are blocked until then"
                )
                message = f"statement {index + 1} completed but {describe(left)}"
                raise self._part_way(index, message, describe(left), hint, left_behind=[item.name for item in left])
            ledger.progress(index + 1, self._running(index + 1))
        ledger.finish(ms_since(started))
        with conn.cursor() as cur:
            cur.execute("DISCARD SEQUENCES")

    def _running(self, index: int) -> str | None:
        """The record's note while statement ``index + 1`` runs: what to check if the run dies."""
        if index >= len(self.script.statements):
            return None
        statement = self.script.statements[index]
        return self.ledger.note(
            f"statement {index + 1} (line {statement.line}) was running; if this run is gone its outcome is "
            f"unknown: check {check_advice(statement)}"
        )

    def _failure(self, index: int, exc: psycopg2.Error, left: list[Leftover]) -> SqlError | PartialMigrationError:
        """Statement ``index + 1`` failed: recorded as nothing done, or as far as the file got."""
        ref, script, statement = self.ref, self.script, self.script.statements[index]
        line = _position_line(exc, statement.text, 0, base_line=statement.line) or statement.line
        if self.conn.closed:
            return self._unknown_outcome(index, exc)
        if index == 0 and not left:
            self.ledger.nothing_done()
            outcome = f"its first statement failed, so nothing of the file was {self.ledger.verb}"
            return self.sql_error(exc, line, outcome)
        ran = _ran(script.statements[:index]) if index else "nothing else"
        message = f"{_server_message(exc)}; {ran} had already run (each in its own transaction: {script.reason})"
        note = _server_message(exc)
        hint = (
            f"finish or undo the file by hand (statements {index + 1}-{len(script.statements)} did not run), "
            f"then `dbmigrate repair --database {ref.database}`; further runs on {ref.database} are blocked until then"
        )
        details: dict[str, Any] = {"line": line, "sqlstate": exc.pgcode}
        if left:
            message += f"; the failed statement {describe(left)}"
            note += f"; {describe(left)}"
            hint = f"{fixes(left)}; {hint}"
        if left:
            details["left_behind"] = [item.name for item in left]
        return self._part_way(index, message, note, hint, **details)

    def _part_way(self, index: int, message: str, note: str, hint: str, **details: Any) -> PartialMigrationError:
        """Statements 1..``index`` took effect and the file stopped: recorded partial, and the error saying so."""
        self.ledger.stopped(index, note)
        return self._partial(index, message, hint, **details)

    def _unknown_outcome(self, index: int, exc: psycopg2.Error) -> PartialMigrationError:
        """The connection died while a statement ran: the server may still finish it (the record stays running)."""
        ref, statement = self.ref, self.script.statements[index]
        return self._partial(
            index,
            f"statement {index + 1} (line {statement.line}): outcome unknown, the connection was lost while it ran "
            f"({_server_message(exc)}); the server may have finished it; the record stays 'running'",
            f"check {check_advice(statement)}; then finish or undo the rest by hand and run "
            f"`dbmigrate repair --database {ref.database}` (with --mark-applied {ref.version} if it is complete)",
            outcome_unknown=index + 1,
        )

    def _partial(self, index: int, message: str, hint: str, **details: Any) -> PartialMigrationError:
        statement = self.script.statements[index]
        return PartialMigrationError(
            message,
            database=self.ref.database,
            file=self.key,
            line=details.pop("line", statement.line),
            statement=statement.text[:200],
            hint=hint,
            statements_done=index,
            statements_total=len(self.script.statements),
            **details,
        )


def _ran(statements: tuple[Statement, ...]) -> str:
    if len(statements) == 1:
        return f"statement 1 (line {statements[0].line})"
    return f"statements 1-{len(statements)} (lines {statements[0].line}-{statements[-1].line})"


def _locate_failure(conn: Connection, script: Script, setup: Sequence[str] = ()) -> int | None:
    """Re-run the statements one by one in a rolled-back transaction (after ``setup``) to find the failing one."""
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            try:
                for text in setup:
                    cur.execute(text)
                for statement in script.statements:
                    try:
                        cur.execute(statement.text)
                    except psycopg2.Error as exc:
                        return _position_line(exc, statement.text, 0, base_line=statement.line) or statement.line
            finally:
                cur.execute("ROLLBACK")
    except psycopg2.Error:
        rollback(conn)
    return None


def _position_line(exc: psycopg2.Error, text: str, prefix: int, *, base_line: int = 1) -> int | None:
    """Map the server's error position (1-based, in the query string) to a line of the file."""
    position = getattr(exc.diag, "statement_position", None) if getattr(exc, "diag", None) else None
    if not position:
        return None
    offset = int(position) - 1 - prefix
    if not 0 <= offset <= len(text):
        return None
    return base_line + text.count("\n", 0, offset)


def _server_message(exc: psycopg2.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag and diag.message_primary else str(exc).strip().splitlines()[0]
    detail = f" ({diag.message_detail})" if diag and diag.message_detail else ""
    return f"{primary}{detail}"


def _blockers(conn: Connection, exc: psycopg2.Error, script: Script) -> str | None:
    """After a lock timeout: the other sessions holding locks on the tables the file names."""
    if exc.pgcode != psycopg2.errorcodes.LOCK_NOT_AVAILABLE or conn.closed:
        return None
    names = sorted({name for statement in script.statements for name in statement.relations})
    if not names:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute(BLOCKERS_QUERY, (names, names))
            rows = cur.fetchall()
    except psycopg2.Error:
        rollback(conn)
        return None
    return (
        "; ".join(
            f"pid {pid} ({application or 'unnamed'}, {state}"
            f"{', transaction open since ' + str(since) if since else ''}) holds {mode} on {relation}"
            for pid, application, state, since, mode, relation in rows
        )
        or None
    )


def rollback(conn: Connection) -> None:
    if conn.closed:
        return
    try:
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
    except psycopg2.Error:
        pass
