"""Files together: several in one round trip, each its own transaction, or all of them in one.

Consecutive plain transactional files share a round trip (``run_together``), each still
its own ``BEGIN ... COMMIT`` with its history row; a failure is attributed to its file
by reading which versions committed. In all-or-nothing mode (``run_as_one``) every file
runs in one transaction. ``round_trips`` groups prepared files for both, within one set
of bounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import psycopg2

from .apply import DEADLINE_SQLSTATE, AppliedFile, FileRun, Prepared, fall_back, read_as_parsed, rollback, run_file
from .db import Connection
from .errors import SqlError
from .history import History
from .report import ms_since
from .sqlscript import Mode, SessionEffect

__all__ = [
    "MAX_TOGETHER",
    "MAX_TOGETHER_BYTES",
    "changes_session",
    "round_trips",
    "run_as_one",
    "run_together",
    "travels_alone",
]

SYNTAX_ERROR = "42601"
# Files sent in one round trip, at most: a bound on the text held and on what a deadline
# check (before each round trip) can overrun.
MAX_TOGETHER = 100
MAX_TOGETHER_BYTES = 1024 * 1024


def run_together(
    conn: Connection,
    files: Sequence[Prepared],
    history: History,
    on_applied: Callable[[AppliedFile], None],
    *,
    start_within_s: float | None = None,
) -> int:
    """Send transactional ``files`` in one round trip, each its own transaction with its history row.

    Returns how many of them were applied, in order, each also given to ``on_applied``:
    all of them; or up to a file the server would not run in one transaction, run again
    statement by statement; or up to the first file the time budget did not let start
    (``start_within_s``: seconds from now). The caller goes on after them. A file that
    fails raises its own error, as if it had been sent alone: the files before it stay
    committed (the ``history`` says which), made durable before anything is reported,
    and nothing after it ran.
    """
    started = time.monotonic()
    read_as_parsed(conn)
    texts, offsets, position = [], [], 0
    for index, file in enumerate(files):
        budget = start_within_s if index else None  # the caller checked the time before the first
        text, offset = FileRun(conn, file.ref, file.key, file.script).transaction(
            file.ledger.in_transaction(), asynchronous=index < len(files) - 1, start_within_s=budget
        )
        texts.append(text)
        offsets.append(position + offset)
        position += len(text) + 1
    try:
        with conn.cursor() as cur:
            cur.execute("\n".join(texts))
    except psycopg2.Error as exc:
        rollback(conn)
        if conn.closed:
            raise
        if exc.pgcode == SYNTAX_ERROR:  # the server parses the whole text before running any of it
            return _one_by_one(conn, files, on_applied)
        return _stopped_among(conn, files, offsets, history, exc, on_applied)
    share = ms_since(started) // len(files)
    for file in files:
        on_applied(AppliedFile(file.ref, Mode.TRANSACTION, len(file.script.statements), share))
    return len(files)


def run_as_one(conn: Connection, files: Sequence[Prepared], on_applied: Callable[[AppliedFile], None]) -> bool:
    """Every file in one transaction (each with its history row): all applied, or none and the database as before.

    Files travel together, as many as ``together`` allows. When a round trip fails, the
    transaction is rolled back and the whole run sent again a file at a time, so that the
    error names its file and line exactly (a timeout waits again, once; after a lost
    connection the server's position names the file, or the round trip's first one).
    Returns whether the session must be replaced (a file changed what only a new session
    sees).
    """
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
    for chunk in round_trips(files, last=changes_session):
        texts = [FileRun(conn, f.ref, f.key, f.script).within(f.ledger.in_transaction()) for f in chunk]
        try:
            read_as_parsed(conn)
            with conn.cursor() as cur:
                cur.execute("".join(text for text, _ in texts))
        except psycopg2.Error as exc:
            rollback(conn)
            if len(chunk) > 1 and not conn.closed:
                return _as_one_file_by_file(conn, files, on_applied, started)
            raise _failed_among(conn, chunk, texts, exc) from exc
    return _commit_as_one(conn, files, on_applied, started)


def round_trips(
    files: Iterable[Prepared],
    *,
    alone: Callable[[Prepared], bool] = lambda _: False,
    last: Callable[[Prepared], bool] = lambda _: False,
) -> Iterator[list[Prepared]]:
    """Consecutive runs of ``files`` for one round trip each: at most MAX_TOGETHER files and MAX_TOGETHER_BYTES
    (a bigger file alone); a file that is ``alone`` has one to itself, one that is ``last`` ends its own.

    ``files`` are taken one at a time: a round trip is yielded once the file after it is seen.
    """
    chunk: list[Prepared] = []
    size = 0
    for file in files:
        if chunk and (alone(file) or len(chunk) == MAX_TOGETHER or size + file.size > MAX_TOGETHER_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(file)
        size += file.size
        if alone(file) or last(file):
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def travels_alone(file: Prepared) -> bool:
    """Each file in its own transaction: one that does not travel together has its round trip to itself."""
    return not file.travels_together


def changes_session(file: Prepared) -> bool:
    """All in one transaction: a file that changes its session ends its round trip (the next starts after it)."""
    return file.script.session_effect is not SessionEffect.NONE


def _as_one_file_by_file(
    conn: Connection, files: Sequence[Prepared], on_applied: Callable[[AppliedFile], None], started: float
) -> bool:
    sent: list[str] = []
    with conn.cursor() as cur:
        cur.execute("BEGIN")
    for file in files:
        step = FileRun(conn, file.ref, file.key, file.script)
        text, offset = step.within(file.ledger.in_transaction())
        try:
            read_as_parsed(conn)
            with conn.cursor() as cur:
                cur.execute(text)
        except psycopg2.Error as exc:
            rollback(conn)
            raise step.failed(exc, offset, run_before=sent) from exc
        sent.append(text)
    return _commit_as_one(conn, files, on_applied, started)


def _failed_among(
    conn: Connection, chunk: Sequence[Prepared], texts: Sequence[tuple[str, int]], exc: psycopg2.Error
) -> SqlError:
    """The error of files sent together, named for the file the server's position points into (else the first)."""
    position = getattr(exc.diag, "statement_position", None) if getattr(exc, "diag", None) else None
    start, index = 0, 0
    for number, (text, _) in enumerate(texts):
        if position and start < int(position) <= start + len(text):
            index = number
            break
        start += len(text)
    else:
        start = 0
    file, offset = chunk[index], start + texts[index][1]
    error = FileRun(conn, file.ref, file.key, file.script).failed(exc, offset, run_before=[])
    assert isinstance(error, SqlError), "no fallback within one transaction"
    return error


def _commit_as_one(
    conn: Connection, files: Sequence[Prepared], on_applied: Callable[[AppliedFile], None], started: float
) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("COMMIT")
    except psycopg2.Error as exc:  # deferred constraints are checked here
        rollback(conn)
        raise FileRun(conn, files[-1].ref, files[-1].key, files[-1].script).sql_error(
            exc, None, f"the run's one transaction could not commit: nothing was applied to {files[-1].ref.database}"
        ) from exc
    share = ms_since(started) // len(files)
    for file in files:
        on_applied(AppliedFile(file.ref, Mode.TRANSACTION, len(file.script.statements), share))
    effects = {file.script.session_effect for file in files}
    if SessionEffect.DISCARD in effects:
        with conn.cursor() as cur:
            cur.execute("DISCARD ALL")
    return SessionEffect.RECONNECT in effects


def _stopped_among(  # noqa: PLR0913  what run_together sent, where each body began, and what came back
    conn: Connection,
    files: Sequence[Prepared],
    offsets: Sequence[int],
    history: History,
    exc: psycopg2.Error,
    on_applied: Callable[[AppliedFile], None],
) -> int:
    """Files sent together stopped at one of them: those before it are applied (made durable), it raises its
    error, or falls back to statement by statement, or (the time budget) had not started."""
    done = history.committed([file.ref.version for file in files])
    failed = next((index for index, file in enumerate(files) if file.ref.version not in done), None)
    if failed is None:  # every file committed: the error came after them all
        raise exc
    if failed:
        history.make_durable(files[failed - 1].ref.version)
    for file in files[:failed]:
        on_applied(AppliedFile(file.ref, Mode.TRANSACTION, len(file.script.statements), 0))
    if exc.pgcode == DEADLINE_SQLSTATE:
        return failed
    file = files[failed]
    error = FileRun(conn, file.ref, file.key, file.script).failed(exc, offsets[failed])
    if isinstance(error, SqlError):
        raise error from exc
    on_applied(fall_back(conn, file, error, time.monotonic()))
    return failed + 1


def _one_by_one(conn: Connection, files: Sequence[Prepared], on_applied: Callable[[AppliedFile], None]) -> int:
    for file in files:
        on_applied(run_file(conn, file))
    return len(files)
