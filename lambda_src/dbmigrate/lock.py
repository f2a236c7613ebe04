"""The run's lock: one session-level advisory lock on the root database.

Taken on a connection of its own, in autocommit, before anything else, and held for
the whole run, so that a deploy-time run, an S3-event run and a person never apply
the same file twice. That connection never opens a transaction (CREATE INDEX
CONCURRENTLY waits for every open transaction, so a lock held inside one would
deadlock the run with itself). If the process dies the server ends the session and
the lock with it: there is no row to break by hand. The wait is bounded: the lock is
polled with ``pg_try_advisory_lock`` until a deadline, and who holds it is reported.

A run killed mid-file may leave the server still executing that file's statement
after its lock is gone; the next run, once it holds the lock, waits (within the same
bound) until no earlier run's work is still executing, and only then reads the
history. Releasing the lock never fails a run: a failed unlock is logged and kept in
``HeldLock.cleanup_errors``.
"""

from __future__ import annotations

import hashlib
import logging
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from .config import Settings
from .db import Connection, connection_lost_cause
from .errors import LockLostError, LockTimeoutError

__all__ = ["LOCK_APPLICATION", "RUN_APPLICATION", "HeldLock", "advisory_lock", "lock_key", "lock_target"]

log = logging.getLogger(__name__)

# application_name prefixes of a migrate run's sessions, followed by the run's id.
LOCK_APPLICATION = "dbmigrate-lock"
RUN_APPLICATION = "dbmigrate-run"

HOLDER_QUERY = """
SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start, a.usename
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = %(high)s AND l.objid = %(low)s AND l.objsubid = 1
LIMIT 1
"""

HELD_QUERY = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
  AND classid = %(high)s AND objid = %(low)s AND objsubid = 1
"""

# The sessions of other (earlier, dead) migrate runs that still execute something.
LEFTOVER_WHERE = """
FROM pg_stat_activity
WHERE application_name LIKE %(prefix)s AND application_name <> %(own)s
  AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'
"""
LEFTOVER_QUERY = f"""
SELECT pid, datname, state, date_trunc('second', query_start), left(query, 120)
{LEFTOVER_WHERE}
ORDER BY pid
"""
# One round trip when the lock is free: take it and ask whether earlier work still runs.
TRY_LOCK_QUERY = f"SELECT pg_try_advisory_lock(%(key)s), EXISTS (SELECT 1 {LEFTOVER_WHERE})"


def lock_key(namespace: str) -> int:
    """A stable signed 64-bit key for ``namespace`` (the history schema name)."""
    digest = hashlib.sha256(f"dbmigrate:{namespace}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_target(settings: Settings) -> tuple[str, int]:
    """The database the lock is taken on and its key: the same settings give the same lock.

    Advisory locks are per database, so the CLI and the function collide only when both
    name the same root database and history schema.
    """
    return settings.root_database, lock_key(settings.history_schema)


def _halves(key: int) -> dict[str, int]:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}


def describe_holder(conn: Connection, key: int) -> str:
    """Who holds the lock, e.g. ``pid 123 (dbmigrate, 10.0.1.5, since 12:00:01Z)``."""
    with conn.cursor() as cur:
        cur.execute(HOLDER_QUERY, _halves(key))
        row = cur.fetchone()
    if not row:
        return "another session"
    pid, application, address, since, user = row
    return (
        f"pid {pid} ({application or 'unnamed'} as {user}"
        f"{' from ' + address if address else ''}, connected since {since:%Y-%m-%d %H:%M:%S%z})"
    )


@dataclass
class HeldLock:
    """The lock while a run holds it: how long it waited, and what went wrong releasing it."""

    conn: Connection
    key: int
    waited_s: float = 0.0
    cleanup_errors: list[str] = field(default_factory=list)

    def verify(self, before: str) -> None:
        """Raise LockLostError unless this session still holds the lock.

        Costs no round trip while the session is quiet: an idle session only receives
        something when the server ends it (shutdown, idle timeout, terminated) or the
        network fails, and only then is the lock asked about.
        """
        if not self.conn.closed:
            readable, _, _ = select.select([self.conn.fileno()], [], [], 0)
            if not readable:
                return
        try:
            with self.conn.cursor() as cur:
                cur.execute(HELD_QUERY, _halves(self.key))
                row = cur.fetchone()
        except psycopg2.Error as exc:
            cause = f"its connection was lost: {connection_lost_cause(exc)}"
        else:
            if row and row[0]:
                return
            cause = "its session no longer holds it"
        raise LockLostError(
            f"the migration lock was lost ({cause}); stopped before {before}: nothing more was started",
            hint="run again: the next run takes the lock again and continues from the history "
            "(check the server's idle_session_timeout and the network if this repeats)",
        )


@contextmanager
def advisory_lock(
    conn: Connection,
    key: int,
    *,
    wait_s: float,
    on_wait: Callable[[dict[str, Any]], None] | None = None,
    own_application: str = "",
) -> Iterator[HeldLock]:
    """Hold the lock for the ``with`` block.

    Raises LockTimeoutError naming the holder when it is not free within ``wait_s``.
    With ``own_application`` (this run's ``dbmigrate-run <id>``), then waits, within the
    same bound, until no other run's session is still executing. The lock's session
    turns idle_session_timeout off (PostgreSQL 14+) with its first try. The unlock
    never raises: its error goes to ``HeldLock.cleanup_errors``.
    """
    waiting = _Waiting(conn, key, wait_s, on_wait or (lambda event: None), own_application)
    leftovers = waiting.acquire()
    held = HeldLock(conn, key)
    try:
        if leftovers:
            waiting.until_no_leftovers()
        held.waited_s = waiting.elapsed()
        yield held
    finally:
        _release(held)


@dataclass
class _Waiting:
    """One bounded wait: for the lock, then for an earlier run's work to end."""

    conn: Connection
    key: int
    wait_s: float
    on_wait: Callable[[dict[str, Any]], None]
    own_application: str
    start: float = field(default_factory=time.monotonic)

    @property
    def params(self) -> dict[str, Any]:
        prefix = f"{RUN_APPLICATION} %" if self.own_application else ""
        return {"key": self.key, "prefix": prefix, "own": self.own_application}

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.wait_s - self.elapsed()

    def acquire(self) -> bool:
        """Poll until the lock is taken; returns whether earlier work still executes."""
        delay = 0.05
        announced = False
        setup = "SET idle_session_timeout = 0; " if self.conn.server_version >= 140000 else ""
        with self.conn.cursor() as cur:
            while True:
                cur.execute(setup + TRY_LOCK_QUERY, self.params)
                setup = ""
                row = cur.fetchone()
                if row and row[0]:
                    return bool(row[1])
                holder = describe_holder(self.conn, self.key)
                if not announced:
                    self.on_wait({"event": "lock_wait", "holder": holder, "max_wait_s": round(self.wait_s, 1)})
                    announced = True
                if self.left() <= 0:
                    raise LockTimeoutError(
                        f"another migration run holds the lock: {holder}; gave up after {self.elapsed():.1f} s",
                        hint="wait for that run to finish and try again, or allow a longer wait "
                        "({lock_wait_s}); a run that died releases the lock by itself",
                        settings=("lock_wait_s",),
                        holder=holder,
                    )
                time.sleep(min(delay, self.left()))
                delay = min(delay * 2, 1.0)

    def until_no_leftovers(self) -> None:
        """Wait until the server executes nothing more for an earlier run (one killed mid-file)."""
        announced = False
        while True:
            with self.conn.cursor() as cur:
                cur.execute(LEFTOVER_QUERY, self.params)
                rows = cur.fetchall()
            if not rows:
                return
            work = "; ".join(
                f"pid {pid} on {database} ({state} since {since}: {query!r})"
                for pid, database, state, since, query in rows
            )
            if not announced:
                self.on_wait({"event": "leftover_wait", "backends": work, "max_wait_s": round(self.wait_s, 1)})
                announced = True
            if self.left() <= 0:
                pids = ", ".join(str(row[0]) for row in rows)
                raise LockTimeoutError(
                    f"an earlier migration run ended while the server still executes its work: {work}; "
                    f"gave up waiting after {self.elapsed():.1f} s and started nothing",
                    hint="run again when that work has ended (the next run then reads its outcome from the "
                    "history), allow a longer wait ({lock_wait_s}), or end it with SELECT "
                    f"pg_cancel_backend(pid) for pid {pids}",
                    settings=("lock_wait_s",),
                    leftover=work,
                )
            time.sleep(min(0.2, max(0.0, self.left())))


def _release(held: HeldLock) -> None:
    conn = held.conn
    if conn.closed:
        held.cleanup_errors.append("the lock's connection was already closed; the server released the lock")
        return
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (held.key,))
    except psycopg2.Error as exc:
        cause = connection_lost_cause(exc)
        message = f"releasing the migration lock failed ({cause}); the server releases it with the session"
        log.warning(message)
        held.cleanup_errors.append(message)
