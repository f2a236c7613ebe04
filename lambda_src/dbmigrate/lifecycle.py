"""The life of one run: its lock, its sessions, and how it ends when something fails.

The run's sessions carry ``application_name`` ``dbmigrate-lock <run>`` and
``dbmigrate-run <run>``, so the next run can wait for the work of one that was killed
mid-file. Before each file the lock is checked; a connection lost mid-file ends the run
with ConnectionLostError naming the cause; ``interrupt()`` (SIGTERM in the CLI) stops
it at the statement in flight. Errors while releasing the lock or closing connections
never replace the run's result: they are attached to it (``warnings`` on the report,
``cleanup_errors`` on the error).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg2

from .config import Settings
from .db import Connection, connect, connection_lost_cause, run_session_settings, why_lost
from .errors import ConnectionLostError, LockTimeoutError, MigrationError, SqlError, StoppedError
from .guard import Guard
from .lock import LOCK_APPLICATION, RUN_APPLICATION, HeldLock, advisory_lock, lock_target
from .model import MigrationRef
from .session import DatabaseSession

__all__ = ["RunLifecycle"]

Outcome = TypeVar("Outcome")

# SQLSTATEs that mean the session is gone: admin shutdown, crash shutdown, starting up,
# idle session timeout.
SESSION_GONE = ("57P01", "57P02", "57P03", "57P05")


class RunLifecycle:
    """Owns what a locked run holds on the server: the lock's session, the run's name and settings."""

    def __init__(self, settings: Settings, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.on_event = on_event
        self._lock: HeldLock | None = None
        self._application = "dbmigrate"
        self._session_settings: dict[str, str] = {}
        self._busy: DatabaseSession | None = None
        self._stop: str | None = None
        self._guard: Guard | None = None
        self._started_at = datetime.now(UTC)

    def interrupt(self, reason: str) -> None:
        """Stop the run at the statement in flight; no further file starts (safe from any thread).

        The statement is cancelled on the server, so the file ends as a failed one
        (a transaction rolled back, an autocommit file recorded as far as it got).
        """
        self._stop = reason
        busy = self._busy
        if busy is not None:
            busy.cancel()

    @contextmanager
    def locked(self, wait_s: float) -> Iterator[HeldLock]:
        """Hold the run's advisory lock on the root database, once no earlier run's work executes."""
        run_id = secrets.token_hex(4)
        self._started_at = datetime.now(UTC)
        database, key = lock_target(self.settings)
        # Never `with conn:`: psycopg2 opens a transaction there even in autocommit.
        conn = connect(self.settings, database, application_name=f"{LOCK_APPLICATION} {run_id}")
        held: HeldLock | None = None
        try:
            self._session_settings = run_session_settings(self.settings, conn.server_version)
            self._application = f"{RUN_APPLICATION} {run_id}"
            with advisory_lock(
                conn, key, wait_s=wait_s, on_wait=self.on_event, own_application=self._application
            ) as held:
                self._lock = held
                self.on_event({"event": "lock_acquired", "waited_s": round(held.waited_s, 3)})
                guard = Guard(conn, self._busy_connection, timeout_s=self.settings.network_timeout_s)
                with guard:
                    self._guard = guard
                    yield held
        except psycopg2.Error as exc:  # a connection failed outside a file (reading a history, ...)
            lost = ConnectionLostError(
                f"a connection of the run failed: {connection_lost_cause(exc)}",
                hint="run again once the server answers; the history records every file that was applied",
            )
            raise _with_cleanup(lost, held) from exc
        except MigrationError as exc:
            if isinstance(exc, LockTimeoutError) and exc.database is None:
                exc.database = database  # where the lock is: the root's, or a tenant's
            _with_cleanup(exc, held)
            raise
        finally:
            self._lock, self._application, self._busy, self._guard = None, "dbmigrate", None, None
            self._session_settings = {}
            conn.close()

    def session(self, database: str, read: Callable[[str], bytes]) -> DatabaseSession:
        """A session on ``database`` (use it with ``with``): under the lock, one of this run (its
        application_name and server settings); outside it (plan, status), a plain one."""
        application, settings = self._application, self._session_settings

        def opener() -> Connection:
            return connect(self.settings, database, application_name=application, session=settings)

        history = self.settings.history_schema
        return DatabaseSession(database, opener, schema=history, applied_by=self.settings.applied_by, read=read)

    def _busy_connection(self) -> Connection | None:
        busy = self._busy  # read once: the guard's thread asks while the run's thread sets it
        return busy.connection if busy is not None else None

    def before_file(self, ref: MigrationRef, key: str, done: list[int]) -> None:
        """Before a file: stop if asked to, or if the lock was lost."""
        if self._stop:
            raise StoppedError(
                f"stopped by {self._stop} before {key}; done in this run: {done or 'none'}",
                database=ref.database,
                file=key,
                hint="run again to continue: every file done is recorded",
                applied=done,
            )
        if self._lock is not None:
            self._lock.verify(before=key)

    def run_file(
        self, session: DatabaseSession, run: Callable[[], Outcome], ref: MigrationRef, key: str, done: list[int]
    ) -> Outcome:
        """``run()`` (files from ``key`` on, on ``session``), a lost connection or a stop request named as what it is.

        ``done`` is the run's list of versions done, which ``run()`` may extend as files commit.
        """
        self._busy = session
        try:
            return run()
        except psycopg2.Error as exc:  # the file's own bookkeeping failed: the connection is gone
            if self._stop:
                raise self._stopped(ref, key, connection_lost_cause(exc), done) from exc
            raise self._lost(ref, key, exc) from exc
        except MigrationError as exc:
            if self._stop:
                raise self._stopped(ref, exc.file or key, exc.message, done, **exc.details) from exc
            cause = exc.__cause__
            if not isinstance(cause, psycopg2.Error) or not (session.closed or cause.pgcode in SESSION_GONE):
                raise
            if isinstance(exc, SqlError):
                raise self._lost(ref, key, cause) from cause
            why = self._why_lost(ref.database)  # e.g. an autocommit file recorded as unfinished
            exc.message += f" (the connection was lost: {why or connection_lost_cause(cause)})"
            raise
        finally:
            self._busy = None

    def _stopped(self, ref: MigrationRef, key: str, what: str, done: list[int], **details: Any) -> StoppedError:
        details.pop("applied", None)
        return StoppedError(
            f"stopped by {self._stop} at the statement in flight of {key} ({what}); "
            f"done in this run before it: {done or 'none'}",
            database=ref.database,
            file=key,
            hint="run again to continue: a file's transaction was rolled back and is pending again; "
            "a file run in autocommit is recorded as far as it got (then `dbmigrate repair`)",
            applied=done,
            **details,
        )

    def _why_lost(self, database: str) -> str | None:
        if self._guard and self._guard.reason:
            return self._guard.reason
        return why_lost(self.settings, database, since=self._started_at, application_name=self._application)

    def _lost(self, ref: MigrationRef, key: str, exc: psycopg2.Error) -> ConnectionLostError:
        why = self._why_lost(ref.database)
        cause = f"{why} ({connection_lost_cause(exc)})" if why else connection_lost_cause(exc)
        return ConnectionLostError(
            f"the connection to {ref.database} was lost while {key} ran: {cause}",
            database=ref.database,
            file=key,
            hint="run again once the server answers: a file and its history row commit together, so the "
            "next run applies it again only if it was not committed; a file run in autocommit stays "
            "recorded as unfinished until `dbmigrate repair`",
            sqlstate=exc.pgcode,
            connection_lost=True,
        )


def _with_cleanup(exc: MigrationError, held: HeldLock | None) -> MigrationError:
    """The run's error, with what went wrong releasing the lock attached (never instead of it)."""
    if held is not None and held.cleanup_errors:
        exc.details.setdefault("cleanup_errors", []).extend(held.cleanup_errors)
    return exc
