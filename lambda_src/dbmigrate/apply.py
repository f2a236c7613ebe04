"""Applying one file to one database, with its history row.

A transactional file travels to the server in one round trip: ``BEGIN; <file>;
INSERT <history row>; COMMIT;``. A file with statements PostgreSQL refuses inside a
transaction block runs statement by statement in autocommit, with a history row that
records how far it got: a failure after its first statement leaves a ``partial``
record that blocks further runs until ``repair``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.errorcodes

from .db import Connection
from .errors import PartialMigrationError, SqlError
from .history import History
from .leftovers import Leftover, check_advice, describe, fixes, left_behind, watch
from .model import MigrationRef
from .sqlscript import Mode, Script, SessionEffect, Statement, analyze, line_of

__all__ = ["AppliedFile", "apply_file", "decode", "sha256"]

BLOCKERS_QUERY = """
SELECT a.pid, a.application_name, a.state, date_trunc('second', a.xact_start), l.mode, l.relation::regclass::text
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (l.relation::regclass::text = ANY(%s) OR split_part(l.relation::regclass::text, '.', 2) = ANY(%s::text[]))
ORDER BY a.xact_start NULLS LAST
LIMIT 5
"""

TRANSACTION_PREFIX = "BEGIN;\n"
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


def apply_file(
    conn: Connection, history: History, ref: MigrationRef, data: bytes, applied_by: str, *, undo: bool = False
) -> AppliedFile:
    """Run one file and record it; raise SqlError / PartialMigrationError on failure.

    With ``undo``, ``data`` is the down file of an applied migration, and success
    removes the migration's history row instead of adding one.
    """
    key = ref.down_key if undo and ref.down_key else ref.key
    script = analyze(decode(data, ref), database=ref.database, file=key)
    row: dict[str, Any] = {
        "version": Decimal(ref.version),
        "description": ref.description,
        "file": ref.key,
        "checksum": sha256(data),
        "etag": ref.etag,
        "mode": script.mode.value,
        "applied_by": applied_by,
        "statements_total": len(script.statements),
    }
    started = time.monotonic()
    _read_as_parsed(conn)
    if script.mode is Mode.TRANSACTION:
        if undo:
            record = history.delete_sql(ref.version)
        else:
            record = history.insert_sql(
                {**row, "status": "applied", "statements_done": len(script.statements)},
                duration_since_statement_start=True,
            )
        try:
            _run_in_transaction(conn, ref, key, script, record)
        except _NeedsAutocommitError as retry:
            script = replace(script, mode=Mode.AUTOCOMMIT, reason=f"in one transaction: {retry.message}")
    if script.mode is Mode.AUTOCOMMIT:
        _run_in_autocommit(conn, history, ref, key, script, row, started, undo=undo)
    if script.session_effect is SessionEffect.DISCARD:
        with conn.cursor() as cur:
            cur.execute("DISCARD ALL")
    reconnect = script.session_effect is SessionEffect.RECONNECT
    return AppliedFile(ref, script.mode, len(script.statements), _ms_since(started), reconnect)


class _NeedsAutocommitError(Exception):
    """The file's statements cannot share a transaction; it was rolled back whole."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _read_as_parsed(conn: Connection) -> None:
    """Make the session read text as the parser did: UTF-8, standard_conforming_strings on."""
    if conn.closed:
        return
    if conn.encoding != "UTF8" or conn.info.parameter_status("client_encoding") != "UTF8":
        conn.set_client_encoding("UTF8")
    if conn.info.parameter_status("standard_conforming_strings") != "on":
        with conn.cursor() as cur:
            cur.execute("SET standard_conforming_strings = on")


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _run_in_transaction(conn: Connection, ref: MigrationRef, key: str, script: Script, record: str) -> None:
    # The history row is written as the session user even if the file ran SET ROLE, and
    # cached sequence values are dropped, as a new psql session would not have them.
    as_session_user = "SET LOCAL ROLE NONE;\n" if script.changes_role else ""
    prefix = TRANSACTION_PREFIX
    query = f"{prefix}{script.body}\n;\n{as_session_user}{record};\nDISCARD SEQUENCES;\nCOMMIT;"
    try:
        with conn.cursor() as cur:
            cur.execute(query)
    except psycopg2.Error as exc:
        _rollback(conn)
        needs_autocommit = exc.pgcode in NEEDS_AUTOCOMMIT or PENDING_TRIGGER_EVENTS in _server_message(exc)
        if script.statements and needs_autocommit and not script.wrapped:
            raise _NeedsAutocommitError(_server_message(exc)) from exc
        line = _position_line(exc, script.body, len(prefix))
        if line is None and len(script.statements) == 1:
            line = script.statements[0].line
        elif line is None and exc.pgcode not in NO_DIAGNOSTIC_RERUN and not conn.closed:
            line = _locate_failure(conn, script)
        outcome = "the file's transaction was rolled back: nothing of it was applied"
        if conn.closed:
            outcome = (
                "the connection was lost before the server answered: the file and its history row commit "
                "together, so `dbmigrate status` shows whether it was applied"
            )
        elif script.wrapped and needs_autocommit:
            outcome = (
                "the file wraps itself in BEGIN ... COMMIT, so it ran as that one transaction, which was rolled "
                "back: nothing of it was applied (split the file where the server needs a commit)"
            )
        error = _sql_error(exc, ref, key, line, outcome, blockers=_blockers(conn, exc, script))
        if conn.closed:
            error.details["connection_lost"] = True
        raise error from exc


def _run_in_autocommit(
    conn: Connection,
    history: History,
    ref: MigrationRef,
    key: str,
    script: Script,
    row: dict[str, Any],
    started: float,
    *,
    undo: bool,
) -> None:
    history.as_session_user = script.changes_role
    try:
        # Until a statement's outcome is recorded, the record says it is running: a run
        # killed meanwhile leaves "statement k: outcome unknown", never "did not run".
        undoing = key if undo else None
        if undo:
            history.update(ref.version, status="running", statements_done=0, error=_running(script, 0, undoing))
        else:
            history.insert({**row, "status": "running", "statements_done": 0, "error": _running(script, 0, None)})
        for index, statement in enumerate(script.statements):
            _read_as_parsed(conn)
            before = watch(conn, statement)
            try:
                with conn.cursor() as cur:
                    cur.execute(statement.text)
            except psycopg2.Error as exc:
                _rollback(conn)
                left = left_behind(conn, statement, before)
                raise _autocommit_failure(conn, history, ref, key, script, index, exc, left, undo=undo) from exc
            left = left_behind(conn, statement, before)
            if left:
                raise _leftover_failure(history, ref, key, script, index, left)
            history.update(ref.version, statements_done=index + 1, error=_running(script, index + 1, undoing))
        if undo:
            history.delete(ref.version)
        else:
            history.update(ref.version, status="applied", error=None, duration_ms=_ms_since(started))
        with conn.cursor() as cur:
            cur.execute("DISCARD SEQUENCES")
    finally:
        history.as_session_user = False


def _running(script: Script, index: int, undoing: str | None) -> str | None:
    """The record's note while statement ``index + 1`` runs: what to check if the run dies."""
    if index >= len(script.statements):
        return None
    statement = script.statements[index]
    return (
        ("" if undoing is None else f"undoing with {undoing}: ")
        + f"statement {index + 1} (line {statement.line}) was running; if this run is gone its outcome is "
        f"unknown: check {check_advice(statement)}"
    )


def _leftover_failure(
    history: History, ref: MigrationRef, key: str, script: Script, index: int, left: list[Leftover]
) -> PartialMigrationError:
    """A concurrent index statement completed but an invalid index stands where it should be."""
    statement = script.statements[index]
    error = describe(left)
    history.update(ref.version, status="partial", statements_done=index, error=error)
    return PartialMigrationError(
        f"statement {index + 1} completed but {error}",
        database=ref.database,
        file=key,
        line=statement.line,
        statement=statement.text[:200],
        hint=f"{fixes(left)}, then `dbmigrate repair --database {ref.database}` and run again; "
        f"further runs on {ref.database} are blocked until then",
        statements_done=index,
        statements_total=len(script.statements),
        left_behind=[item.name for item in left],
    )


def _autocommit_failure(
    conn: Connection,
    history: History,
    ref: MigrationRef,
    key: str,
    script: Script,
    index: int,
    exc: psycopg2.Error,
    left: list[Leftover],
    *,
    undo: bool,
) -> SqlError | PartialMigrationError:
    statement = script.statements[index]
    line = _position_line(exc, statement.text, 0, base_line=statement.line) or statement.line
    if conn.closed:
        return _unknown_outcome(ref, key, script, index, exc)
    if index == 0 and not left:
        if undo:
            history.update(ref.version, status="applied", statements_done=None, error=None)
        else:
            history.delete(ref.version)
        outcome = "its first statement failed, so nothing of the file was " + ("undone" if undo else "applied")
        return _sql_error(exc, ref, key, line, outcome, blockers=_blockers(conn, exc, script))
    ran = _ran(script.statements[:index]) if index else "nothing else"
    message = f"{_server_message(exc)}; {ran} had already run (each in its own transaction: {script.reason})"
    error = f"{'undo with ' + key + ' stopped: ' if undo else ''}{_server_message(exc)}"
    hint = (
        f"finish or undo the file by hand (statements {index + 1}-{len(script.statements)} did not run), "
        f"then `dbmigrate repair --database {ref.database}`; further runs on {ref.database} are blocked until then"
    )
    if left:
        message += f"; the failed statement {describe(left)}"
        error += f"; {describe(left)}"
        hint = f"{fixes(left)}; {hint}"
    history.update(ref.version, status="partial", statements_done=index, error=error)
    return PartialMigrationError(
        message,
        database=ref.database,
        file=key,
        line=line,
        statement=statement.text[:200],
        hint=hint,
        sqlstate=exc.pgcode,
        statements_done=index,
        statements_total=len(script.statements),
        **({"left_behind": [item.name for item in left]} if left else {}),
    )


def _unknown_outcome(
    ref: MigrationRef, key: str, script: Script, index: int, exc: psycopg2.Error
) -> PartialMigrationError:
    """The connection died while a statement ran: the server may still finish it."""
    statement = script.statements[index]
    return PartialMigrationError(
        f"statement {index + 1} (line {statement.line}): outcome unknown, the connection was lost while it ran "
        f"({_server_message(exc)}); the server may have finished it; the record stays 'running'",
        database=ref.database,
        file=key,
        line=statement.line,
        statement=statement.text[:200],
        hint=f"check {check_advice(statement)}; then finish or undo the rest by hand and run "
        f"`dbmigrate repair --database {ref.database}` (with --mark-applied {ref.version} if it is complete)",
        statements_done=index,
        statements_total=len(script.statements),
        outcome_unknown=index + 1,
    )


def _ran(statements: tuple[Statement, ...]) -> str:
    if len(statements) == 1:
        return f"statement 1 (line {statements[0].line})"
    return f"statements 1-{len(statements)} (lines {statements[0].line}-{statements[-1].line})"


def _locate_failure(conn: Connection, script: Script) -> int | None:
    """Re-run the statements one by one in a rolled-back transaction to find the failing one."""
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            try:
                for statement in script.statements:
                    try:
                        cur.execute(statement.text)
                    except psycopg2.Error as exc:
                        return _position_line(exc, statement.text, 0, base_line=statement.line) or statement.line
            finally:
                cur.execute("ROLLBACK")
    except psycopg2.Error:
        _rollback(conn)
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


def _sql_error(
    exc: psycopg2.Error, ref: MigrationRef, key: str, line: int | None, outcome: str, *, blockers: str | None = None
) -> SqlError:
    code = exc.pgcode
    hint = f"fix the file and run again; {outcome}"
    if code == psycopg2.errorcodes.QUERY_CANCELED:
        hint = f"the statement ran past statement_timeout: raise it ({{statement_timeout_s}}) or split it; {outcome}"
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
        database=ref.database,
        file=key,
        line=line,
        hint=hint,
        settings=("statement_timeout_s", "lock_timeout_s"),
        sqlstate=code,
        **({"blocked_by": blockers} if blockers else {}),
    )


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
        _rollback(conn)
        return None
    return (
        "; ".join(
            f"pid {pid} ({application or 'unnamed'}, {state}"
            f"{', transaction open since ' + str(since) if since else ''}) holds {mode} on {relation}"
            for pid, application, state, since, mode, relation in rows
        )
        or None
    )


def _rollback(conn: Connection) -> None:
    if conn.closed:
        return
    try:
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
    except psycopg2.Error:
        pass
